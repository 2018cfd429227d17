"""The sample models: a small MLP and a small CNN trained on synthetic data, deterministically.

``scripts/make_model_samples.py`` calls :func:`write_model_samples`, which writes into
``sample_data/models/`` for each model: the exported program (``.pt2``), the state dict
(``.safetensors``), the data file, and ``manifest.json`` with reference numbers from
the dense float64 Hessian (``torch.func.hessian``). Everything random comes from
local ``torch.Generator`` objects with fixed seeds, and training runs on one thread,
so the weights are the same on every run (same torch build).

* ``mlp``: 16-32-32-4 tanh MLP, 1732 parameters, cross-entropy; 256 samples labelled by
  a random "teacher" MLP (a standard synthetic setting, e.g. Ghorbani et al. 2019).
* ``cnn``: two 3x3 tanh convolutions (1->4, 4->8 stride 2) and a linear head on 8x8
  one-channel images, 723 parameters, cross-entropy over 3 classes (a horizontal bar,
  a vertical bar, a diagonal; noisy, at random positions); 192 samples.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

__all__ = ["MODEL_SAMPLE_DIR", "ModelSample", "MODEL_SAMPLES", "model_sample", "write_model_samples", "MLP", "SmallCNN"]

MODEL_SAMPLE_DIR = Path(__file__).resolve().parents[2] / "sample_data" / "models"


@dataclass(frozen=True)
class ModelSample:
    """Where one sample model's files live, and how to use them."""

    name: str
    title: str
    model_file: str
    state_dict_file: str
    data_file: str
    loss: str
    description: str

    def path(self, which: str = "model", root: Path | None = None) -> Path:
        root = MODEL_SAMPLE_DIR if root is None else root
        return root / {"model": self.model_file, "state_dict": self.state_dict_file, "data": self.data_file}[which]


MODEL_SAMPLES: dict[str, ModelSample] = {
    "mlp": ModelSample("mlp", "MLP 16-32-32-4 (tanh), 1732 parameters", "mlp.pt2", "mlp.safetensors",
                       "mlp_data.safetensors", "cross_entropy",
                       "Teacher-labelled Gaussian inputs, 256 samples, 4 classes."),
    "cnn": ModelSample("cnn", "CNN on 8x8 images (2 conv + linear), 723 parameters", "cnn.pt2", "cnn.safetensors",
                       "cnn_data.pt", "cross_entropy",
                       "Noisy bar images (horizontal / vertical / diagonal), 192 samples, 3 classes."),
}


def model_sample(name: str) -> ModelSample:
    try:
        return MODEL_SAMPLES[name]
    except KeyError:
        raise ValueError(f"unknown model sample {name!r}; choose one of {sorted(MODEL_SAMPLES)}") from None


class MLP(nn.Module):
    """16-32-32-4 tanh MLP; parameters ``layers.{0,2,4}.{weight,bias}``."""

    def __init__(self, sizes: tuple[int, ...] = (16, 32, 32, 4)) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            mods.append(nn.Linear(a, b))
            if i < len(sizes) - 2:
                mods.append(nn.Tanh())
        self.layers = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class SmallCNN(nn.Module):
    """conv(1->4, 3x3) - tanh - conv(4->8, 3x3, stride 2) - tanh - linear(128 -> 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.tanh(self.conv1(x))
        x = torch.tanh(self.conv2(x))
        return self.fc(x.flatten(1))


def _init(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases, from a local generator."""
    with torch.no_grad():
        for layer in module.modules():
            if not isinstance(layer, (nn.Linear, nn.Conv2d)):
                continue
            weight = layer.weight
            bound = 1.0 / math.sqrt(weight.shape[1] * math.prod(weight.shape[2:]))
            for p in (layer.weight, layer.bias):
                if p is not None:
                    p.copy_((torch.rand(p.shape, generator=generator, dtype=torch.float64) * 2 - 1).mul(bound))


def _mlp_data(generator: torch.Generator, n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = MLP((16, 24, 4))
    _init(teacher, generator)
    with torch.no_grad():
        for p in teacher.parameters():
            p.mul_(3.0)  # a sharper teacher: less label noise
        x = torch.randn(n, 16, generator=generator, dtype=torch.float64).float()
        y = teacher(x).argmax(1)
    return x, y


def _cnn_data(generator: torch.Generator, n: int = 192) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.arange(n) % 3
    y = y[torch.randperm(n, generator=generator)]
    images = torch.zeros(n, 1, 8, 8, dtype=torch.float64)
    offsets = torch.randint(1, 7, (n,), generator=generator)
    for i in range(n):
        o = int(offsets[i])
        if y[i] == 0:
            images[i, 0, o, 1:7] = 1.0
        elif y[i] == 1:
            images[i, 0, 1:7, o] = 1.0
        else:
            idx = torch.arange(8)
            images[i, 0, idx, (idx + o - 4) % 8] = 1.0
    images += 0.35 * torch.randn(images.shape, generator=generator, dtype=torch.float64)
    return images.float(), y


def _train(model: nn.Module, x: torch.Tensor, y: torch.Tensor, steps: int, lr: float) -> dict[str, float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        logits = model(x)
        return {"loss": float(nn.functional.cross_entropy(logits, y)),
                "accuracy": float((logits.argmax(1) == y).float().mean())}


_BUILDERS: dict[str, tuple[Callable[[], nn.Module], Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]],
                           int, float]] = {
    "mlp": (MLP, _mlp_data, 40, 1e-2),
    "cnn": (SmallCNN, _cnn_data, 30, 1e-2),
}


