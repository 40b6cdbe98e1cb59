"""Trust-on-first-use checksums of upstream files (`checksums.lock.json`).

The upstream hosts publish no checksums, so the first verified download of a file from
its upstream host pins its size and sha256 here; every later download, from the upstream
or from a mirror, must reproduce them. The project keeps the lock under version control
(docs/data.md). Layout: {dataset: {file name: {url, size, sha256, pinned_at}}}.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from guider.runs.atomic import write_json

DEFAULT_LOCK = Path(__file__).with_name("checksums.lock.json")
LOCK_ENV = "GUIDER_CHECKSUM_LOCK"


@dataclass(frozen=True)
class Pin:
    url: str
    size: int
    sha256: str
    pinned_at: str = ""


class ChecksumLock:
    """Read and extend one lock file; writes are atomic and serialised across processes."""

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path or os.environ.get(LOCK_ENV) or DEFAULT_LOCK)

    def pinned(self, dataset: str, file_name: str) -> Pin | None:
        entry = self._read().get(dataset, {}).get(file_name)
        return Pin(**entry) if entry else None

    def pin(self, dataset: str, file_name: str, url: str, size: int, sha256: str) -> Pin:
        """Record a pin; an existing, different pin is an error (it should have failed verification)."""
        new = Pin(url, int(size), sha256, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        with self._exclusive():
            data = self._read()
            old = data.get(dataset, {}).get(file_name)
            if old and (old["sha256"], old["size"]) != (sha256, int(size)):
                raise ValueError(
                    f"{self.path}: {dataset}/{file_name} is pinned to sha256 {old['sha256']}, not {sha256}"
                )
            if old:
                return Pin(**old)
            data.setdefault(dataset, {})[file_name] = new.__dict__
            try:
                write_json(self.path, data)
            except OSError as err:
                raise RuntimeError(
                    f"{self.path}: cannot write the checksum lock ({err}); pass --lock PATH "
                    f"or set ${LOCK_ENV} to a writable file"
                ) from err
        return new

    def _read(self) -> dict:
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text() or "{}")
        except json.JSONDecodeError as err:
            raise ValueError(f"{self.path}: checksum lock is not valid JSON ({err})") from err
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: checksum lock must be a JSON object")
        return data

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """A sidecar flock so concurrent downloads (e.g. parallel Snakemake jobs) do not lose pins."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
        sidecar = Path(tempfile.gettempdir()) / f"guider-lock-{os.getuid()}-{digest}.flock"
        try:  # in a shared /tmp: never follow a planted symlink, never truncate what is there
            fd = os.open(sidecar, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as err:
            raise RuntimeError(f"{sidecar}: cannot open the lock of {self.path} ({err.strerror})") from err
        with os.fdopen(fd, "r+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
