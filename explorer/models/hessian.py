"""Matrix-free loss Hessians (and Gauss-Newton matrices) of whole models.

The operator's vector space is the flat vector of the *selected* parameters
(n = their total number of entries, in ``named_parameters`` order). ``matvec``
unflattens v into one tensor per parameter, applies the curvature and flattens back.

The loss is the mean over the data set: for a data set split into chunks b of n_b
samples (the full set, N samples, or one mini-batch of it)

    L(theta) = sum_b (n_b / N) L_b(theta),   H = sum_b (n_b / N) H_b,

so summing chunk Hessian-vector products is exact, not an approximation.

Hessian-vector products (HVPs), two methods:

* ``"double_backward"`` (default): build the gradient graph once,
  g = dL/dtheta with ``create_graph=True``, and keep it; every HVP is then one
  backward pass through that graph, ``H v = d(g . v)/dtheta`` (Pearlmutter 1994),
  about the cost of one forward+backward (docs/benchmarks.md); memory is the graph
  of one forward+backward per chunk.
* ``"forward_over_reverse"``: ``torch.func.jvp(torch.func.grad(L), (theta,), (v,))``
  per chunk; nothing is cached (forward + backward with dual numbers, a few times the
  cached HVP), for data sets whose graphs do not fit in memory.

The Gauss-Newton matrix G = sum_i J_i^T H_out,i J_i (Schraudolph 2002; Martens 2020)
uses the closed-form output Hessians of the two losses and two cached backward passes
(J^T u, and J v by the "double vjp" trick: J v = d((J^T w) . v)/dw).

References:
    B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6(1), 1994.
    N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
    descent", Neural Computation 14(7), 2002.
    J. Martens, "New insights and perspectives on the natural gradient method", JMLR 21, 2020.
"""

from __future__ import annotations

import copy
import fnmatch
import threading
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import torch
from torch import nn
from torch.func import functional_call

from explorer.models.loading import Dataset, ExportedModel, InputSpec, ModelInputError
from explorer.operators import LinearOperator

__all__ = [
    "LOSSES",
    "ParameterBlock",
    "HessianOperator",
    "GGNOperator",
    "CurvatureOperator",
    "select_parameters",
    "normalize_loss",
    "dense_hessian",
    "as_model",
]

LossName = Literal["cross_entropy", "mse"]
LOSSES: dict[str, str] = {"cross_entropy": "cross-entropy", "mse": "mean squared error"}
_LOSS_ALIASES = {"cross_entropy": "cross_entropy", "ce": "cross_entropy", "crossentropy": "cross_entropy",
                 "cross-entropy": "cross_entropy", "mse": "mse", "mean_squared_error": "mse", "l2": "mse",
                 "mean squared error": "mse"}
ParamFilter = str | Sequence[str] | Callable[[str], bool] | None


def normalize_loss(loss: str) -> str:
    """``"cross_entropy"`` or ``"mse"`` from any accepted spelling."""
    key = str(loss).strip().lower()
    if key not in _LOSS_ALIASES:
        raise ModelInputError(f"`loss` must be 'cross_entropy' or 'mse' (mean squared error), got {loss!r}")
    return _LOSS_ALIASES[key]


def _has_glob(pattern: str) -> bool:
    return any(ch in pattern for ch in "*?[")


def select_parameters(names: Sequence[str], params: ParamFilter) -> list[str]:
    """The parameter names a filter selects, in model order.

    Args:
        names: all trainable parameter names.
        params: None (all); a glob pattern (``"layers.0.*"``, ``"*.weight"``); a plain
            name, which also selects everything under it as a module prefix
            (``"2"`` selects ``"2.weight"`` and ``"2.bias"``); a list of those (union);
            or a predicate ``name -> bool``.

    Raises:
        ModelInputError: nothing selected (the message lists the names).
    """
    if params is None:
        chosen = list(names)
    elif callable(params):
        chosen = [name for name in names if params(name)]
    else:
        patterns = [params] if isinstance(params, str) else list(params)
        patterns = [p.strip() for p in patterns if str(p).strip()]
        if not patterns:
            chosen = list(names)
        else:
            def hit(name: str) -> bool:
                for pattern in patterns:
                    if _has_glob(pattern):
                        if fnmatch.fnmatchcase(name, pattern):
                            return True
                    elif name == pattern or name.startswith(pattern + "."):
                        return True
                return False
            chosen = [name for name in names if hit(name)]
    if not chosen:
        listing = ", ".join(names[:20]) + (" ..." if len(names) > 20 else "")
        module = names[0].rsplit(".", 1)[0] if names and "." in names[0] else (names[0] if names else "layer")
        shown = params[0] if isinstance(params, (list, tuple)) and len(params) == 1 else params
        raise ModelInputError(f"the parameter filter {shown!r} selects no trainable parameter; the model has: "
                              f"{listing}. Use a glob such as '*.weight' or a module name such as {module!r}.")
    return chosen


