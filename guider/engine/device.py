"""The one place where the compute device is chosen."""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)


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
    """Index of the GPU this process uses: with several visible, the card of the first free
    slot (guider.runs.gpu_claim; $GUIDER_JOBS_PER_GPU slots per card), so concurrent workflow jobs
    spread over the cards; with one card, that card."""
    count = torch.cuda.device_count()
    if count < 2:
        return 0
    from guider.runs.gpu_claim import claim_gpu

    index = claim_gpu(count)
    if index is None:
        log.warning("every slot of the %d GPUs is held by another job; sharing GPU 0", count)
    return 0 if index is None else index
