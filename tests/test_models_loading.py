"""Loading models, data and state dicts: every accepted format, and files that must be refused.

The malicious files are built here: a pickle whose ``__reduce__`` would create a marker
file, planted (a) as a ``.pt`` data file / state dict and (b) inside a ``.pt2`` archive
where torch.export.load itself would unpickle it with weights_only=False; (c) a .pt2
whose symbolic shape string would be ``eval``-ed by sympy; (d) a graph that calls
``torch.os.system``. Each must be refused with a clear message and the marker must not
exist afterwards.
"""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from explorer.models import (
    ModelInputError,
    UnsafeFileError,
    load_dataset,
    load_exported_model,
    load_state_dict,
)
from explorer.models.samples import MODEL_SAMPLE_DIR




class _Marker:
    """Unpickling this calls open(path, "w"): creates the marker file (code execution)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def _evil_pickle(marker: Path) -> bytes:
    buffer = io.BytesIO()
    pickle.dump({"inputs": torch.zeros(2, 16), "targets": _Marker(marker)}, buffer)
    return buffer.getvalue()


def _rewrite_pt2(src: Path, dst: Path, edit: Callable[[str, bytes], bytes]) -> Path:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            zout.writestr(info, edit(info.filename, zin.read(info.filename)))
    return dst


# -- accepted formats ---------------------------------------------------------------------
def test_sample_models_load_with_their_input_spec() -> None:
    mlp = load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2")
    assert mlp.input_spec.shape == (None, 16) and mlp.input_spec.dtype == torch.float32
    assert [n for n, _ in mlp.named_parameters()] == ["layers.0.weight", "layers.0.bias", "layers.2.weight",
                                                      "layers.2.bias", "layers.4.weight", "layers.4.bias"]
    assert mlp.n_parameters == 1732 and mlp.output_shape == (None, 4)
    cnn = load_exported_model((MODEL_SAMPLE_DIR / "cnn.pt2").read_bytes(), name="cnn.pt2")
    assert cnn.input_spec.describe() == "(N, 1, 8, 8) float32" and cnn.n_parameters == 723
    x = torch.randn(5, 1, 8, 8)
    assert cnn.module(x).shape == (5, 3)


def test_each_data_format(tmp_path: Path) -> None:
    st = load_dataset(MODEL_SAMPLE_DIR / "mlp_data.safetensors")
    assert st.inputs.shape == (256, 16) and st.targets.dtype == torch.int64
    pt = load_dataset(MODEL_SAMPLE_DIR / "cnn_data.pt")
    assert pt.inputs.shape == (192, 1, 8, 8) and len(pt) == 192
    X, y = st.inputs.numpy(), st.targets.numpy()
    np.savez(tmp_path / "d.npz", x=X, y=y)
    npz = load_dataset(tmp_path / "d.npz")
    assert torch.equal(npz.inputs, st.inputs) and torch.equal(npz.targets, st.targets)
    torch.save((st.inputs, st.targets.float().unsqueeze(1)), tmp_path / "tuple.pt")
    tup = load_dataset(tmp_path / "tuple.pt")
    assert tup.targets.shape == (256, 1) and tup.targets.dtype == torch.float32
    with open(tmp_path / "d.npz", "rb") as upload:  # an uploaded file object
        assert len(load_dataset(upload, name="d.npz")) == 256
    save_file({"features": st.inputs, "answer": st.targets}, str(tmp_path / "keys.safetensors"))
    assert len(load_dataset(tmp_path / "keys.safetensors", target_key="answer")) == 256
    with pytest.raises(ModelInputError, match=r"targets must be stored under one of .*target_key"):
        load_dataset(tmp_path / "keys.safetensors")


def test_each_state_dict_format(tmp_path: Path) -> None:
    sd = load_state_dict(MODEL_SAMPLE_DIR / "cnn.safetensors")
    assert tuple(sd["conv2.weight"].shape) == (8, 4, 3, 3)
    model = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    torch.save({"model": model.state_dict(), "epoch": 3, "lr": 0.1}, tmp_path / "checkpoint.pt")
    assert set(load_state_dict(tmp_path / "plain.pt")) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    assert set(load_state_dict(tmp_path / "checkpoint.pt")) == {"model.0.weight", "model.0.bias", "model.2.weight",
                                                               "model.2.bias"}
    from_pt2 = load_state_dict(MODEL_SAMPLE_DIR / "mlp.pt2")
    torch.testing.assert_close(from_pt2["layers.0.weight"],
                               load_state_dict(MODEL_SAMPLE_DIR / "mlp.safetensors")["layers.0.weight"])


# -- refused: code execution --------------------------------------------------------------
def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = tmp_path / "data.pt"
    path.write_bytes(_evil_pickle(marker))
    with pytest.raises(UnsafeFileError, match="refused.*could run code.*not loaded.*safetensors"):
        load_dataset(path)
    with pytest.raises(UnsafeFileError, match="refused"):
        load_state_dict(path)
    assert not marker.exists()


def test_malicious_pickle_inside_pt2_is_refused(tmp_path: Path) -> None:
    # torch.export.load tries weights_only=True on the sample inputs and falls back to
    # weights_only=False, which would run this pickle (torch 2.13).
    marker = tmp_path / "MARKER"
    evil = _rewrite_pt2(MODEL_SAMPLE_DIR / "mlp.pt2", tmp_path / "evil.pt2",
                        lambda name, data: _evil_pickle(marker) if name.endswith("sample_inputs/model.pt") else data)
    with pytest.raises(UnsafeFileError, match="refused"):
        load_exported_model(evil)
    assert not marker.exists()


@pytest.mark.parametrize("payload,message", [
    ("__import__('os').system('touch {marker}') or ", "would evaluate as Python"),
    ("exec(chr(105)+chr(109)+chr(112)) or ", "would evaluate as Python"),  # no string literal needed
    ("10**10**10 + ", "nests powers"),  # a denial of service: sympy would build a 10^10-digit integer
])
def test_code_in_a_symbolic_shape_is_refused(tmp_path: Path, payload: str, message: str) -> None:
    # torch's deserializer passes each "expr_str" to sympy.sympify, which calls eval.
    marker = tmp_path / "MARKER"

    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            text = data.decode()
            assert "Symbol('s" in text
            return text.replace("Symbol('s", payload.format(marker=marker) + "Symbol('s", 1).encode()
        return data

    evil = _rewrite_pt2(MODEL_SAMPLE_DIR / "mlp.pt2", tmp_path / "evil.pt2", edit)
    with pytest.raises(UnsafeFileError, match=f"symbolic shape.*{message}"):
        load_exported_model(evil)
    assert not marker.exists()


def test_graph_calling_python_is_refused(tmp_path: Path) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("models/model.json"):
            return data.replace(b'"torch.ops.aten.tanh.default"', b'"torch.os.system"', 1)
        return data

    evil = _rewrite_pt2(MODEL_SAMPLE_DIR / "mlp.pt2", tmp_path / "evil.pt2", edit)
    with pytest.raises(UnsafeFileError, match=r"calls `torch.os.system`, which is not an ATen/prims operator"):
        load_exported_model(evil)


def test_pickled_weights_inside_pt2_are_refused(tmp_path: Path) -> None:
    def edit(name: str, data: bytes) -> bytes:
        if name.endswith("model_weights_config.json"):
            return data.replace(b'"use_pickle": false', b'"use_pickle": true', 1)
        return data

    evil = _rewrite_pt2(MODEL_SAMPLE_DIR / "mlp.pt2", tmp_path / "evil.pt2", edit)
    with pytest.raises(UnsafeFileError, match="stored as a pickle.*weights_only=False"):
        load_exported_model(evil)


def test_object_arrays_in_npz_are_refused(tmp_path: Path) -> None:
    np.savez(tmp_path / "obj.npz", inputs=np.zeros((3, 2)), targets=np.array([{"a": 1}, 2, 3], dtype=object))
    with pytest.raises(UnsafeFileError, match="pickled \\(object\\) arrays"):
        load_dataset(tmp_path / "obj.npz")


# -- refused: wrong or oversized files ---------------------------------------------------
def test_messages_for_wrong_files(tmp_path: Path) -> None:
    with pytest.raises(ModelInputError, match=r"over the 0.0 MB limit.*raise `max_bytes`"):
        load_exported_model(MODEL_SAMPLE_DIR / "mlp.pt2", max_bytes=1000)
    with pytest.raises(ModelInputError, match="larger than the .* limit"):
        load_dataset((MODEL_SAMPLE_DIR / "mlp_data.safetensors").read_bytes(), name="up.safetensors", max_bytes=100)
    torch.save(nn.Linear(2, 2).state_dict(), tmp_path / "weights.pt")
    with pytest.raises(ModelInputError, match="is a `torch.save` file.*torch.export.save.*Weights"):
        load_exported_model(tmp_path / "weights.pt")
    with pytest.raises(ModelInputError, match="is an exported model"):
        load_dataset(MODEL_SAMPLE_DIR / "mlp.pt2")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelInputError, match="not a .pt2 archive"):
        load_exported_model(tmp_path / "notes.txt")
    with pytest.raises(ModelInputError, match="does not exist"):
        load_dataset(tmp_path / "missing.npz")
    save_file({"inputs": torch.zeros(4, 2), "targets": torch.zeros(3)}, str(tmp_path / "uneven.safetensors"))
    with pytest.raises(ModelInputError, match="4 inputs but 3 targets"):
        load_dataset(tmp_path / "uneven.safetensors")


def test_model_without_parameters_is_refused(tmp_path: Path) -> None:
    class Fixed(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2.0

    torch.export.save(torch.export.export(Fixed(), (torch.randn(3, 4),)), str(tmp_path / "fixed.pt2"))
    with pytest.raises(ModelInputError, match="has no parameters.*trainable weights"):
        load_exported_model(tmp_path / "fixed.pt2")


def test_two_inputs_are_refused(tmp_path: Path) -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(3, 2)

        def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
            return self.lin(x) + z

    torch.export.save(torch.export.export(Two(), (torch.randn(3, 3), torch.randn(3, 2))), str(tmp_path / "two.pt2"))
    with pytest.raises(ModelInputError, match="takes 2 inputs.*exactly one tensor input"):
        load_exported_model(tmp_path / "two.pt2")


def test_sample_script_regenerates_the_committed_files(tmp_path: Path) -> None:
    from explorer.models.samples import MODEL_SAMPLES, write_model_samples

    write_model_samples(tmp_path, with_reference=False)
    for sample in MODEL_SAMPLES.values():
        # data come from seeded local generators: identical
        fresh, committed = load_dataset(tmp_path / sample.data_file), load_dataset(MODEL_SAMPLE_DIR / sample.data_file)
        assert torch.equal(fresh.inputs, committed.inputs) and torch.equal(fresh.targets, committed.targets)
        # weights come from single-threaded training: identical on this build; other CPUs may round
        # float32 sums differently, and 30-40 Adam steps keep such differences near 1e-6 relative.
        new, old = load_state_dict(tmp_path / sample.state_dict_file), load_state_dict(
            MODEL_SAMPLE_DIR / sample.state_dict_file)
        assert new.keys() == old.keys()
        for name in old:
            torch.testing.assert_close(new[name], old[name], rtol=1e-4, atol=1e-5)
        exported = load_exported_model(tmp_path / sample.model_file)
        torch.testing.assert_close(dict(exported.module.state_dict()), old, rtol=1e-4, atol=1e-5)