@dataclass(frozen=True)
class ParameterBlock:
    """Where one parameter lives in the flat vector."""

    name: str
    shape: tuple[int, ...]
    start: int
    stop: int

    @property
    def numel(self) -> int:
        return self.stop - self.start

    @property
    def layer(self) -> str:
        """The owning module's name (the parameter name without its last part)."""
        return self.name.rsplit(".", 1)[0] if "." in self.name else self.name


def as_model(model: Any) -> ExportedModel:
    """Wrap an ``nn.Module`` or ``ExportedProgram`` as an :class:`ExportedModel` (shape checks need one)."""
    if isinstance(model, ExportedModel):
        return model
    if isinstance(model, torch.export.ExportedProgram):
        from explorer.models.loading import load_exported_model

        return load_exported_model(model)
    if isinstance(model, nn.Module):
        params = list(model.parameters())
        dtype = params[0].dtype if params else torch.float32
        return ExportedModel(module=model, program=None, name=type(model).__name__,
                             input_spec=InputSpec(shape=(), dtype=dtype), output_shape=())
    raise TypeError(f"`model` must be an ExportedModel (load_exported_model), a torch.export.ExportedProgram or an "
                    f"nn.Module, got {type(model).__name__}")


def _fix_targets(loss: str, outputs: torch.Tensor, targets: torch.Tensor, data_name: str) -> torch.Tensor:
    """Validate targets against the model outputs; return them in the form the loss takes."""
    out_shape = tuple(outputs.shape)
    if loss == "cross_entropy":
        if outputs.ndim == 3 and not targets.is_floating_point() and targets.ndim == 2:
            # a sequence model: logits (N, T, classes), one class index per position (N, T); the
            # loss is the mean over all N T positions (the flattened (N T, classes) logits)
            if targets.shape[1] != out_shape[1]:
                raise ModelInputError(f"the model returns {out_shape[1]} positions per sequence but `{data_name}` "
                                      f"has targets for {targets.shape[1]}; they must match")
            low, high = int(targets.min()), int(targets.max())
            if low < 0 or high >= out_shape[2]:
                raise ModelInputError(f"`{data_name}` has class indices {low}..{high} but the model outputs "
                                      f"{out_shape[2]} classes (0..{out_shape[2] - 1})")
            return targets
        if outputs.ndim != 2:
            raise ModelInputError(
                f"cross-entropy needs outputs of shape (N, classes), or (N, T, classes) for sequences with integer "
                f"targets of shape (N, T), but the model returns {out_shape}. Use "
                "'mse' for regression outputs, or a model that returns class logits."
            )
        classes = out_shape[1]
        if targets.is_floating_point():
            if targets.ndim == 1 or (targets.ndim == 2 and targets.shape[1] == 1):
                flat = targets.reshape(-1)
                if bool((flat == flat.round()).all()) and bool(((flat >= 0) & (flat < classes)).all()):
                    return flat.long()
                raise ModelInputError(
                    f"cross-entropy needs class indices 0..{classes - 1} (or class probabilities of shape "
                    f"(N, {classes})), but `{data_name}` has real-valued targets of shape {tuple(targets.shape)}. "
                    "For regression targets choose the loss 'mse'."
                )
            if targets.ndim != 2 or targets.shape[1] != classes:
                raise ModelInputError(f"cross-entropy with soft labels needs targets of shape (N, {classes}), got "
                                      f"{tuple(targets.shape)} in `{data_name}`")
            if bool((targets < 0).any()) or not torch.allclose(targets.sum(1), torch.ones_like(targets[:, 0]),
                                                                atol=1e-4):
                raise ModelInputError(f"soft-label targets in `{data_name}` must be probabilities (>= 0, rows "
                                      "summing to 1); for regression targets choose the loss 'mse'")
            return targets
        flat = targets.reshape(targets.shape[0], -1)
        if flat.shape[1] != 1:
            raise ModelInputError(f"cross-entropy needs one class index per sample, but `{data_name}` has integer "
                                  f"targets of shape {tuple(targets.shape)}")
        flat = flat[:, 0]
        low, high = int(flat.min()), int(flat.max())
        if low < 0 or high >= classes:
            raise ModelInputError(
                f"`{data_name}` has class indices {low}..{high} but the model outputs {classes} classes (0.."
                f"{classes - 1}); check that the data belongs to this model"
            )
        return flat
    # mse
    per_sample_out = outputs[0].numel()
    per_sample_tgt = targets[0].numel() if targets.ndim > 1 else 1
    if per_sample_out != per_sample_tgt:
        hint = (" The targets look like class indices: choose the loss 'cross_entropy'."
                if not targets.is_floating_point() and per_sample_tgt == 1 else "")
        raise ModelInputError(
            f"mean squared error needs one target per output, but the model returns {out_shape[1:]} per sample "
            f"and `{data_name}` has targets of shape {tuple(targets.shape[1:]) or '()'} per sample.{hint}"
        )
    return targets.reshape(targets.shape[0], *out_shape[1:])


