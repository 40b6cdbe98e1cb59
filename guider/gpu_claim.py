"""One GPU per job on a multi-GPU machine.

The workflow caps the number of concurrent GPU jobs at the number of visible GPUs, but
Snakemake cannot tell a job *which* card is free. A process asking for device "auto"
therefore claims the first GPU that no other process holds: an exclusive, non-blocking
`flock` on a per-GPU lock file, kept until the process exits (the kernel releases it
even when the process is killed, so a crashed job never leaves a card locked).
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
_claim: tuple[int, IO] | None = None  # (index, open lock file) held by this process


def default_lock_dir() -> Path:
    """$GUIDER_GPU_LOCK_DIR, else a per-user folder in the system temp dir (shared by all jobs of a user)."""
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir()) / f"guider-gpu-locks-{os.getuid()}")


def physical_ids(n_devices: int) -> list[str]:
    """Names of the visible devices as the machine knows them (CUDA_VISIBLE_DEVICES entries when set)."""
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return visible[:n_devices] if len(visible) >= n_devices else [str(i) for i in range(n_devices)]


def claim_gpu(n_devices: int, lock_dir: str | Path | None = None, ids: list[str] | None = None) -> int | None:
    """Index (0..n_devices-1) of a GPU this process now holds, or None when all are held by others.

    Idempotent: a process that already holds a GPU gets the same index again.
    """
    global _claim
    if _claim is not None:
        return _claim[0]
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir()
    folder.mkdir(parents=True, exist_ok=True)
    for index, name in enumerate(ids or physical_ids(n_devices)):
        handle = open(folder / f"gpu-{name}.lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _claim = (index, handle)
        log.info("claimed GPU %d (device %s, lock %s)", index, name, handle.name)
        return index
    return None


def release_gpu() -> None:
    """Give the claimed GPU back before the process ends (tests; long-lived processes)."""
    global _claim
    if _claim is not None:
        _claim[1].close()
        _claim = None
