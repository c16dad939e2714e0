"""Choosing where the networks run: ``auto`` prefers CUDA, then Apple's MPS, then the CPU."""

from __future__ import annotations

import contextlib

import torch

from synthlab.errors import InputError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(choice: str = "auto") -> torch.device:
    """Turn ``auto|cpu|cuda|mps`` (or ``cuda:N``) into an available torch device."""
    choice = (choice or "auto").lower()
    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind = choice.split(":")[0]
    if kind not in DEVICE_CHOICES:
        raise InputError("--device", f"unknown device '{choice}' (use one of {', '.join(DEVICE_CHOICES)})")
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError("--device", "CUDA was requested but no CUDA GPU is available here (use --device cpu)")
    if kind == "mps" and not _mps_available():
        raise InputError("--device", "MPS was requested but is not available here (use --device cpu)")
    return torch.device(choice)


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def autocast(device: torch.device, enabled: bool = True):
    """Mixed precision on CUDA (bfloat16 where supported, else float16); a no-op elsewhere."""
    if not enabled or device.type != "cuda":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def describe(device: torch.device) -> str:
    """A one-line description for logs and the server's /info."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        total = torch.cuda.get_device_properties(index).total_memory / 2**30
        return f"cuda:{index} ({torch.cuda.get_device_name(index)}, {total:.0f} GiB)"
    return device.type


def is_out_of_memory(error: BaseException) -> bool:
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


OUT_OF_MEMORY_ADVICE = ("the GPU ran out of memory; retry with a smaller sliding window "
                        "(--window), or on the CPU (--device cpu)")