def _loss_fn(loss: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if loss == "cross_entropy":  # (N, T, C) sequence logits: the mean over the flattened (N T, C)
        return lambda out, tgt: nn.functional.cross_entropy(out.reshape(-1, out.shape[-1]) if out.ndim == 3 else out,
                                                            tgt.reshape(-1) if out.ndim == 3 else tgt)
    # Written out rather than nn.functional.mse_loss: in torch 2.13 the latter fails under
    # torch.func.jvp(torch.func.grad(...)) ("ZeroTensors are immutable"); the value is the same.
    return lambda out, tgt: (out - tgt).pow(2).mean()


class CurvatureOperator(LinearOperator):
    """Shared machinery of :class:`HessianOperator` and :class:`GGNOperator`.

    Args:
        model: an :class:`ExportedModel` (from :func:`load_exported_model`), a
            ``torch.export.ExportedProgram`` or an ``nn.Module`` with one tensor input.
        data: a :class:`Dataset` (from :func:`load_dataset`) or a tuple (inputs, targets).
        loss: ``"cross_entropy"`` (class-index or probability targets) or ``"mse"``.
        params: parameter filter, see :func:`select_parameters` (None: all).
        batch_size: samples per chunk when the data set is processed in pieces (memory);
            the sum over chunks is exact. Default: all at once (or the model's fixed
            batch size).
        minibatch: use a random subset of this many samples (stochastic Hessian), drawn
            without replacement with ``seed``. None: the full data set.
        seed: seed of the mini-batch draw (a local ``torch.Generator``).
        dtype: float32 (default, the app) or float64 (reference comparisons).
        device: where to compute.
        hvp: ``"double_backward"`` (cached gradient graph) or ``"forward_over_reverse"``.
        cache: keep the graph between products (double_backward only).

    Notes:
        The model runs in eval mode (dropout off, batch-norm running statistics; an exported
        program keeps the mode it was exported in). Floating-point inputs are cast to
        ``dtype``; integer inputs (e.g. token ids) are passed as the model expects them.
    """

    curvature = "curvature"

    def __init__(self, model: Any, data: Dataset | tuple[torch.Tensor, torch.Tensor], loss: str = "cross_entropy",
                 params: ParamFilter = None, *, batch_size: int | None = None, minibatch: int | None = None,
                 seed: int = 0, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
                 hvp: str = "double_backward", cache: bool = True) -> None:
        if dtype not in (torch.float32, torch.float64):
            raise TypeError(f"`dtype` must be torch.float32 or torch.float64, got {dtype}")
        if hvp not in ("double_backward", "forward_over_reverse"):
            raise ValueError(f"`hvp` must be 'double_backward' or 'forward_over_reverse', got {hvp!r}")
        self.model = as_model(model)
        self.loss = normalize_loss(loss)
        self.hvp_method = hvp
        self.cache = bool(cache)
        self.seed = int(seed)
        self.params_filter = params
        if isinstance(data, tuple):
            data = Dataset(torch.as_tensor(data[0]), torch.as_tensor(data[1]), "data")
        if not isinstance(data, Dataset):
            raise TypeError(f"`data` must be a Dataset (load_dataset) or a tuple (inputs, targets), got "
                            f"{type(data).__name__}")
        self.data = data
        device = torch.device(device)

        # A private copy: functional_call swaps parameters in place for the duration of a
        # call, so a module shared between threads (app sessions) must not be used directly.
        with warnings.catch_warnings():  # torch 2.13 pytree FutureWarning (LeafSpec) on GraphModule copies
            warnings.simplefilter("ignore", FutureWarning)
            module = copy.deepcopy(self.model.module)
        module.to(device=device, dtype=dtype)
        module.eval()
        self._module = module
        named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ModelInputError(f"`{self.model.name}` has no trainable parameters (none with requires_grad); "
                                  "there is no loss Hessian. Export a model whose weights are nn.Parameters.")
        selected = select_parameters([n for n, _ in named], params)
        self.blocks: tuple[ParameterBlock, ...] = ()
        blocks, offset = [], 0
        all_params = dict(named)
        for name in selected:
            numel = all_params[name].numel()
            blocks.append(ParameterBlock(name, tuple(all_params[name].shape), offset, offset + numel))
            offset += numel
        self.blocks = tuple(blocks)
        self.selected = tuple(selected)
        self.n_total_parameters = sum(p.numel() for _, p in named)
        self._theta = {name: all_params[name].detach().clone() for name in selected}
        self._fixed = {n: t.detach() for n, t in module.named_parameters() if n not in self._theta}
        self._fixed.update({n: b.detach() for n, b in module.named_buffers()})
        super().__init__((offset, offset), dtype, device, is_symmetric=True)

        # -- data: mini-batch, validation, chunks ------------------------
        n_samples = len(data)
        if minibatch is not None:
            minibatch = int(minibatch)
            if not 1 <= minibatch <= n_samples:
                raise ModelInputError(f"`minibatch` must be between 1 and the {n_samples} samples, got {minibatch}")
        self.minibatch = minibatch
        if minibatch is not None and minibatch < n_samples:
            generator = torch.Generator().manual_seed(self.seed)
            self.indices: torch.Tensor | None = torch.randperm(n_samples, generator=generator)[:minibatch].sort().values
            used = data.subset(self.indices)
        else:
            self.indices = None
            used = data
        inputs = self._check_inputs(used.inputs)
        fixed_batch = self.model.input_spec.fixed_batch if self.model.input_spec.shape else None
        if fixed_batch is not None:
            if batch_size is not None and batch_size != fixed_batch:
                raise ModelInputError(f"`{self.model.name}` was exported with a fixed batch size of {fixed_batch}; "
                                      f"`batch_size` must be {fixed_batch} (or export with a dynamic batch dimension)")
            if len(used) % fixed_batch:
                raise ModelInputError(
                    f"`{self.model.name}` was exported with a fixed batch size of {fixed_batch}, and {len(used)} "
                    f"samples do not split into such batches. Export with a dynamic batch dimension "
                    f"(`dynamic_shapes={{'x': {{0: torch.export.Dim('batch')}}}}`) or use a multiple of {fixed_batch} "
                    "samples."
                )
            batch_size = fixed_batch
        if batch_size is None:
            batch_size = len(used)
        if int(batch_size) < 1:
            raise ModelInputError(f"`batch_size` must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.n_samples = len(used)

        # First chunk through the model: clear messages for shape / loss mismatches.
        probe = inputs[: min(self.batch_size, 2 if fixed_batch is None else fixed_batch)]
        try:
            with torch.no_grad():
                out = self._forward(self._theta, probe)
        except Exception as error:  # noqa: BLE001 - shape guards raise AssertionError/RuntimeError
            raise ModelInputError(
                f"the model could not run on `{data.name}`: inputs of shape {tuple(inputs.shape[1:])} per sample "
                f"({str(data.inputs.dtype).replace('torch.', '')}). Model input: "
                f"{self.model.input_spec.describe() if self.model.input_spec.shape else 'unknown'}. Detail: "
                f"{str(error).splitlines()[0][:200]}"
            ) from None
        if isinstance(out, (tuple, list)):
            if len(out) != 1:
                raise ModelInputError("the model returns several outputs; wrap it to return one tensor")
            out = out[0]
        targets = _fix_targets(self.loss, out, used.targets, data.name)
        if targets.is_floating_point():
            targets = targets.to(dtype)
        targets = targets.to(device)
        self._chunks: list[tuple[torch.Tensor, torch.Tensor, float]] = []
        for start in range(0, self.n_samples, self.batch_size):
            stop = min(self.n_samples, start + self.batch_size)
            self._chunks.append((inputs[start:stop], targets[start:stop], (stop - start) / self.n_samples))
        self._loss = _loss_fn(self.loss)
        self._lock = threading.RLock()
        self._graph: Any = None

    # -- setup helpers --------------------------------------------------------
    def _check_inputs(self, inputs: torch.Tensor) -> torch.Tensor:
        spec = self.model.input_spec
        if spec.shape:
            expected = spec.sample_shape
            got = tuple(inputs.shape[1:])
            if len(expected) != len(got) or any(e is not None and e != g for e, g in zip(expected, got)):
                raise ModelInputError(
                    f"the data does not fit the model: `{self.data.name}` has inputs of shape {got} per sample, but "
                    f"`{self.model.name}` expects {tuple('?' if e is None else e for e in expected)} (input "
                    f"{spec.describe()}). Choose the data file made for this model, or reshape the inputs."
                )
        expected_dtype = spec.dtype if spec.shape else None
        if expected_dtype is not None and not expected_dtype.is_floating_point:
            # integer inputs (token ids for an embedding, ...) stay integers
            return inputs.to(device=self.device, dtype=expected_dtype)
        if not inputs.is_floating_point() and expected_dtype is None:
            return inputs.to(device=self.device)  # an nn.Module without a spec: leave integer data alone
        return inputs.to(device=self.device, dtype=self.dtype)

    def _forward(self, theta: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        out = functional_call(self._module, {**self._fixed, **theta}, (inputs,))
        if isinstance(out, (tuple, list)) and len(out) == 1:
            out = out[0]
        return out

    def _chunk_loss(self, theta: dict[str, torch.Tensor], inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return self._loss(self._forward(theta, inputs), targets)

    # -- flat <-> dict ------------------------------------------------------
    def unflatten(self, vector: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat (n,) vector into one tensor per selected parameter."""
        return {b.name: vector[b.start:b.stop].view(b.shape) for b in self.blocks}

    def flatten(self, tensors: dict[str, torch.Tensor] | Sequence[torch.Tensor | None]) -> torch.Tensor:
        """Concatenate per-parameter tensors (None means zeros) into a flat (n,) vector."""
        items = [tensors[b.name] for b in self.blocks] if isinstance(tensors, dict) else list(tensors)
        parts = [torch.zeros(b.numel, dtype=self.dtype, device=self.device) if t is None else t.reshape(-1)
                 for b, t in zip(self.blocks, items)]
        return torch.cat(parts)

    def parameters_vector(self) -> torch.Tensor:
        """The selected parameters as one flat vector (the point where the curvature is taken)."""
        return self.flatten(self._theta)

    # -- scalar quantities ----------------------------------------------------
    def loss_value(self) -> float:
        """The loss at the current parameters over the operator's samples."""
        with torch.no_grad():
            return float(sum(w * self._chunk_loss(self._theta, x, y) for x, y, w in self._chunks))

    def gradient(self) -> torch.Tensor:
        """dL/dtheta (flat, selected parameters)."""
        with torch.enable_grad():
            return self._gradient()

    def _gradient(self) -> torch.Tensor:
        leaves = {k: v.detach().requires_grad_(True) for k, v in self._theta.items()}
        total = sum(w * self._chunk_loss(leaves, x, y) for x, y, w in self._chunks)
        grads = torch.autograd.grad(total, list(leaves.values()), allow_unused=True)
        return self.flatten(list(grads))

    # -- description ----------------------------------------------------------
    @property
    def sampling(self) -> str:
        if self.indices is None:
            return f"full data set ({self.n_samples} samples, exact)"
        return f"mini-batch of {self.n_samples} of {len(self.data)} samples (stochastic, seed {self.seed})"

    @property
    def parameter_summary(self) -> str:
        if len(self.selected) == sum(1 for _ in self._module.parameters()):
            which = "all"
        else:
            which = ", ".join(self.selected[:4]) + (" ..." if len(self.selected) > 4 else "")
        return f"{self.shape[0]} of {self.n_total_parameters} parameters ({which})"

    @property
    def description(self) -> str:
        return (f"{self.curvature} of the {LOSSES[self.loss]} loss of {self.model.name}; {self.parameter_summary}; "
                f"{self.sampling}; {str(self.dtype).replace('torch.', '')}")

    @property
    def kind(self) -> str:
        return "matrix-free"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.shape[0]}, {self.description})"

    def release(self) -> None:
        """Drop the cached graph (it is rebuilt on the next product)."""
        with self._lock:
            self._graph = None

    def _to(self, device: torch.device, dtype: torch.dtype) -> "CurvatureOperator":
        return type(self)(self.model, self.data, self.loss, self.params_filter, batch_size=self.batch_size,
                          minibatch=self.minibatch, seed=self.seed, dtype=dtype, device=device, hvp=self.hvp_method,
                          cache=self.cache)

    # -- products -------------------------------------------------------------
    def _matmat(self, X: torch.Tensor) -> torch.Tensor:  # (n, b) -> (n, b)
        return torch.stack([self._matvec(X[:, j]) for j in range(X.shape[1])], dim=1)

    def layer_norms(self, vectors: torch.Tensor, *, by: Literal["parameter", "layer"] = "layer") -> "Any":
        """Share of each parameter tensor (or layer) in each vector: a pandas DataFrame.

        Column ``v{i}`` holds ||v_i restricted to the block|| / ||v_i||; squared, the
        column sums to 1. Large entries say where an eigenvector lives.

        Args:
            vectors: (n,) or (n, k), e.g. ``result.eigenvectors``.
            by: one row per parameter tensor, or per layer (module) with weight and bias together.
        """
        import pandas as pd

        V = vectors.detach().to("cpu", torch.float64)
        if V.ndim == 1:
            V = V.unsqueeze(1)
        if V.shape[0] != self.shape[0]:
            raise ValueError(f"`vectors` must have {self.shape[0]} rows (one per selected parameter), got "
                             f"{V.shape[0]}")
        norms = torch.linalg.vector_norm(V, dim=0).clamp_min(torch.finfo(torch.float64).tiny)
        groups: dict[str, list[ParameterBlock]] = {}
        for block in self.blocks:
            groups.setdefault(block.layer if by == "layer" else block.name, []).append(block)
        rows = []
        for key, members in groups.items():
            squared = sum(V[b.start:b.stop].pow(2).sum(0) for b in members)
            row: dict[str, Any] = {by: key, "numel": sum(b.numel for b in members),
                                   "shapes": ", ".join(str(list(b.shape)) for b in members)}
            for j in range(V.shape[1]):
                row[f"v{j + 1}"] = float(squared[j].sqrt() / norms[j])
            rows.append(row)
        return pd.DataFrame(rows)


class HessianOperator(CurvatureOperator):
    """The loss Hessian d^2 L / d theta^2 over the selected parameters, matrix-free.

    One product costs about one forward + backward pass (cached gradient graph).
    See :class:`CurvatureOperator` for the arguments.

    Example:
        >>> from explorer.models import load_exported_model, load_dataset, HessianOperator
        >>> from explorer.solvers import solve
        >>> model = load_exported_model("sample_data/models/mlp.pt2")  # doctest: +SKIP
        >>> data = load_dataset("sample_data/models/mlp_data.safetensors")  # doctest: +SKIP
        >>> H = HessianOperator(model, data, loss="cross_entropy", params="0.*")  # doctest: +SKIP
        >>> solve("lanczos", H, k=5).eigenvalues  # doctest: +SKIP
    """

    curvature = "Hessian"

    def _build_graph(self, chunks: list[tuple[torch.Tensor, torch.Tensor, float]] | None = None
                     ) -> tuple[list[torch.Tensor], torch.Tensor]:
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in self._theta.items()}
        leaf_list = list(leaves.values())
        total: torch.Tensor | None = None
        for inputs, targets, weight in (self._chunks if chunks is None else chunks):
            chunk = weight * self._chunk_loss(leaves, inputs, targets)
            total = chunk if total is None else total + chunk
        assert total is not None
        grads = torch.autograd.grad(total, leaf_list, create_graph=True, allow_unused=True)
        flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1) for p, g in zip(leaf_list, grads)])
        return leaf_list, flat

    def _hvp_graph(self, graph: tuple[list[torch.Tensor], torch.Tensor], v: torch.Tensor,
                   retain: bool) -> torch.Tensor:
        leaves, flat = graph
        if not flat.requires_grad:  # loss linear in theta: H = 0
            return torch.zeros_like(v)
        out = torch.autograd.grad(flat, leaves, grad_outputs=v, retain_graph=retain, allow_unused=True)
        return self.flatten(list(out))

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        if self.hvp_method == "forward_over_reverse":
            return self._hvp_forward_over_reverse(x)
        with self._lock, torch.enable_grad():
            if not self.cache:  # one chunk's graph at a time: memory bounded by a chunk
                out = torch.zeros_like(x)
                for chunk in self._chunks:
                    out += self._hvp_graph(self._build_graph([chunk]), x, retain=False)
                return out
            if self._graph is None:
                self._graph = self._build_graph()
            return self._hvp_graph(self._graph, x, retain=True)

    def _hvp_forward_over_reverse(self, x: torch.Tensor) -> torch.Tensor:
        from torch.func import grad, jvp

        tangent = self.unflatten(x)
        total: torch.Tensor | None = None
        with self._lock, torch.enable_grad():
            for inputs, targets, weight in self._chunks:
                def chunk_loss(theta: dict[str, torch.Tensor], inputs: torch.Tensor = inputs,
                               targets: torch.Tensor = targets) -> torch.Tensor:
                    return self._chunk_loss(theta, inputs, targets)

                _, hv = jvp(grad(chunk_loss), (self._theta,), (tangent,))
                flat = weight * self.flatten(hv)
                total = flat if total is None else total + flat
        assert total is not None
        return total


