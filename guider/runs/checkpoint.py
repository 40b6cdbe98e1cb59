"""Atomic training checkpoints: everything needed to resume a run bit-for-bit, and nothing
that can run code when it is read.

A checkpoint holds only tensors, numbers, strings, lists and dicts (the resolved config,
state dicts, the run's progress), so it is read with `torch.load(weights_only=True)`: a
file whose pickle asks for anything else (a crafted `__reduce__` payload, an arbitrary
class) is refused with an error naming the file, and its payload never runs.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from guider.runs.atomic import atomic_path

CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(ValueError):
    """A checkpoint file cannot be read safely; the message names the file."""


def save_checkpoint(run_dir: Path, state: dict[str, Any]) -> None:
    """Write `state` to run_dir/checkpoint.pt through a temp file + rename."""
    path = Path(run_dir) / CHECKPOINT_NAME
    with atomic_path(path) as tmp:
        try:
            torch.save(state, tmp)
        except RuntimeError as err:  # torch reports a failed write (e.g. a full disk) as RuntimeError
            raise OSError(f"cannot write {path}: {_first_line(err)} (is the disk full?)") from err


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The state saved in `path`, loaded with weights_only=True; CheckpointError otherwise."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise CheckpointError(
            f"{path}: refused to load: not a checkpoint of plain tensors, numbers, strings, lists and dicts "
            f"({_unpickler_reason(err)}); nothing in it was run. Delete it to start the run afresh."
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({_first_line(err)}); delete it to start the run afresh"
        ) from None
    if not isinstance(state, dict) or not {"config", "model", "run"} <= set(state):
        raise CheckpointError(
            f"{path}: not a guider checkpoint (no config/model/run entries); delete it to start afresh"
        )
    return state


def load_checkpoint(run_dir: Path) -> dict[str, Any] | None:
    """The saved state of a run folder, or None when the run has no checkpoint yet."""
    path = Path(run_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    return read_checkpoint(path)


def _unpickler_reason(err: BaseException) -> str:
    """The line of torch's weights-only refusal that says what was refused (not its advice)."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(boilerplate)]
    return reasons[0] if reasons else "unreadable pickle"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
