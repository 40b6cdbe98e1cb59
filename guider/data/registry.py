"""Registry of the real datasets: upstream files, their URLs and what we know of them.

The data lives in `datasets.yaml` next to this module. A spec names every upstream file
(role, URL, and size/sha256 when known), the protocol's k-core, the statistics the
processed dataset must reproduce, and where item images come from. `with_mirror`
rewrites a URL to an institutional mirror, a local cache or a test server that serves
the same paths.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import yaml

DEFAULT_REGISTRY = Path(__file__).with_name("datasets.yaml")
REGISTRY_ENV = "GUIDER_DATA_REGISTRY"
KINDS = ("amazon", "microlens")


@dataclass(frozen=True)
class UpstreamFile:
    name: str  # file name under resources/<dataset>/
    role: str  # ratings / meta / image_features / pairs / titles
    url: str
    size: int | None = None  # bytes, when known
    sha256: str | None = None  # when known; otherwise pinned on first download (checksum_lock.py)


@dataclass(frozen=True)
class ImageSource:
    """Where item images come from: a meta field (Amazon imUrl) or a URL template (MicroLens)."""

    origin: str  # "meta" or "pairs"
    folder: str  # sub-folder of resources/<dataset>/ the images are saved into
    field: str | None = None
    url_template: str | None = None  # with an "{item}" placeholder


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    kind: str
    description: str
    homepage: str
    k_core: int
    expected: dict[str, Any]
    files: tuple[UpstreamFile, ...]
    images: ImageSource
    category: str | None = None

    def file(self, role: str) -> UpstreamFile:
        for upstream in self.files:
            if upstream.role == role:
                return upstream
        raise KeyError(f"dataset {self.name!r} has no upstream file with role {role!r}")

    def has_role(self, role: str) -> bool:
        return any(f.role == role for f in self.files)


def registry_path(path: str | os.PathLike | None = None) -> Path:
    """The registry file: `path`, else $GUIDER_DATA_REGISTRY, else the packaged datasets.yaml."""
    return Path(path or os.environ.get(REGISTRY_ENV) or DEFAULT_REGISTRY)


def load_registry(path: str | os.PathLike | None = None) -> dict[str, DatasetSpec]:
    source = registry_path(path)
    try:
        raw = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"{source}: cannot read the dataset registry ({err})") from err
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{source}: the registry must map dataset names to specs")
    return {name: _parse_spec(name, entry, source) for name, entry in raw.items()}


def get_dataset(name: str, registry: str | os.PathLike | None = None) -> DatasetSpec:
    specs = load_registry(registry)
    if name not in specs:
        raise ValueError(f"unknown dataset {name!r}; the registry ({registry_path(registry)}) has {', '.join(specs)}")
    return specs[name]


def with_mirror(url: str, mirror: str | None) -> str:
    """`url` with scheme and host replaced by `mirror` (whose own path, if any, is prefixed)."""
    if not mirror:
        return url
    base = urlsplit(mirror.rstrip("/"))
    if not base.scheme or not base.netloc:
        raise ValueError(f"mirror {mirror!r} must be a base URL such as https://mirror.example.org/amazon")
    original = urlsplit(url)
    return urlunsplit((base.scheme, base.netloc, base.path + original.path, original.query, ""))


def _parse_spec(name: str, entry: Any, source: Path) -> DatasetSpec:
    where = f"{source}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping")
    missing = [key for key in ("kind", "files", "images", "expected") if key not in entry]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}")
    if entry["kind"] not in KINDS:
        raise ValueError(f"{where}: kind {entry['kind']!r} not in {KINDS}")
    files = tuple(_parse_file(item, where) for item in entry["files"])
    return DatasetSpec(
        name=name,
        kind=entry["kind"],
        description=entry.get("description", ""),
        homepage=entry.get("homepage", ""),
        k_core=int(entry.get("k_core", 5)),
        expected=dict(entry["expected"]),
        files=files,
        images=_parse_images(entry["images"], where),
        category=entry.get("category"),
    )


def _parse_file(item: Any, where: str) -> UpstreamFile:
    if not isinstance(item, dict) or not {"name", "role", "url"} <= set(item):
        raise ValueError(f"{where}: every file needs name, role and url (got {item!r})")
    size = item.get("size")
    return UpstreamFile(
        item["name"], item["role"], item["url"], int(size) if size is not None else None, item.get("sha256")
    )


def _parse_images(item: Any, where: str) -> ImageSource:
    if not isinstance(item, dict) or "from" not in item or "folder" not in item:
        raise ValueError(f"{where}: images needs 'from' and 'folder'")
    source = ImageSource(item["from"], item["folder"], item.get("field"), item.get("url_template"))
    if source.origin == "meta" and not source.field:
        raise ValueError(f"{where}: images from meta need the meta 'field' holding the URL")
    if source.origin == "pairs" and "{item}" not in (source.url_template or ""):
        raise ValueError(f"{where}: images from pairs need a url_template with an {{item}} placeholder")
    return source
