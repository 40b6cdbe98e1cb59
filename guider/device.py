"""The one place where the compute device is chosen."""

from __future__ import annotations

import torch


def resolve_device(requested: str | None = None) -> torch.device:
    """Return the device to run on: `requested` if given, else CUDA when present, else CPU.

    `requested` may be "auto", "cpu", "cuda" or "cuda:N". Asking for CUDA on a machine
    without it is an error rather than a silent fallback, so a GPU job never runs on CPU
    by accident.
    """
    if requested in (None, "", "auto"):
        return torch.device(f"cuda:{_free_gpu()}" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available on this machine")
    return device


def _free_gpu() -> int:
    """Index of the GPU this process uses: with several visible, the first one no other
    process holds (guider.gpu_claim), so concurrent workflow jobs land on different cards."""
    count = torch.cuda.device_count()
    if count < 2:
        return 0
    from guider.gpu_claim import claim_gpu

    index = claim_gpu(count)
    return 0 if index is None else index
