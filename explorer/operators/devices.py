"""Which devices and dtypes torch can use here (cpu, cuda:N, mps)."""

from __future__ import annotations

import torch

__all__ = ["available_devices", "DTYPES", "parse_dtype", "parse_device", "device_label"]

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def available_devices() -> list[str]:
    """Devices torch sees now, CPU first."""
    devices = ["cpu"]
    if torch.cuda.is_available():
        devices += [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        devices.append("mps")
    return devices


def device_label(device: str) -> str:
    if device.startswith("cuda"):
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return device


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        if name in DTYPES.values():
            return name
        raise TypeError(f"`dtype` must be float32 or float64, got {name}")
    try:
        return DTYPES[str(name).replace("torch.", "")]
    except KeyError:
        raise TypeError(f"`dtype` must be one of {sorted(DTYPES)}, got {name!r}") from None


def parse_device(name: str | torch.device) -> torch.device:
    """A torch.device that exists here, or ValueError naming what is available."""
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise ValueError(f"`device` {name!r} is not a device name; use one of {available_devices()}") from None
    label = str(device) if device.index is not None or device.type != "cuda" else "cuda:0"
    if device.type == "cpu":
        return device
    if label not in available_devices() and str(device) not in available_devices():
        raise ValueError(f"`device` {name!r} is not available on this machine; use one of {available_devices()}")
    return device
