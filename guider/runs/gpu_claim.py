"""GPU slots for concurrent jobs: one job per slot, `jobs_per_gpu` slots per card.

The workflow caps the number of concurrent GPU jobs at visible GPUs x `train.jobs_per_gpu`,
but Snakemake cannot tell a job *which* card has a free slot. A process asking for device
"auto" therefore claims the first slot no other process holds: an exclusive, non-blocking
`flock` on a per-slot lock file, kept until the process exits (the kernel releases it even
when the process is killed, so a crashed job never leaves a slot taken). Slots are tried
slot-major (slot 0 of every card, then slot 1, ...), so k jobs on n cards spread over the
cards before any card gets a second one. The workflow passes the slot count to its jobs
in $GUIDER_JOBS_PER_GPU (default 1: one job per card).
"""

from __future__ import annotations

import fcntl
import logging
import os
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
LOCK_DIR_ENV = "GUIDER_GPU_LOCK_DIR"
JOBS_PER_GPU_ENV = "GUIDER_JOBS_PER_GPU"
_claim: tuple[int, IO] | None = None  # (index, open lock file) held by this process


def default_lock_dir() -> Path:
    """$GUIDER_GPU_LOCK_DIR, else a per-user folder in the system temp dir (shared by all jobs of a user)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"guider-gpu-locks-{os.getuid()}")


def physical_ids(n_devices: int) -> list[str]:
    """Names of the visible devices as the machine knows them (CUDA_VISIBLE_DEVICES entries when set)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:n_devices] if len(visible) >= n_devices else [str(i) for i in range(n_devices)]


def jobs_per_gpu() -> int:
    """Slots per card: $GUIDER_JOBS_PER_GPU (set by the workflow from train.jobs_per_gpu), else 1."""
    raw = os.environ.get(JOBS_PER_GPU_ENV, "").strip() or "1"
    if not raw.isdigit() or int(raw) < 1:
        raise ValueError(f"${JOBS_PER_GPU_ENV}={raw!r}: expected a whole number >= 1 (jobs sharing one GPU)")
    return int(raw)


GIB_PER_JOB = 20.0  # a Baby/Sports-size training peaks at a few GiB; 20 leaves room for Clothing and graph backbones
MAX_AUTO_JOBS = 8


def auto_jobs_per_gpu(memory_gib: float) -> int:
    """Jobs per card when the config leaves train.jobs_per_gpu null: one per GIB_PER_JOB GiB,
    so 1 on cards below 40 GiB (or of unknown size), at most MAX_AUTO_JOBS."""
    return max(1, min(MAX_AUTO_JOBS, int(memory_gib // GIB_PER_JOB))) if memory_gib >= 2 * GIB_PER_JOB else 1


def slot_lock_name(device: str, slot: int, slots: int) -> str:
    """gpu-<device>.lock with one slot per card (the layout before slots existed), else gpu-<device>.slot<j>.lock."""
    return f"gpu-{device}.lock" if slots == 1 else f"gpu-{device}.slot{slot}.lock"


def claim_gpu(
    n_devices: int, lock_dir: str | Path | None = None, ids: list[str] | None = None, slots: int | None = None
) -> int | None:
    """Index (0..n_devices-1) of the GPU whose slot this process now holds, or None when every
    slot of every card is held by others. `slots` per card (default: jobs_per_gpu()).

    Idempotent: a process that already holds a slot gets the same index again.
    """
    global _claim
    if _claim is not None:
        return _claim[0]
    slots = jobs_per_gpu() if slots is None else slots
    if slots < 1:
        raise ValueError(f"claim_gpu: slots per GPU must be >= 1, got {slots}")
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    names = ids or physical_ids(n_devices)
    for slot in range(slots):
        for index, name in enumerate(names):
            handle = open(folder / slot_lock_name(name, slot, slots), "a+")
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                continue
            _claim = (index, handle)
            log.info("claimed GPU %d slot %d of %d (device %s, lock %s)", index, slot, slots, name, handle.name)
            return index
    return None


def release_gpu() -> None:
    """Give the claimed GPU back before the process ends (tests; long-lived processes)."""
    global _claim
    if _claim is not None:
        _claim[1].close()
        _claim = None
