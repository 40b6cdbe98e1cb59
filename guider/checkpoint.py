"""Atomic training checkpoints: everything needed to resume a run bit-for-bit."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from guider.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` to run_dir/checkpoint.pt through a temp file + rename."""
    with atomic_path(Path(run_dir) / CHECKPOINT_NAME) as tmp:
        torch.save(state, tmp)


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The saved state, or None when the run has no checkpoint yet."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)
