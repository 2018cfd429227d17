"""Where the Model page's inputs come from: a sample model, or uploaded files.

``source_section()`` draws the picker (sample MLP / CNN, or three uploaders: the
exported model, its data, an optional state dict) and returns a :class:`ModelInputs`
with whatever loaded and a message for whatever did not. Loading goes through the core
loaders (``explorer.models.loading``: vetted ``.pt2``, ``weights_only`` pickles,
safetensors, npz) and is cached per file content with ``st.cache_resource``: the
loaded objects are shared between sessions and treated as read-only (the Hessian
operator works on its own copy of the module).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch

from explorer.runs.jobs import friendly_error
from explorer.models import Dataset, ExportedModel, load_dataset, load_exported_model, load_state_dict
from explorer.models.samples import MODEL_SAMPLE_DIR, MODEL_SAMPLES, ModelSample, read_manifest
from explorer.ui.state import ensure

__all__ = ["ModelInputs", "source_section", "SOURCE_KEY", "SAMPLE_KEY", "UPLOAD_LIMIT_MB"]

SOURCE_KEY = "model_source"
SAMPLE_KEY = "model_sample"
UPLOAD_LIMIT_MB = 200


@dataclass
class ModelInputs:
    """What the page works on; any part may be missing (then ``errors`` says why)."""

    label: str
    model: ExportedModel | None = None
    data: Dataset | None = None
    state_dict: dict[str, torch.Tensor] | None = None
    sample: ModelSample | None = None
    model_path: str | None = None  # for the reproduce snippet
    data_path: str | None = None
    cache_key: tuple[str, ...] = ()
    errors: dict[str, str] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)

    @property
    def default_loss(self) -> str:
        if self.sample is not None:
            return self.sample.loss
        if self.data is not None and not self.data.targets.is_floating_point():
            return "cross_entropy"
        return "mse" if self.data is not None else "cross_entropy"


@st.cache_resource(show_spinner="Loading the model ...", max_entries=16)
def _cached_model(digest: str, name: str, _blob: bytes) -> ExportedModel:
    return load_exported_model(_blob, name=name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _cached_data(digest: str, name: str, _blob: bytes) -> Dataset:
    return load_dataset(_blob, name=name)


@st.cache_resource(show_spinner=False, max_entries=16)
def _cached_state_dict(digest: str, name: str, _blob: bytes) -> dict[str, torch.Tensor]:
    return load_state_dict(_blob, name=name)


def _digest(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _load(kind: str, name: str, blob: bytes, errors: dict[str, str]) -> Any:
    loader = {"model": _cached_model, "data": _cached_data, "state_dict": _cached_state_dict}[kind]
    try:
        return loader(_digest(blob), name, blob)
    except Exception as error:  # noqa: BLE001 - every failure becomes a message next to the file
        errors[kind] = friendly_error(error)
        return None


def _sample_inputs(name: str) -> ModelInputs:
    sample = MODEL_SAMPLES[name]
    errors: dict[str, str] = {}
    paths = {kind: MODEL_SAMPLE_DIR / getattr(sample, f"{kind}_file") for kind in ("model", "data", "state_dict")}
    loaded = {kind: _load(kind, path.name, path.read_bytes(), errors) if path.is_file() else None
              for kind, path in paths.items()}
    for kind, path in paths.items():
        if not path.is_file():
            errors[kind] = f"`{path}` is missing; run `python scripts/make_model_samples.py`"
    manifest = {e["name"]: e for e in read_manifest().get("models", [])}.get(name, {})
    return ModelInputs(label=f"sample: {sample.title}", model=loaded["model"], data=loaded["data"],
                       state_dict=loaded["state_dict"], sample=sample,
                       model_path=f"sample_data/models/{sample.model_file}",
                       data_path=f"sample_data/models/{sample.data_file}", cache_key=("sample", name),
                       errors=errors, manifest=manifest)


def source_section(container: Any = None, *, disabled: bool = False) -> ModelInputs:
    """Draw the input picker; return the loaded inputs (never raises: failures are in ``errors``)."""
    box = container if container is not None else st
    ensure(SOURCE_KEY, "sample")
    ensure(SAMPLE_KEY, "mlp")
    c1, c2 = box.columns([1, 2])
    c1.radio("Input", ["sample", "upload"], key=SOURCE_KEY, horizontal=True, disabled=disabled,
             format_func={"sample": "Sample model", "upload": "Upload files"}.get,
             help="A sample trained by scripts/make_model_samples.py, or your own exported model and data.")
    if st.session_state[SOURCE_KEY] == "sample":
        c2.selectbox("Sample", list(MODEL_SAMPLES), key=SAMPLE_KEY, disabled=disabled,
                     format_func=lambda n: MODEL_SAMPLES[n].title,
                     help="; ".join(f"{s.title}: {s.description}" for s in MODEL_SAMPLES.values()))
        inputs = _sample_inputs(st.session_state[SAMPLE_KEY])
        box.caption(f"{inputs.sample.description}  Files: `{inputs.model_path}`, `{inputs.data_path}`, "
                    f"`sample_data/models/{inputs.sample.state_dict_file}`.")
        return inputs
    u1, u2, u3 = box.columns(3)
    model_file = u1.file_uploader(f"Model (.pt2 from torch.export.save; up to {UPLOAD_LIMIT_MB} MB)", type=["pt2"],
                                  key="model_upload_model", disabled=disabled,
                                  help="torch.export.save(torch.export.export(model, (x,), dynamic_shapes=...), "
                                  "'model.pt2'). Archives that could run code when loaded are refused.")
    data_file = u2.file_uploader("Data (.pt, .safetensors, .npz)", type=["pt", "safetensors", "npz"],
                                 key="model_upload_data", disabled=disabled,
                                 help="Inputs under 'inputs' (or x, X) and targets under 'targets' (or y, labels). "
                                 ".pt files are read with torch.load(weights_only=True).")
    sd_file = u3.file_uploader("State dict for *Weights* (.safetensors, .pt; optional)",
                               type=["safetensors", "pt", "pth", "bin"], key="model_upload_sd", disabled=disabled,
                               help="Without it, the Weights tab uses the uploaded model's parameters.")
    errors: dict[str, str] = {}
    model = None if model_file is None else _load("model", model_file.name, model_file.getvalue(), errors)
    data = None if data_file is None else _load("data", data_file.name, data_file.getvalue(), errors)
    state = None if sd_file is None else _load("state_dict", sd_file.name, sd_file.getvalue(), errors)
    if state is None and model is not None and sd_file is None:
        state = {k: v.detach() for k, v in model.module.state_dict().items()}
    names = [f.name for f in (model_file, data_file, sd_file) if f is not None]
    key = tuple(_digest(f.getvalue())[:16] for f in (model_file, data_file) if f is not None)
    return ModelInputs(label="upload: " + (", ".join(names) if names else "(nothing yet)"), model=model, data=data,
                       state_dict=state, model_path=None if model_file is None else model_file.name,
                       data_path=None if data_file is None else data_file.name, cache_key=("upload", *key),
                       errors=errors)