class GGNOperator(CurvatureOperator):
    """The generalized Gauss-Newton matrix G = sum_i J_i^T H_out,i J_i (positive semi-definite).

    J_i is the Jacobian of sample i's outputs with respect to the selected parameters and
    H_out,i the Hessian of the loss with respect to those outputs, in closed form:
    (diag(p) - p p^T) / N for cross-entropy (p = softmax of the logits), 2 / (N d) I for
    the mean squared error over d outputs per sample. One product costs two backward
    passes through a cached graph. See :class:`CurvatureOperator` for the arguments.

    References:
        Schraudolph 2002; Martens 2020, section 8.
    """

    curvature = "Gauss-Newton matrix"

    def _build_graph(self, chunks: list[tuple[torch.Tensor, torch.Tensor, float]] | None = None
                     ) -> tuple[list[torch.Tensor], list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]]]:
        leaves = {k: v.detach().clone().requires_grad_(True) for k, v in self._theta.items()}
        leaf_list = list(leaves.values())
        pieces = []
        for inputs, _targets, weight in (self._chunks if chunks is None else chunks):
            out = self._forward(leaves, inputs)
            dummy = torch.zeros_like(out, requires_grad=True)
            jt_dummy = torch.autograd.grad(out, leaf_list, grad_outputs=dummy, create_graph=True, allow_unused=True)
            jt_flat = torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                 for p, g in zip(leaf_list, jt_dummy)])
            pieces.append((out, dummy, jt_flat, weight))
        return leaf_list, pieces

    def _output_hessian(self, out: torch.Tensor, u: torch.Tensor, weight: float) -> torch.Tensor:
        n_chunk = out.shape[0]
        if self.loss == "cross_entropy":  # rows of logits: N samples, or N T positions of sequences
            p = torch.softmax(out.detach(), dim=-1)
            hu = p * u - p * (p * u).sum(dim=-1, keepdim=True)
            return hu * (weight / (out.numel() // out.shape[-1]))
        d = out[0].numel()
        return u * (2.0 * weight / (n_chunk * d))

    def _ggn_graph(self, graph: tuple[list[torch.Tensor], list[Any]], x: torch.Tensor) -> torch.Tensor:
        leaves, pieces = graph
        total = torch.zeros_like(x)
        for out, dummy, jt_flat, weight in pieces:
            if not jt_flat.requires_grad:  # outputs do not depend on the parameters
                continue
            (jv,) = torch.autograd.grad(jt_flat, dummy, grad_outputs=x, retain_graph=True)
            hu = self._output_hessian(out, jv, weight)
            back = torch.autograd.grad(out, leaves, grad_outputs=hu, retain_graph=True, allow_unused=True)
            total += self.flatten(list(back))
        return total

    def _matvec(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=self.device, dtype=self.dtype)
        with self._lock, torch.enable_grad():
            if not self.cache:  # one chunk's graph at a time: memory bounded by a chunk
                return sum((self._ggn_graph(self._build_graph([chunk]), x) for chunk in self._chunks),
                           torch.zeros_like(x))
            if self._graph is None:
                self._graph = self._build_graph()
            return self._ggn_graph(self._graph, x)


def dense_hessian(model: Any, data: Dataset | tuple[torch.Tensor, torch.Tensor], loss: str = "cross_entropy",
                  params: ParamFilter = None, *, dtype: torch.dtype = torch.float64, minibatch: int | None = None,
                  seed: int = 0, max_parameters: int = 4000) -> torch.Tensor:
    """The assembled loss Hessian from ``torch.autograd.functional.hessian(vectorize=True)``.

    The gradient of the flat loss, then its Jacobian by one batched backward pass over the n
    unit vectors (``is_grads_batched``): an independent path from :class:`HessianOperator`
    (whose products go through the cached gradient graph of the per-parameter dict); the
    tests and the benchmark compare the two. O(n^2) memory and about n HVPs of work, so it
    refuses more than ``max_parameters`` parameters. Not ``torch.func.hessian``: in torch 2.13,
    under ``vmap`` (``hessian``, ``jacrev(jacrev)``), its mixed second derivatives of
    ``layer_norm`` in (input, weight) are wrong (``torch.autograd`` and ``jvp(grad)`` are
    right; tests/test_models_hessian.py checks against finite differences of the gradient),
    which puts a relative error of ~1e-2 into the Hessian of any model with a LayerNorm.

    Returns:
        (n, n) symmetric tensor in the operator's parameter order.
    """
    op = HessianOperator(model, data, loss, params, dtype=dtype, minibatch=minibatch, seed=seed)
    n = op.shape[0]
    if n > max_parameters:
        raise ModelInputError(f"the dense Hessian of {n} parameters needs {n * n * 8 / 2**20:.0f} MB and ~{n} HVPs; "
                              f"it is limited to {max_parameters} parameters (select fewer with `params`)")
    theta0 = op.parameters_vector()

    def flat_loss(theta_flat: torch.Tensor) -> torch.Tensor:
        theta = op.unflatten(theta_flat)
        total = theta_flat.new_zeros(())
        for inputs, targets, weight in op._chunks:
            total = total + weight * op._chunk_loss(theta, inputs, targets)
        return total

    H = torch.autograd.functional.hessian(flat_loss, theta0, vectorize=True)
    return 0.5 * (H + H.T)
