"""Loading models, data sets and state dicts from files, without running code from them.

Three inputs, each from a real file format through its real loader:

* **Exported models** (``.pt2``, written by ``torch.export.save``): architecture and
  weights. ``torch.export.load`` is *not* safe on untrusted files by itself (torch 2.13,
  checked here): it unpickles pickled weights/constants with ``weights_only=False``,
  falls back to ``weights_only=False`` when the sample inputs fail the safe unpickler,
  evaluates every symbolic shape string with ``sympy.sympify`` (which calls ``eval``),
  and resolves call targets as arbitrary ``torch.*`` attributes (``torch.os.system``
  is one). :func:`check_pt2_archive` therefore vets the archive *before* torch sees it:
  no pickled payloads, sample inputs that pass ``torch.load(weights_only=True)``,
  symbolic expressions that match a small grammar, and call targets that are ATen /
  prims operators (or a few pure Python helpers). The vetted bytes, not the file a
  second time, go to ``torch.export.load``.
* **Data sets** (``.pt`` via ``torch.load(weights_only=True)``, ``.safetensors``,
  ``.npz`` via ``numpy.load(allow_pickle=False)``): inputs and targets.
* **State dicts** (``.safetensors`` or ``.pt`` with ``weights_only=True``).

Every failure raises :class:`ModelInputError` (a ``ValueError``) whose message says
what was wrong and how to fix it; the page shows it as it is.
"""

from __future__ import annotations

import io
import json
import keyword
import os
import pickle
import re
import tokenize
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Iterator, Mapping

import numpy as np
import torch
from torch import nn

__all__ = [
    "MAX_FILE_BYTES",
    "ModelInputError",
    "UnsafeFileError",
    "ExportedModel",
    "Dataset",
    "read_source",
    "check_pt2_archive",
    "load_exported_model",
    "load_dataset",
    "load_state_dict",
    "detect_format",
]

#: Default size limit of one file (bytes). The app's upload limit sits below it.
MAX_FILE_BYTES = 256 * 2**20

# Keys accepted for inputs / targets, in order of preference.
_INPUT_KEYS = ("inputs", "input", "x", "X", "data", "features")
_TARGET_KEYS = ("targets", "target", "y", "Y", "labels", "label")


class ModelInputError(ValueError):
    """A file or a combination of inputs that cannot be used; the message says how to fix it."""


class UnsafeFileError(ModelInputError):
    """A file that would run code (or could) when loaded; it is refused, never loaded."""


# ---------------------------------------------------------------------------
# Reading bytes with a size limit
# ---------------------------------------------------------------------------

Source = str | os.PathLike[str] | bytes | bytearray | BinaryIO


def _mb(nbytes: int) -> str:
    return f"{nbytes / 2**20:.1f} MB"


