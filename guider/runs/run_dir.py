"""A run folder describes exactly one run: it is resumed, refused or cleared, never mixed.

Before a run starts, `prepare_run_dir` decides what happens to `--out`:
- without `--resume`, a folder already holding any run file is refused;
- with `--resume` (`auto`), a checkpoint written with the same resolved config, data
  fingerprint included, is continued; otherwise (another config, other data, no
  checkpoint) the old run's files are removed and the run starts afresh, with a log line
  saying why;
- with `--resume=strict` the run is continued only from a matching checkpoint; anything
  else that would discard files is an error.
The checkpoint is read (safely, guider.runs.checkpoint) before anything is changed, so a bad
or hostile checkpoint leaves the folder exactly as it was. Files that no run writes are
never touched.

One writer per folder: `hold_run_dir` takes an advisory lock (flock on the run folder
itself, so no lock file joins the outputs) for the run's whole life, before any file is
changed; a second `guider train` on the same folder stops at once with one line naming the
holder's PID (read from /proc/locks). The lock goes with the process: a killed run holds
nothing.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from typing import Any, Iterator

from guider.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint

log = logging.getLogger(__name__)

TRAINER_FILES = ("config.json", "log.csv", CHECKPOINT_NAME, "per_user_test.csv", "per_user_valid.csv", "metrics.json")
RESUME_MODES = ("auto", "strict")


class RunDirError(ValueError):
    """`--out` cannot hold this run as asked; the message names the folder and the way forward."""


def run_file_names() -> set[str]:
    """Names of every file a run may write: the trainer's and every registered method's."""
    from guider.methods import run_artifacts

    return set(TRAINER_FILES) | run_artifacts()


def existing_run_files(out_dir: Path) -> list[Path]:
    """Run files (and leftover temp files of atomic writes) present in `out_dir`, sorted."""
    if not out_dir.is_dir():
        return []
    names = run_file_names()
    found = []
    for path in out_dir.iterdir():
        temp_of = path.name[1:].rsplit(".", 2)[0] if path.name.startswith(".") and path.name.endswith(".tmp") else None
        if path.is_file() and (path.name in names or temp_of in names):
            found.append(path)
    return sorted(found)


def config_difference(saved: dict[str, Any], current: dict[str, Any]) -> str | None:
    """Why a checkpoint written with `saved` cannot continue as `current`, or None."""
    if saved == current:
        return None
    if saved.get("data_fingerprint") != current.get("data_fingerprint"):
        return (
            f"the checkpoint was trained on other data (dataset {saved.get('dataset')!r}, fingerprint "
            f"{saved.get('data_fingerprint')}; now {current.get('dataset')!r}, {current.get('data_fingerprint')})"
        )
    before, after = _flat(saved), _flat(current)
    changed = sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
    shown = ", ".join(f"{key}: {before.get(key, 'unset')!r} -> {after.get(key, 'unset')!r}" for key in changed[:4])
    more = f" and {len(changed) - 4} more" if len(changed) > 4 else ""
    return f"the checkpoint was written with a different config ({shown}{more})"


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def prepare_run_dir(out_dir: str | Path, config: dict[str, Any], resume: str | None) -> dict[str, Any] | None:
    """Make `out_dir` ready for the run with resolved `config`; return the checkpoint to
    continue from, or None for a fresh start. `resume`: None, 'auto' or 'strict'."""
    out_dir = Path(out_dir)
    if resume not in (None, *RESUME_MODES):
        raise RunDirError(f"--resume must be one of {', '.join(RESUME_MODES)}, got {resume!r}")
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} is a file, not a folder; choose a folder for the run")
    present = existing_run_files(out_dir)
    if resume is None:
        if present:
            raise RunDirError(
                f"{out_dir} already holds a run ({', '.join(p.name for p in present)}); pass --resume to "
                "continue it (a different config starts afresh), or choose another --out"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        return None
    saved = load_checkpoint(out_dir)  # refuses a bad checkpoint before anything is changed
    reason = "no checkpoint to resume" if saved is None else config_difference(saved["config"], config)
    if saved is not None and reason is None:
        log.info("%s: resuming from its checkpoint", out_dir)
        return saved
    if present:
        if resume == "strict":
            raise RunDirError(f"{out_dir}: {reason}; --resume=strict does not start afresh (use --resume)")
        log.warning("%s: %s; starting the run afresh and removing the old run's files", out_dir, reason)
        for path in present:
            path.unlink()
    out_dir.mkdir(parents=True, exist_ok=True)
    return None


@contextlib.contextmanager
def hold_run_dir(out_dir: str | Path) -> Iterator[Path]:
    """Hold the run folder's writer lock for the block (creating the folder); RunDirError
    naming the holder's PID when another process holds it."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise RunDirError(f"--out {out_dir} is a file, not a folder; choose a folder for the run")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(out_dir, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunDirError(
                f"{out_dir} is in use by another guider train (PID {lock_holder(out_dir)}); wait for it to end "
                "or stop it"
            ) from None
        yield out_dir
    finally:
        os.close(fd)  # closing releases the lock


def lock_holder(folder: Path) -> str:
    """The PID holding a flock on `folder`, from /proc/locks (Linux); 'unknown' elsewhere."""
    inode = os.stat(folder).st_ino
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return "unknown"
    for line in lines:
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == str(inode):
            return fields[4]
    return "unknown"
