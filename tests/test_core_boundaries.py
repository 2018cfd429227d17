"""The core stays free of Streamlit, and devices/dtypes are parsed with clear errors."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest
import torch

import explorer
from explorer.operators.devices import available_devices, parse_device, parse_dtype


def _core_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(explorer.__path__, prefix="explorer."):
        if info.name.startswith("explorer.ui"):
            continue
        names.append(info.name)
    return names


def test_core_imports_without_streamlit():
    modules = [m for m in _core_modules() if not m.endswith("__main__")]
    code = (
        "import sys, importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "assert 'streamlit' not in sys.modules, [m for m in sys.modules if m.startswith('streamlit')]\n"
        "print('ok', len(sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")


def test_devices_list_starts_with_cpu():
    devices = available_devices()
    assert devices[0] == "cpu"
    assert all(d == "cpu" or d.startswith("cuda:") or d == "mps" for d in devices)


@pytest.mark.parametrize("name,expected", [("float64", torch.float64), ("float32", torch.float32),
                                           (torch.float32, torch.float32)])
def test_parse_dtype(name, expected):
    assert parse_dtype(name) is expected


@pytest.mark.parametrize("bad", ["float16", "int64", torch.bfloat16])
def test_parse_dtype_rejects(bad):
    with pytest.raises(TypeError, match="float32 or float64|must be one of"):
        parse_dtype(bad)


def test_parse_device_rejects_unknown_names():
    with pytest.raises(ValueError, match="not a device name"):
        parse_device("gpu please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="not available on this machine"):
            parse_device("cuda:0")
    assert parse_device("cpu") == torch.device("cpu")