def _reference(model_path: Path, data_path: Path, loss: str) -> dict[str, Any]:
    """Dense float64 Hessian numbers for the manifest (torch.func.hessian, then eigvalsh)."""
    from explorer.models.hessian import dense_hessian
    from explorer.models.loading import load_dataset, load_exported_model

    model = load_exported_model(model_path)
    data = load_dataset(data_path)
    H = dense_hessian(model, data, loss, dtype=torch.float64)
    eig = torch.linalg.eigvalsh(H)
    return {
        "hessian_top5": [float(v) for v in eig.flip(0)[:5]],
        "hessian_bottom3": [float(v) for v in eig[:3]],
        "hessian_trace": float(torch.trace(H)),
        "hessian_frobenius": float(torch.linalg.matrix_norm(H)),
        "n_negative_eigenvalues_below_-1e-8": int((eig < -1e-8).sum()),
    }


def write_model_samples(out: Path | None = None, *, with_reference: bool = True) -> list[dict[str, Any]]:
    """Train both sample models and write their files and ``manifest.json`` into ``out``."""
    from safetensors.torch import save_file

    out = MODEL_SAMPLE_DIR if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # reductions in a fixed order: identical weights on every run
    entries = []
    try:
        for index, (name, sample) in enumerate(MODEL_SAMPLES.items()):
            build, make_data, steps, lr = _BUILDERS[name]
            generator = torch.Generator().manual_seed(1000 + index)
            x, y = make_data(generator)
            model = build()
            _init(model, generator)
            stats = _train(model, x, y, steps, lr)
            model.eval()
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(model, (x[:2],), dynamic_shapes=({0: batch},))
            torch.export.save(program, str(out / sample.model_file))
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                      str(out / sample.state_dict_file), metadata={"source": "scripts/make_model_samples.py"})
            if sample.data_file.endswith(".safetensors"):
                save_file({"inputs": x.contiguous(), "targets": y.contiguous()}, str(out / sample.data_file))
            else:
                torch.save({"inputs": x.contiguous(), "targets": y.contiguous()}, str(out / sample.data_file))
            entry: dict[str, Any] = {
                "name": name, "title": sample.title, "description": sample.description,
                "model_file": sample.model_file, "state_dict_file": sample.state_dict_file,
                "data_file": sample.data_file, "loss": sample.loss,
                "n_parameters": sum(p.numel() for p in model.parameters()),
                "parameters": {k: list(v.shape) for k, v in model.named_parameters()},
                "n_samples": int(x.shape[0]), "input_shape": list(x.shape[1:]),
                "train_steps": steps, "learning_rate": lr, "train_loss": stats["loss"],
                "train_accuracy": stats["accuracy"],
            }
            if with_reference:
                entry.update(_reference(out / sample.model_file, out / sample.data_file, sample.loss))
            entries.append(entry)
    finally:
        torch.set_num_threads(threads)
    (out / "manifest.json").write_text(json.dumps({"generator": "scripts/make_model_samples.py",
                                                   "torch": torch.__version__, "models": entries}, indent=1) + "\n")
    (out / "README.md").write_text(_readme(entries))
    return entries


def _readme(entries: list[dict[str, Any]]) -> str:
    lines = [
        "# Sample models",
        "",
        "Written by `python scripts/make_model_samples.py` (deterministic: local generators, one thread; do not edit",
        "by hand). `manifest.json` has the full record, including reference numbers from the dense float64 loss",
        "Hessian (`torch.func.hessian` + `eigvalsh`). Open them on the app's **Model** page or in Python:",
        "",
        "```python",
        "from explorer.models import load_exported_model, load_dataset, HessianOperator",
        "from explorer.solvers import solve",
        "model = load_exported_model('sample_data/models/mlp.pt2')",
        "data = load_dataset('sample_data/models/mlp_data.safetensors')",
        "H = HessianOperator(model, data, loss='cross_entropy')  # params='layers.0.*' for one layer's block",
        "solve('lanczos', H, k=5, which='LA').eigenvalues",
        "```",
        "",
        "| model | files | parameters | data | train loss / accuracy | Hessian top-5 eigenvalues | most negative | trace |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        top = ", ".join(f"{v:.6g}" for v in e.get("hessian_top5", []))
        neg = f"{e['hessian_bottom3'][0]:.4g}" if e.get("hessian_bottom3") else ""
        trace = f"{e['hessian_trace']:.5g}" if "hessian_trace" in e else ""
        lines.append(f"| {e['name']}: {e['title']} | `{e['model_file']}`, `{e['state_dict_file']}`, "
                     f"`{e['data_file']}` | {e['n_parameters']} | {e['n_samples']} x {tuple(e['input_shape'])} | "
                     f"{e['train_loss']:.3f} / {e['train_accuracy']:.3f} | {top} | {neg} | {trace} |")
    lines += ["", "Loss: cross-entropy (mean over the samples) for both; the `.pt2` files take a dynamic batch "
              "dimension.", ""]
    return "\n".join(lines)


def read_manifest(root: Path | None = None) -> dict[str, Any]:
    """The manifest written next to the samples ({} when missing)."""
    path = (MODEL_SAMPLE_DIR if root is None else Path(root)) / "manifest.json"
    if not path.is_file():
        return {}
    return json.loads(path.read_text())