def read_source(source: Source, *, name: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> tuple[bytes, str]:
    """Read a path, bytes or a binary file object into memory, refusing files over ``max_bytes``.

    Reading once into memory means the bytes that are checked are the bytes that are
    loaded (no second read of a file that could change in between).

    Args:
        source: a path, the bytes themselves, or an object with ``read()`` (an upload).
        name: file name used for messages and format detection (default: the path's
            name, or the upload's ``name`` attribute).
        max_bytes: size limit.

    Returns:
        (data, name).

    Raises:
        ModelInputError: missing file, or over the limit.
    """
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        name = name or path.name
        if not path.is_file():
            raise ModelInputError(f"`{path}` does not exist or is not a file; check the path")
        size = path.stat().st_size
        if size > max_bytes:
            raise ModelInputError(
                f"`{name}` is {_mb(size)}, over the {_mb(max_bytes)} limit; use a smaller file "
                "(a subset of the data, or fewer layers) or raise `max_bytes`"
            )
        return path.read_bytes(), name
    if isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    elif hasattr(source, "read"):
        name = name or getattr(source, "name", None)
        data = source.read(max_bytes + 1)
        if hasattr(source, "seek"):
            try:
                source.seek(0)
            except (OSError, ValueError):  # pragma: no cover - unseekable stream
                pass
    else:
        raise TypeError(f"expected a path, bytes or a binary file object, got {type(source).__name__}")
    name = name or "upload"
    if len(data) > max_bytes:
        raise ModelInputError(
            f"`{name}` is larger than the {_mb(max_bytes)} limit; use a smaller file "
            "(a subset of the data, or fewer layers) or raise `max_bytes`"
        )
    return data, name


def detect_format(data: bytes, name: str) -> str:
    """One of ``pt2``, ``torch_pickle``, ``legacy_pickle``, ``safetensors``, ``npz``, ``npy``, ``unknown``.

    Decided from the content (file names can lie), with the suffix as a tie-breaker.
    """
    if data[:4] == b"PK\x03\x04" or data[:4] == b"PK\x05\x06":
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        tails = {entry.split("/", 1)[-1] for entry in names}
        if "archive_format" in tails or any(t.startswith("models/") for t in tails):
            return "pt2"
        if "data.pkl" in tails:
            return "torch_pickle"
        if names and all(entry.endswith(".npy") for entry in names):
            return "npz"
        return "unknown"
    if data[:6] == b"\x93NUMPY":
        return "npy"
    if len(data) >= 10:
        header_len = int.from_bytes(data[:8], "little")
        if 0 < header_len <= len(data) - 8 and data[8:9] == b"{":
            return "safetensors"
    if data[:1] == b"\x80":  # pickle protocol >= 2 (old torch.save format)
        return "legacy_pickle"
    suffix = Path(name).suffix.lower()
    return {".safetensors": "safetensors", ".npz": "npz", ".pt2": "pt2"}.get(suffix, "unknown")


# ---------------------------------------------------------------------------
# Safe unpickling (weights_only=True only)
# ---------------------------------------------------------------------------

def _torch_load_safe(data: bytes, name: str) -> Any:
    """``torch.load(weights_only=True)`` with a message that explains a refusal."""
    try:
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        detail = str(error).split("\n")[0]
        raise UnsafeFileError(
            f"`{name}` was refused: it is a pickle that contains more than tensors and plain containers, "
            f"and loading it could run code ({detail[:160]}). It was not loaded. Save plain tensors instead: "
            "`safetensors.torch.save_file(state_dict, 'file.safetensors')`, or `torch.save` of a dict of tensors."
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise ModelInputError(f"`{name}` could not be read as a torch file ({error}); is it complete and "
                              "saved with `torch.save`?") from None


# ---------------------------------------------------------------------------
# .pt2 vetting
# ---------------------------------------------------------------------------

# Call targets the explorer runs: ATen / prims operators and pure helpers.
_TARGET_RE = re.compile(r"^torch\.ops\.(aten|prims)\.[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")
_SAFE_PY_TARGETS = frozenset({
    "_operator.getitem", "_operator.add", "_operator.sub", "_operator.mul", "_operator.floordiv",
    "_operator.truediv", "_operator.neg", "_operator.mod", "_operator.pow", "_operator.eq", "_operator.ne",
    "_operator.lt", "_operator.le", "_operator.gt", "_operator.ge", "_operator.and_", "_operator.or_",
    "_operator.not_", "torch.sym_float", "torch.sym_int", "torch.sym_max", "torch.sym_min", "torch.sym_not",
    "torch.sym_sqrt", "torch.sym_ite", "math.ceil", "math.floor", "math.trunc", "math.sqrt",
})
# ATen operators that touch files or print, refused although they are ATen.
_REFUSED_ATEN = frozenset({"from_file", "_print", "save", "_save_jit_module", "_load_jit_module"})

# Names a symbolic shape expression may use (sympy srepr output and torch's sympy functions).
_SYMPY_NAMES = frozenset({
    "Symbol", "Integer", "Rational", "Float", "Add", "Mul", "Pow", "Mod", "Max", "Min", "Abs", "Eq", "Ne",
    "Lt", "Le", "Gt", "Ge", "StrictLessThan", "StrictGreaterThan", "LessThan", "GreaterThan", "Equality",
    "Unequality", "And", "Or", "Not", "true", "false", "True", "False", "oo", "zoo", "nan", "Half", "One",
    "Zero", "NegativeOne", "Infinity", "NegativeInfinity", "BooleanTrue", "BooleanFalse", "Piecewise",
    "ExprCondPair", "floor", "ceiling", "sqrt",
    # assumption keywords in Symbol(...)
    "integer", "positive", "nonnegative", "negative", "nonpositive", "real", "finite", "zero", "nonzero", "even",
    "odd", "precision",
    # torch.utils._sympy.functions (the deserializer's locals)
    "FloorDiv", "ModularIndexing", "Where", "PythonMod", "CleanDiv", "CeilToInt", "FloorToInt", "CeilDiv",
    "LShift", "RShift", "PowByNatural", "FloatPow", "FloatTrueDiv", "IntTrueDiv",
    "IsNonOverlappingAndDenseIndicator", "TruncToFloat", "TruncToInt", "RoundToInt", "RoundDecimal", "ToFloat",
    "Identity", "OpaqueUnaryFn_sqrt", "int_oo", "IntInfinity", "NegativeIntInfinity",
})
# torch's shape symbols: a short lowercase prefix and a number (s0, s31, u2, ...). The digits
# are required: a bare lowercase name could be a builtin (exec, chr, open) inside sympify.
_SYMBOL_NAME_RE = re.compile(r"^[a-z]{1,4}[0-9]{1,9}$")
_SYMBOL_STRING_RE = re.compile(r"^['\"][a-z]{1,4}[0-9]{1,9}['\"]$")
_POWER_NAMES = frozenset({"Pow", "PowByNatural", "FloatPow"})


def _check_sympy_string(expr: str, where: str) -> None:
    """Accept only what ``srepr``/``str`` of a shape expression looks like.

    ``sympy.sympify`` evaluates its argument with ``eval``; this grammar keeps
    attribute access, dunder names, calls to anything but sympy constructors, and
    string literals other than symbol names out.
    """
    if len(expr) > 4000:
        raise UnsafeFileError(f"the model file was refused: a symbolic shape at {where} is {len(expr)} characters "
                              "long, far more than torch.export writes")
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(expr).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        raise UnsafeFileError(f"the model file was refused: the symbolic shape {expr[:80]!r} at {where} is not an "
                              "expression torch.export writes") from None
    powers = sum(1 for t in tokens if t.string == "**" or t.string in _POWER_NAMES)
    if powers > 1:
        raise UnsafeFileError(f"the model file was refused: the symbolic shape {expr[:80]!r} at {where} nests powers "
                              "(torch.export does not write those; evaluating them could take forever)")
    for token in tokens:
        kind, text = token.type, token.string
        ok = False
        if kind == tokenize.NUMBER and (len(text) > 19 or (powers and _too_big_for_power(text))):
            raise UnsafeFileError(
                f"the model file was refused: the symbolic shape {expr[:80]!r} at {where} has the number {text} "
                + ("next to a power (its evaluation could take forever)" if powers else "with too many digits")
            )
        if kind in (tokenize.NUMBER, tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER):
            ok = True
        elif kind == tokenize.NAME:
            ok = not keyword.iskeyword(text) or text in ("True", "False")
            ok = ok and (text in _SYMPY_NAMES or bool(_SYMBOL_NAME_RE.match(text)))
        elif kind == tokenize.STRING:
            ok = bool(_SYMBOL_STRING_RE.match(text))
        elif kind == tokenize.OP:
            ok = text in {"(", ")", ",", "=", "+", "-", "*", "/", "**", "//", "%", "<", ">", "<=", ">=", "==",
                          "!=", "&", "|", "~"}
        if not ok:
            raise UnsafeFileError(
                f"the model file was refused: the symbolic shape {expr[:80]!r} at {where} contains {text!r}, which "
                "torch.export does not write and which torch's loader would evaluate as Python. It was not loaded."
            )


def _too_big_for_power(text: str) -> bool:
    try:
        return abs(float(text)) > 64
    except ValueError:
        return True


def _check_target(target: str, where: str) -> None:
    if target in _SAFE_PY_TARGETS:
        return
    match = _TARGET_RE.match(target)
    if match is None:
        raise UnsafeFileError(
            f"the model file was refused: node {where} calls `{target}`, which is not an ATen/prims operator. "
            "The explorer only runs graphs of standard operators (export with `torch.export.export` and no custom "
            "ops, higher-order ops or Python callbacks). It was not loaded."
        )
    op_name = target.split(".")[3]
    if op_name in _REFUSED_ATEN:
        raise UnsafeFileError(f"the model file was refused: node {where} calls `{target}`, which reads, writes or "
                              "prints outside the model. It was not loaded.")


def _walk_json(node: Any, path: str) -> Iterator[tuple[str, str, str]]:
    """Yield (key, value, path) for every string value in a JSON tree."""
    if isinstance(node, dict):
        for key, value in node.items():
            sub = f"{path}.{key}"
            if isinstance(value, str):
                yield key, value, sub
            else:
                yield from _walk_json(value, sub)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            if isinstance(value, str):
                yield "", value, f"{path}[{index}]"
            else:
                yield from _walk_json(value, f"{path}[{index}]")


def _check_model_json(text: bytes, entry: str) -> None:
    try:
        tree = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelInputError(f"the model file is damaged: `{entry}` is not valid JSON; save it again with "
                              "`torch.export.save`") from None
    for key, value, where in _walk_json(tree, entry):
        if key == "expr_str":
            _check_sympy_string(value, where)
        elif key in ("target", "as_operator"):
            _check_target(value, where)
        elif value.startswith("#") and ":" in value and key not in ("stack_trace", "name"):
            raise UnsafeFileError(f"the model file was refused: `{where}` names an extension operator `{value}`. "
                                  "It was not loaded.")


def _check_payload_config(text: bytes, entry: str, kind: str) -> None:
    try:
        config = json.loads(text).get("config", {})
    except (json.JSONDecodeError, UnicodeDecodeError, AttributeError):
        raise ModelInputError(f"the model file is damaged: `{entry}` is not a valid payload config") from None
    for fqn, meta in config.items():
        if not isinstance(meta, dict):
            raise ModelInputError(f"the model file is damaged: `{entry}` entry {fqn!r} is not an object")
        path_name = str(meta.get("path_name", ""))
        if meta.get("use_pickle"):
            raise UnsafeFileError(
                f"the model file was refused: {kind} `{fqn}` is stored as a pickle, which torch.export.load would "
                "unpickle with weights_only=False (able to run code). Re-export with plain tensor weights "
                "(dense, strided tensors). It was not loaded."
            )
        if path_name.startswith(("custom_obj_", "opaque_obj_")) or (kind == "constant"
                                                                   and not path_name.startswith("tensor_")):
            raise UnsafeFileError(
                f"the model file was refused: constant `{fqn}` is a Python/TorchScript object ({path_name}); only "
                "tensor constants are accepted. It was not loaded."
            )
        if "/" in path_name or ".." in path_name:
            raise UnsafeFileError(f"the model file was refused: `{entry}` points outside its folder ({path_name!r})")


def check_pt2_archive(data: bytes, name: str = "model.pt2", *, max_bytes: int = MAX_FILE_BYTES) -> None:
    """Vet a ``torch.export.save`` archive so that ``torch.export.load`` runs no code from it.

    Args:
        data: the archive bytes.
        name: file name for messages.
        max_bytes: limit on the *uncompressed* size as well (zip bombs).

    Raises:
        UnsafeFileError: the archive holds something that could run code.
        ModelInputError: it is not a .pt2 archive, or is damaged.
    """
    fmt = detect_format(data, name)
    if fmt == "torch_pickle" or fmt == "legacy_pickle":
        raise ModelInputError(
            f"`{name}` is a `torch.save` file (a pickle), not an exported model. The Hessian needs the architecture "
            "as well: save with `torch.export.save(torch.export.export(model, (example_input,)), 'model.pt2')`. "
            "A state dict (weights only) can be opened under *Weights*."
        )
    if fmt != "pt2":
        raise ModelInputError(
            f"`{name}` is not a .pt2 archive written by `torch.export.save` (format: {fmt}). Save the model with "
            "`torch.export.save(torch.export.export(model, (example_input,)), 'model.pt2')`."
        )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        infos = archive.infolist()
        total = sum(info.file_size for info in infos)
        if total > 4 * max_bytes:
            raise ModelInputError(f"`{name}` unpacks to {_mb(total)}, over the {_mb(4 * max_bytes)} limit")
        entries = {}
        for info in infos:
            if info.is_dir():
                continue
            parts = info.filename.split("/", 1)
            if len(parts) != 2:
                raise ModelInputError(f"`{name}` is not a .pt2 archive (entry {info.filename!r} outside its folder)")
            entries[parts[1]] = info.filename
        if entries.get("archive_format") is None or archive.read(entries["archive_format"]).strip() != b"pt2":
            raise ModelInputError(
                f"`{name}` is not in the .pt2 archive format of torch >= 2.7 (no `archive_format`); re-export it with "
                "`torch.export.save` in a current torch"
            )
        if "models/model.json" not in entries:
            raise ModelInputError(f"`{name}` holds no exported program named `model`; save a single program with "
                                  "`torch.export.save(exported_program, path)`")
        for tail, full in entries.items():
            if tail.startswith(("data/aotinductor/", "data/executorch/", "data/mtia", "xl_model_weights/")):
                raise UnsafeFileError(
                    f"`{name}` was refused: it contains compiled code or external payloads ({tail.split('/')[1]}); "
                    "the explorer only loads plain exported programs. It was not loaded."
                )
            if tail.startswith("models/") and tail.endswith(".json"):
                _check_model_json(archive.read(full), tail)
            elif tail.startswith("data/weights/") and tail.endswith("_weights_config.json"):
                _check_payload_config(archive.read(full), tail, "weight")
            elif tail.startswith("data/constants/") and tail.endswith("_constants_config.json"):
                _check_payload_config(archive.read(full), tail, "constant")
            elif tail.startswith(("data/weights/", "data/constants/")) and tail.endswith(".pt"):
                raise UnsafeFileError(
                    f"`{name}` was refused: `{tail}` is a legacy pickled payload that torch.export.load would unpickle "
                    "with weights_only=False. Re-export with `torch.export.save` in torch >= 2.7. It was not loaded."
                )
            elif tail.startswith("data/sample_inputs/"):
                # torch.export.load tries weights_only=True and silently falls back to
                # weights_only=False; so anything the safe unpickler refuses is refused here.
                _torch_load_safe(archive.read(full), f"{name}: {tail}")


# ---------------------------------------------------------------------------
# Exported models
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class InputSpec:
    """Shape and dtype of the model's single tensor input.

    ``shape`` has ``None`` for dynamic dimensions (normally the batch).
    """

    shape: tuple[int | None, ...]
    dtype: torch.dtype

    @property
    def sample_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]

    @property
    def fixed_batch(self) -> int | None:
        return self.shape[0] if self.shape and self.shape[0] is not None else None

    def describe(self) -> str:
        dims = ", ".join("N" if i == 0 and d is None else ("?" if d is None else str(d))
                         for i, d in enumerate(self.shape))
        return f"({dims}) {str(self.dtype).replace('torch.', '')}"


@dataclass
class ExportedModel:
    """An exported program made usable: the runnable module plus what the UI shows.

    Attributes:
        module: ``program.module()``, an ``nn.Module`` over which
            ``torch.func.functional_call`` substitutes parameters.
        program: the ``torch.export.ExportedProgram``.
        name: file name.
        input_spec: the single tensor input's shape (None = dynamic) and dtype.
        output_shape: the output's shape (None = dynamic).
    """

    module: nn.Module
    program: Any
    name: str
    input_spec: InputSpec
    output_shape: tuple[int | None, ...]
    extras: dict[str, Any] = field(default_factory=dict)

    def named_parameters(self) -> list[tuple[str, torch.Tensor]]:
        return list(self.module.named_parameters())

    @property
    def n_parameters(self) -> int:
        return sum(p.numel() for _, p in self.named_parameters())

    def parameter_table(self) -> list[dict[str, Any]]:
        """One row per parameter: name, shape, numel, dtype, trainable."""
        return [{"name": n, "shape": tuple(p.shape), "numel": p.numel(), "dtype": str(p.dtype).replace("torch.", ""),
                 "trainable": bool(p.requires_grad)} for n, p in self.named_parameters()]

    def __repr__(self) -> str:
        return (f"ExportedModel({self.name!r}, input {self.input_spec.describe()}, {self.n_parameters} parameters "
                f"in {len(self.named_parameters())} tensors)")


def _shape_of(value: Any) -> tuple[int | None, ...]:
    return tuple(int(d) if isinstance(d, int) else None for d in value.shape)


def _describe_program(program: Any, name: str) -> tuple[InputSpec, tuple[int | None, ...]]:
    from torch.export.graph_signature import InputKind

    user_inputs = [spec for spec in program.graph_signature.input_specs if spec.kind == InputKind.USER_INPUT]
    placeholders = {node.name: node for node in program.graph.nodes if node.op == "placeholder"}
    if len(user_inputs) != 1:
        raise ModelInputError(
            f"`{name}` takes {len(user_inputs)} inputs; the explorer needs a model with exactly one tensor input "
            "(x -> outputs). Wrap the model so that it takes a single tensor before exporting."
        )
    node = placeholders.get(user_inputs[0].arg.name)
    value = None if node is None else node.meta.get("val")
    if value is None or not hasattr(value, "shape"):
        raise ModelInputError(f"`{name}`: the input is not a tensor; export the model with one tensor input")
    spec = InputSpec(_shape_of(value), value.dtype)
    outputs = [node for node in program.graph.nodes if node.op == "output"]
    out_vals = outputs[0].args[0] if outputs else ()
    if len(out_vals) != 1 or not hasattr(getattr(out_vals[0], "meta", {}).get("val"), "shape"):
        raise ModelInputError(
            f"`{name}` returns {len(out_vals)} outputs; the explorer needs a model that returns one tensor "
            "(logits or predictions). Wrap it to return one tensor before exporting."
        )
    return spec, _shape_of(out_vals[0].meta["val"])


def load_exported_model(source: Source | Any, *, name: str | None = None,
                        max_bytes: int = MAX_FILE_BYTES) -> ExportedModel:
    """Load a ``torch.export.save`` archive (.pt2) after vetting it (:func:`check_pt2_archive`).

    Args:
        source: path, bytes or an uploaded file; an ``ExportedProgram`` is wrapped as it is.
        name: file name for messages.
        max_bytes: size limit.

    Returns:
        An :class:`ExportedModel`.

    Raises:
        UnsafeFileError: the file could run code and was not loaded.
        ModelInputError: not a .pt2, damaged, several inputs/outputs, or no parameters.

    Example:
        >>> model = load_exported_model("sample_data/models/mlp.pt2")  # doctest: +SKIP
        >>> model.input_spec.describe()  # doctest: +SKIP
        '(N, 16) float32'
    """
    if isinstance(source, torch.export.ExportedProgram):
        program, name = source, name or "exported program"
    else:
        data, name = read_source(source, name=name, max_bytes=max_bytes)
        check_pt2_archive(data, name, max_bytes=max_bytes)
        try:
            program = torch.export.load(io.BytesIO(data))
        except Exception as error:  # noqa: BLE001 - torch raises many kinds here
            raise ModelInputError(f"`{name}` passed the safety checks but torch could not load it: "
                                  f"{type(error).__name__}: {str(error)[:300]}") from None
    spec, out_shape = _describe_program(program, name)
    try:
        module = program.module()
    except Exception as error:  # noqa: BLE001
        raise ModelInputError(f"`{name}`: torch could not build a module from the program: {error}") from None
    model = ExportedModel(module=module, program=program, name=name, input_spec=spec, output_shape=out_shape)
    if model.n_parameters == 0:
        raise ModelInputError(
            f"`{name}` has no parameters, so there is no loss Hessian to look at. Export a model with "
            "trainable weights (nn.Parameter), not one whose weights were folded into constants."
        )
    return model


# ---------------------------------------------------------------------------
# Data sets
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Dataset:
    """Inputs and targets, one row per sample.

    Attributes:
        inputs: (N, ...) float tensor.
        targets: (N,) class indices (int64), or (N, ...) float targets.
        name: file name.
    """

    inputs: torch.Tensor
    targets: torch.Tensor
    name: str = "data"

    def __post_init__(self) -> None:
        if self.inputs.ndim == 0 or self.targets.ndim == 0:
            raise ModelInputError(f"`{self.name}`: inputs and targets need a sample dimension (got shapes "
                                  f"{tuple(self.inputs.shape)} and {tuple(self.targets.shape)})")
        if self.inputs.shape[0] != self.targets.shape[0]:
            raise ModelInputError(
                f"`{self.name}` has {self.inputs.shape[0]} inputs but {self.targets.shape[0]} targets; both need one "
                "row per sample"
            )
        if self.inputs.shape[0] == 0:
            raise ModelInputError(f"`{self.name}` holds no samples")

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def subset(self, indices: torch.Tensor) -> "Dataset":
        return Dataset(self.inputs[indices], self.targets[indices], self.name)

    def describe(self) -> str:
        return (f"{len(self)} samples, inputs {tuple(self.inputs.shape[1:])} "
                f"{str(self.inputs.dtype).replace('torch.', '')}, targets {tuple(self.targets.shape[1:]) or 'scalar'} "
                f"{str(self.targets.dtype).replace('torch.', '')}")


def _pick(mapping: Mapping[str, Any], keys: tuple[str, ...], what: str, name: str,
          explicit: str | None) -> Any:
    if explicit is not None:
        if explicit not in mapping:
            raise ModelInputError(f"`{name}` has no key {explicit!r} for the {what}; it has {sorted(mapping)}")
        return mapping[explicit]
    for key in keys:
        if key in mapping:
            return mapping[key]
    raise ModelInputError(
        f"`{name}` has keys {sorted(mapping)}; the {what} must be stored under one of {list(keys)} "
        f"(or name the key with `{'input_key' if what == 'inputs' else 'target_key'}`)"
    )


def _as_tensor(value: Any, what: str, name: str) -> torch.Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ModelInputError(f"`{name}`: the {what} array has dtype object; store a numeric array")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, torch.Tensor):
        return value.detach()
    raise ModelInputError(f"`{name}`: the {what} must be a tensor or array, got {type(value).__name__}")


