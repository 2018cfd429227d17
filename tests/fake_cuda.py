"""A CPU stand-in for a CUDA device, to find device mixing without a GPU.

Inside ``fake_cuda()`` a tensor that torch would put on ``cuda`` is a :class:`FakeCudaTensor`:
CPU memory, but ``.device`` says ``cuda:0``, and it enforces what CUDA enforces and the CPU
does not:

* an operation with a "CUDA" tensor and a CPU tensor of one or more dimensions raises
  ``RuntimeError: Expected all tensors to be on the same device`` (CPU scalars, 0-d tensors,
  are allowed, as on CUDA; ``copy_`` / item assignment across devices is allowed, as on CUDA);
* ``.numpy()`` (and so ``np.asarray``) on a "CUDA" tensor raises ``TypeError``, as torch does.

Factories called with ``device="cuda"`` (``torch.zeros``, ``torch.randn``, ...) and
``.to("cuda")`` / ``.cuda()`` make fake tensors; ``.cpu()`` / ``.to("cpu")`` make plain ones;
``torch.cuda.synchronize`` and friends are no-ops. Dense tensors only (sparse layouts are
not emulated). It is a test harness for the code paths, not a CUDA emulator: numbers are
computed on the CPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

FAKE = torch.device("cuda", 0)
_ALLOWED_MIXED = {"copy_", "__setitem__", "__getitem__", "to", "cpu", "cuda", "__get__", "__set__", "index_put_",
                  "masked_fill_", "where"}
_FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.randn, torch.rand, torch.eye, torch.arange,
              torch.tensor, torch.as_tensor, torch.zeros_like, torch.ones_like, torch.empty_like, torch.full_like,
              torch.randn_like, torch.linspace, torch.randint, torch.randperm}


class FakeCudaTensor(torch.Tensor):
    """CPU memory that reports ``cuda:0`` (see the module docstring)."""

    @property  # type: ignore[override]
    def device(self) -> torch.device:
        return FAKE

    @property  # type: ignore[override]
    def is_cuda(self) -> bool:
        return True

    def numpy(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG002
        raise TypeError("can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to "
                        "host memory first.")

    def __array__(self, *args: Any, **kwargs: Any) -> Any:  # noqa: ARG002
        return self.numpy()

    def __repr__(self, *args: Any, **kwargs: Any) -> str:  # noqa: ARG002
        return "FakeCuda" + repr(self.as_subclass(torch.Tensor))

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        return _dispatch(func, args, kwargs or {})


def _is_fake(t: Any) -> bool:
    return isinstance(t, FakeCudaTensor)


def _plain(t: Any) -> Any:
    return t.as_subclass(torch.Tensor) if _is_fake(t) else t


def _wrap(t: Any) -> Any:
    if isinstance(t, torch.Tensor) and not _is_fake(t) and t.layout == torch.strided:
        return t.as_subclass(FakeCudaTensor)
    return t


def _target(args: Any, kwargs: dict[str, Any]) -> str | None:
    """"cuda", "cpu" or None: where a ``.to(...)`` call sends its tensor."""
    candidates = list(args[1:]) + [kwargs.get("device")]
    for value in candidates:
        if isinstance(value, (str, torch.device)):
            kind = torch.device(value).type
            return "cuda" if kind == "cuda" else "cpu" if kind == "cpu" else None
        if isinstance(value, torch.Tensor):  # .to(other): its device
            return "cuda" if _is_fake(value) else "cpu"
    return None


def _dispatch(func: Any, args: Any, kwargs: dict[str, Any]) -> Any:
    name = getattr(func, "__name__", "")
    if name in ("device", "is_cuda") or func in (FakeCudaTensor.device.__get__, FakeCudaTensor.is_cuda.__get__):
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)
    flat, _ = tree_flatten((args, kwargs))
    tensors = [t for t in flat if isinstance(t, torch.Tensor)]
    fake = any(_is_fake(t) for t in tensors)
    if name in ("to", "cuda", "cpu") and tensors and tensors[0] is args[0]:
        where = "cuda" if name == "cuda" else "cpu" if name == "cpu" else _target(args, kwargs)
        cleaned = dict(kwargs)
        if "device" in cleaned:
            cleaned.pop("device")
        rest = [a for a in args[1:] if not isinstance(a, (str, torch.device, torch.Tensor))]
        if name == "to" and any(isinstance(a, torch.Tensor) for a in args[1:]):
            cleaned.setdefault("dtype", next(a for a in args[1:] if isinstance(a, torch.Tensor)).dtype)
        with torch._C.DisableTorchFunctionSubclass():
            base = _plain(args[0])
            out = base.to(*rest, **cleaned) if name == "to" else base
            if where is not None and out is base and where != ("cuda" if _is_fake(args[0]) else "cpu"):
                out = out.clone()  # a move between devices is a copy
        keep_fake = (where == "cuda") or (where is None and _is_fake(args[0]))
        return _wrap(out) if keep_fake else out
    if fake and name not in _ALLOWED_MIXED:
        cpu_arrays = [t for t in tensors if not _is_fake(t) and t.ndim > 0]
        if cpu_arrays:
            raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two devices, "
                               f"cuda:0 and cpu! ({name})")
    with torch._C.DisableTorchFunctionSubclass():
        out = func(*tree_map(_plain, args), **tree_map(_plain, kwargs))
    if fake and name not in ("cpu", "numpy", "tolist", "item", "__float__", "__int__", "__bool__", "__len__"):
        return tree_map(_wrap, out)
    return out


class _FactoryMode(TorchFunctionMode):
    """Factories with ``device="cuda"`` make fake tensors; everything else goes through the subclass."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FACTORIES:
            device = kwargs.get("device")
            like = args[0] if args and isinstance(args[0], torch.Tensor) and func.__name__.endswith("_like") else None
            to_fake = (device is not None and torch.device(device).type == "cuda") or (
                device is None and like is not None and _is_fake(like))
            if device is not None:
                kwargs.pop("device")
                if torch.device(device).type not in ("cuda", "cpu"):
                    kwargs["device"] = device
            out = func(*tree_map(_plain, args), **tree_map(_plain, kwargs))
            return _wrap(out) if to_fake else out
        return _dispatch(func, args, kwargs)


@contextlib.contextmanager
def fake_cuda(monkeypatch: Any) -> Iterator[None]:
    """Inside: ``torch.cuda.is_available()`` is True and ``cuda`` tensors are fake (see the module docstring)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "fake CUDA (CPU)")
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a, **k: None)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a, **k: 0)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a, **k: 1 << 20)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda *a, **k: (8 << 30, 16 << 30))
    with _FactoryMode():
        yield
