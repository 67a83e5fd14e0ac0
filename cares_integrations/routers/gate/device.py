"""Picking the torch device and dtype in one place (shared by inference and training).

``pick_device(None)`` gives CUDA when available, then Apple MPS, then CPU. ``pick_dtype`` gives
bfloat16 on CUDA (float16 on GPUs without bf16 support) and float32 elsewhere, unless the caller
names one: a ``torch.dtype`` or one of ``"bf16"``, ``"fp16"``, ``"fp32"`` (long names too).
"""

from __future__ import annotations

from typing import Any

import torch

_DTYPE_NAMES: dict[str, torch.dtype] = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "half": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
    "float": torch.float32,
}


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The device to run on: the one given, else cuda, then mps, then cpu.

    Raises ValueError for an unknown device string and RuntimeError when a named accelerator is
    not available, instead of failing later inside the model.
    """
    if device is None:
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {device!r}; use 'cuda', 'cuda:N', 'mps' or 'cpu'") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} was asked for but CUDA is not available in this torch build")
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise RuntimeError(f"device {device!r} was asked for but MPS is not available")
    return dev


def pick_dtype(device: str | torch.device | None, dtype: Any = None) -> torch.dtype:
    """The dtype to load weights in: the one given, else bf16 on CUDA (fp16 without bf16), fp32 elsewhere."""
    if dtype is not None:
        if isinstance(dtype, torch.dtype):
            if not dtype.is_floating_point:
                raise ValueError(f"dtype must be a floating point type, got {dtype}")
            return dtype
        if isinstance(dtype, str):
            key = dtype.lower().removeprefix("torch.")
            if key in _DTYPE_NAMES:
                return _DTYPE_NAMES[key]
        raise ValueError(f"unknown dtype {dtype!r}; use a torch dtype or one of {sorted(_DTYPE_NAMES)}")
    dev = torch.device(device) if device is not None else pick_device()
    if dev.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32