def load_dataset(source: Source, *, name: str | None = None, input_key: str | None = None,
                 target_key: str | None = None, max_bytes: int = MAX_FILE_BYTES) -> Dataset:
    """Load inputs and targets from ``.pt`` (weights_only), ``.safetensors`` or ``.npz``.

    Inputs are stored under one of ``inputs, input, x, X, data, features`` and targets
    under ``targets, target, y, Y, labels, label`` (or name the keys). A ``.pt`` file
    may also hold a ``(inputs, targets)`` tuple.

    Args:
        source: path, bytes or an uploaded file.
        name: file name for messages and format detection.
        input_key, target_key: explicit keys.
        max_bytes: size limit.

    Raises:
        UnsafeFileError: a pickle that could run code (refused, not loaded).
        ModelInputError: anything else that does not fit, with the fix.
    """
    data, name = read_source(source, name=name, max_bytes=max_bytes)
    fmt = detect_format(data, name)
    mapping: Mapping[str, Any]
    if fmt in ("torch_pickle", "legacy_pickle"):
        obj = _torch_load_safe(data, name)
        if isinstance(obj, (tuple, list)) and len(obj) == 2:
            mapping = {"inputs": obj[0], "targets": obj[1]}
        elif isinstance(obj, Mapping):
            mapping = obj
        else:
            raise ModelInputError(f"`{name}` holds a {type(obj).__name__}; save a dict "
                                  "{'inputs': X, 'targets': y} or a tuple (X, y)")
    elif fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        try:
            mapping = st_load(data)
        except (SafetensorError, ValueError, RuntimeError) as error:
            raise ModelInputError(f"`{name}` is not a valid safetensors file ({error})") from None
    elif fmt == "npz":
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as npz:
                mapping = {key: npz[key] for key in npz.files}
        except ValueError as error:
            raise UnsafeFileError(f"`{name}` was refused: it holds pickled (object) arrays, which could run code "
                                  f"when loaded ({error}). Save numeric arrays with `np.savez`.") from None
    elif fmt == "pt2":
        raise ModelInputError(f"`{name}` is an exported model (.pt2); choose it as the model, and a data file "
                              "(.pt, .safetensors or .npz) as the data")
    else:
        raise ModelInputError(f"`{name}` is not a data file the explorer reads; use .pt (torch.save of a dict of "
                              "tensors), .safetensors or .npz with `inputs` and `targets`")
    inputs = _as_tensor(_pick(mapping, _INPUT_KEYS, "inputs", name, input_key), "inputs", name)
    targets = _as_tensor(_pick(mapping, _TARGET_KEYS, "targets", name, target_key), "targets", name)
    if inputs.dtype in (torch.float16, torch.bfloat16):
        inputs = inputs.float()
    if not (inputs.is_floating_point() or inputs.dtype in (torch.int64, torch.int32, torch.uint8)):
        raise ModelInputError(f"`{name}`: inputs have dtype {inputs.dtype}; store float (or integer) inputs")
    if not (targets.is_floating_point() or targets.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8,
                                                              torch.int8)):
        raise ModelInputError(f"`{name}`: targets have dtype {targets.dtype}; store class indices (int) or floats")
    if not targets.is_floating_point():
        targets = targets.long()
    elif targets.dtype != torch.float64:
        targets = targets.float()
    return Dataset(inputs.contiguous(), targets.contiguous(), name)


