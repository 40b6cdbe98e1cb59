"""Feature cache keyed by what the features depend on: the items' content and the encoder.

A rerun of `guider features text|image` with the same encoder on unchanged content reads
the cached array instead of running the network. The key is a fingerprint of the input
(every item's text, or every item's image bytes, in item order) plus the encoder name
and its options; entries live under DIR/.cache/features/ unless --cache-dir says
otherwise.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Iterable

import numpy as np

from guider.runs.atomic import atomic_path

CACHE_SUBDIR = Path(".cache") / "features"


def text_fingerprint(texts: Iterable[str]) -> str:
    digest = hashlib.sha256(b"text\0")
    for text in texts:
        digest.update(text.encode("utf-8", "surrogatepass") + b"\0")
    return digest.hexdigest()[:20]


def image_fingerprint(paths: Iterable[Path | None]) -> str:
    """Hash of every image's bytes (a missing image counts as such), in item order."""
    digest = hashlib.sha256(b"image\0")
    for path in paths:
        if path is None or not path.is_file():
            digest.update(b"-\0")
            continue
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def file_fingerprint(path: Path, *extra: str) -> str:
    """Cheap key of a large input file (resolved path, size, mtime) plus `extra` strings."""
    stat = path.stat()
    key = "\0".join([str(path.resolve()), str(stat.st_size), str(stat.st_mtime_ns), *extra])
    return hashlib.sha256(key.encode()).hexdigest()[:20]


class FeatureCache:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, modality: str, encoder: str, fingerprint: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", encoder)
        return self.root / f"{modality}-{safe}-{fingerprint}.npz"

    def load(self, modality: str, encoder: str, fingerprint: str) -> tuple[np.ndarray, list[int]] | None:
        """(features, imputed item indices) when cached, else None."""
        path = self.path(modality, encoder, fingerprint)
        if not path.exists():
            return None
        with np.load(path, allow_pickle=False) as data:
            return data["features"], data["imputed"].tolist()

    def store(self, modality: str, encoder: str, fingerprint: str, features: np.ndarray, imputed: list[int]) -> Path:
        path = self.path(modality, encoder, fingerprint)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, features=features, imputed=np.asarray(imputed, dtype=np.int64))
        return path
