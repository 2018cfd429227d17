"""Models generated in memory for the Hessian benchmark: a small GPT-like decoder, no downloads.

``transformer(size)`` builds a decoder-only transformer (Radford et al. 2019, "GPT-2"):
token and position embeddings, ``layers`` pre-norm blocks (LayerNorm, causal multi-head
self-attention, LayerNorm, a 4x GELU MLP, residual connections), a final LayerNorm and an
untied linear head to the vocabulary. Weights are random (``torch.Generator`` seeded, GPT-2's
N(0, 0.02) initialisation with the residual projections scaled by 1 / sqrt(2 layers)), and the
data are random token sequences with next-token targets, so the Hessian is the loss Hessian at
initialisation over ``batch`` sequences of ``seq`` tokens: the model returns logits
(batch, seq, vocab) and the loss is the cross-entropy over the flattened (batch seq, vocab)
logits (``explorer.models.HessianOperator`` takes (N, T, classes) outputs with (N, T) targets).

Attention is written out (``softmax(q k^T / sqrt(d) + mask) v``) rather than through
``scaled_dot_product_attention``: its fused CUDA kernels (flash, memory-efficient) have no
second derivative, and a Hessian-vector product by double backward needs one.

The shape for a parameter budget: width ``d`` (a multiple of 64 from 64 on, 8 / 16 / 32 / 48 below),
``layers = max(1, d / 64)`` and one head per 64 channels (GPT-2 small: d = 768, 12 layers, 12
heads), vocabulary ``min(8192, 8 d)``; of those, the width whose parameter count is nearest to
the budget. ``transformer:100M`` is d = 768, 12 layers, vocabulary 6144: 94.5 M parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["TransformerConfig", "TinyGPT", "transformer_config", "transformer", "parse_model_spec"]


@dataclass(frozen=True)
class TransformerConfig:
    width: int
    layers: int
    heads: int
    vocab: int
    seq: int

    @property
    def parameters(self) -> int:
        """Trainable parameters: embeddings, blocks (12 d^2 + 13 d each), final norm, head."""
        d = self.width
        return self.vocab * d + self.seq * d + self.layers * (12 * d * d + 13 * d) + 2 * d + d * self.vocab

    def describe(self) -> str:
        return (f"GPT-like decoder, {self.parameters:,} parameters (width {self.width}, {self.layers} layers, "
                f"{self.heads} heads, vocabulary {self.vocab}, context {self.seq})")


def _widths() -> list[int]:
    return [8, 16, 32, 48] + list(range(64, 64 * 64 + 1, 64))


def transformer_config(parameters: int, *, seq: int | None = None) -> TransformerConfig:
    """The shape (module docstring) whose parameter count is nearest to ``parameters``."""
    if parameters < 1000:
        raise ValueError(f"a generated transformer needs a budget of at least 1000 parameters, got {parameters}")
    best: TransformerConfig | None = None
    for d in _widths():
        context = seq if seq is not None else (128 if d >= 256 else 16)
        config = TransformerConfig(d, max(1, d // 64), max(1, d // 64), min(8192, 8 * d), context)
        if best is None or abs(config.parameters - parameters) < abs(best.parameters - parameters):
            best = config
    assert best is not None
    return best


class _Block(nn.Module):
    def __init__(self, d: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads) + mask[:t, :t]
        y = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(b, t, d)
        x = x + self.proj(y)
        return x + self.out(nn.functional.gelu(self.fc(self.ln2(x))))


class TinyGPT(nn.Module):
    """Decoder-only transformer: tokens (N, T) int64 -> logits (N, T, vocab)."""

    def __init__(self, config: TransformerConfig) -> None:
        super().__init__()
        self.config = config
        d = config.width
        self.tokens = nn.Embedding(config.vocab, d)
        self.positions = nn.Embedding(config.seq, d)
        self.blocks = nn.ModuleList(_Block(d, config.heads) for _ in range(config.layers))
        self.ln = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.vocab, bias=False)
        mask = torch.full((config.seq, config.seq), float("-inf")).triu(1)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        t = tokens.shape[1]
        x = self.tokens(tokens) + self.positions(torch.arange(t, device=tokens.device))
        mask = self.mask.to(x.dtype)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def transformer(parameters: int, *, batch: int = 8, seq: int | None = None, seed: int = 0,
                dtype: torch.dtype = torch.float32,
                device: torch.device | str = "cpu") -> tuple[TinyGPT, tuple[torch.Tensor, torch.Tensor]]:
    """A seeded random :class:`TinyGPT` near ``parameters`` and ``batch`` random sequences with
    next-token targets: (model, (tokens (batch, seq), targets (batch, seq))).

    The weights are drawn on the CPU from one ``torch.Generator`` (the same model on every
    device), then moved; building on the target device avoids a second copy of a large model.
    """
    config = transformer_config(parameters, seq=seq)
    generator = torch.Generator().manual_seed(seed)
    with torch.device("meta"):
        model = TinyGPT(config)
    model = model.to_empty(device="cpu")
    scale = 0.02 / math.sqrt(2 * config.layers)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("ln.weight") or ".ln1.weight" in name or ".ln2.weight" in name:
                param.fill_(1.0)
            elif param.ndim == 1:
                param.zero_()
            else:
                std = scale if name.endswith(("proj.weight", "out.weight")) else 0.02
                param.normal_(0.0, std, generator=generator)
    model.mask = torch.full((config.seq, config.seq), float("-inf")).triu(1)
    model = model.to(device=device, dtype=dtype)
    stream = torch.randint(0, config.vocab, (batch, config.seq + 1), generator=generator)
    return model, (stream[:, :-1].contiguous(), stream[:, 1:].contiguous())


def parse_model_spec(spec: str) -> tuple[str, int]:
    """``"mlp"`` -> ("mlp", 0); ``"transformer:100M"`` / ``"transformer:20k"`` -> ("transformer", 100_000_000)."""
    text = spec.strip().lower()
    if text == "mlp":
        return "mlp", 0
    match = re.fullmatch(r"transformer:(\d+(?:\.\d+)?)([kmg]?)", text)
    if not match:
        raise ValueError(f"--model takes 'mlp' (the sample MLP) or 'transformer:SIZE' with SIZE a parameter count "
                         f"such as 20k, 5M or 100M; got {spec!r}")
    factor = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}[match.group(2)]
    return "transformer", int(float(match.group(1)) * factor)