# ---------------------------------------------------------------------------
# State dicts
# ---------------------------------------------------------------------------

def _flatten_tensors(obj: Any, prefix: str, out: dict[str, torch.Tensor]) -> None:
    if isinstance(obj, torch.Tensor):
        out[prefix] = obj.detach()
    elif isinstance(obj, Mapping):
        for key, value in obj.items():
            _flatten_tensors(value, f"{prefix}.{key}" if prefix else str(key), out)
    elif isinstance(obj, (list, tuple)):
        for index, value in enumerate(obj):
            _flatten_tensors(value, f"{prefix}.{index}" if prefix else str(index), out)


def load_state_dict(source: Source, *, name: str | None = None,
                    max_bytes: int = MAX_FILE_BYTES) -> dict[str, torch.Tensor]:
    """Load a state dict (name -> tensor) from ``.safetensors`` or ``.pt`` (weights_only=True).

    Nested dicts (e.g. ``{"model": state_dict, "epoch": 3}``) are flattened with dotted
    names; entries that are not tensors are left out. A ``.pt2`` archive is vetted and
    its parameters and buffers are returned.

    Raises:
        UnsafeFileError: a pickle that could run code (refused, not loaded).
        ModelInputError: not a state dict, or no tensors in it.
    """
    data, name = read_source(source, name=name, max_bytes=max_bytes)
    fmt = detect_format(data, name)
    tensors: dict[str, torch.Tensor] = {}
    if fmt == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load as st_load

        try:
            tensors = dict(st_load(data))
        except (SafetensorError, ValueError, RuntimeError) as error:
            raise ModelInputError(f"`{name}` is not a valid safetensors file ({error})") from None
    elif fmt in ("torch_pickle", "legacy_pickle"):
        _flatten_tensors(_torch_load_safe(data, name), "", tensors)
    elif fmt == "pt2":
        model = load_exported_model(data, name=name, max_bytes=max_bytes)
        tensors = {k: v.detach() for k, v in model.module.state_dict().items()}
    elif fmt == "npz":
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            tensors = {key: torch.from_numpy(np.ascontiguousarray(npz[key])) for key in npz.files}
    else:
        raise ModelInputError(f"`{name}` is not a state dict the explorer reads; use .safetensors "
                              "(`safetensors.torch.save_file(model.state_dict(), path)`) or .pt (`torch.save`)")
    if not tensors:
        raise ModelInputError(f"`{name}` holds no tensors; save `model.state_dict()`")
    return tensors
