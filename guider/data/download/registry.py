"""Registry of the real datasets: upstream files, their URLs and what we know of them.

The data lives in `datasets.yaml` next to this module. A spec names every upstream file
(role, URL, and size/sha256 when known), the protocol's k-core, the statistics the
processed dataset must reproduce, and where item images come from. `with_mirror`
rewrites a URL to an institutional mirror, a local cache or a test server that serves
the same paths.

It also says what a downloaded file may be, because the server is not trusted: a size
cap per role (`ROLE_MAX_BYTES`, for files whose size is not known yet; `max_size` in the
YAML overrides it) and per image (`IMAGE_MAX_BYTES`), the rule an item id must follow to
become an image file name (`is_safe_item_id`), and `capped_lines`, the line reader the
dataset kinds use so that one endless line cannot exhaust memory. The format check of
each role (is this file complete?) lives with its dataset kind (`check_file` in
guider/data/sources/amazon.py and guider/data/sources/microlens.py).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, AnyStr, Iterator
from urllib.parse import urlsplit, urlunsplit

import yaml

from guider.data.format.dataset import DatasetError

DEFAULT_REGISTRY = Path(__file__).with_name("datasets.yaml")
REGISTRY_ENV = "GUIDER_DATA_REGISTRY"
KINDS = ("amazon", "microlens")

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
# The most bytes a download of a role may have while its size is not known (neither in the
# registry nor in the checksum lock): generous, well above the largest real file of the role.
# Clothing's image features are ~1.5M records of 16,394 bytes (~23 GiB), hence 32 GiB.
ROLE_MAX_BYTES = {
    "ratings": 2 * GiB,
    "meta": 4 * GiB,
    "image_features": 32 * GiB,
    "pairs": 1 * GiB,
    "titles": 1 * GiB,
}
DEFAULT_MAX_BYTES = 4 * GiB  # a role not listed above
IMAGE_MAX_BYTES = 20 * MiB  # one item image (they are ~10-500 KB)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp"}
# An item id becomes a file name (images/<id>.jpg) only if it is one plain file name: no
# path separator, not "." or "..", no hidden file, no control character, at most 128 chars.
SAFE_ITEM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
SAFE_FILE_NAME = SAFE_ITEM_ID  # the same rule for the registry's file and folder names


@dataclass(frozen=True)
class UpstreamFile:
    name: str  # file name under resources/<dataset>/
    role: str  # ratings / meta / image_features / pairs / titles
    url: str
    size: int | None = None  # bytes, when known
    sha256: str | None = None  # when known; otherwise pinned on first download (checksum_lock.py)
    max_size: int | None = None  # size cap while the size is unknown; None: the role's (ROLE_MAX_BYTES)

    @property
    def size_cap(self) -> int:
        """The most bytes a download of this file may have when its size is not known."""
        return self.max_size if self.max_size is not None else ROLE_MAX_BYTES.get(self.role, DEFAULT_MAX_BYTES)


@dataclass(frozen=True)
class ImageSource:
    """Where item images come from: a meta field (Amazon imUrl) or a URL template (MicroLens)."""

    origin: str  # "meta" or "pairs"
    folder: str  # sub-folder of resources/<dataset>/ the images are saved into
    field: str | None = None
    url_template: str | None = None  # with an "{item}" placeholder
    max_size: int = IMAGE_MAX_BYTES  # bytes per image


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


def is_safe_item_id(item: str) -> bool:
    """True when `item` can be used as one file name (see SAFE_ITEM_ID)."""
    return isinstance(item, str) and SAFE_ITEM_ID.fullmatch(item) is not None


def capped_lines(handle: IO[AnyStr], cap: int, path: str | os.PathLike) -> Iterator[tuple[int, AnyStr]]:
    """(line number, line) of an open file, never holding more than `cap` + 1 bytes/characters of a line.

    A line (with its newline) longer than `cap` is a DatasetError naming the file and the line.
    """
    line_no = 0
    while True:
        line = handle.readline(cap + 1)
        if not line:
            return
        line_no += 1
        if len(line) > cap:
            raise DatasetError(f"{path}: line {line_no} longer than {_human_cap(cap)}")
        yield line_no, line


def check_csv_lines(path: str | os.PathLike, *, fields: int, cap: int, what: str) -> None:
    """Every line of a plain CSV without quoting ends with a newline and has `fields` fields (blank lines aside)."""
    with open(path, "rb") as handle:
        for line_no, line in capped_lines(handle, cap, path):
            if not line.endswith(b"\n"):  # only the last line can lack it
                raise DatasetError(
                    f"{path}: the last line (line {line_no}) does not end with a newline: the file is cut"
                )
            body = line.rstrip(b"\r\n")
            if body and body.count(b",") + 1 != fields:
                raise DatasetError(f"{path}: line {line_no}: {body.count(b',') + 1} fields, expected {fields} ({what})")


def _human_cap(size: int) -> str:
    for unit, factor in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size:,} bytes"


def _parse_spec(name: str, entry: Any, source: Path) -> DatasetSpec:
    where = f"{source}: dataset {name!r}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping")
    if not isinstance(name, str) or not SAFE_FILE_NAME.fullmatch(name):
        raise ValueError(f"{where}: a dataset name must be a plain folder name (letters, digits, '._-')")
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
    if not isinstance(item["name"], str) or not SAFE_FILE_NAME.fullmatch(item["name"]):
        raise ValueError(f"{where}: file name {item['name']!r} must be a plain file name (letters, digits, '._-')")
    size, max_size = item.get("size"), item.get("max_size")
    return UpstreamFile(
        item["name"],
        item["role"],
        item["url"],
        int(size) if size is not None else None,
        item.get("sha256"),
        _positive(max_size, f"{where}: file {item['name']!r}") if max_size is not None else None,
    )


def _positive(value: Any, where: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number <= 0:
        raise ValueError(f"{where}: max_size must be a positive number of bytes, got {value!r}")
    return number


def _parse_images(item: Any, where: str) -> ImageSource:
    if not isinstance(item, dict) or "from" not in item or "folder" not in item:
        raise ValueError(f"{where}: images needs 'from' and 'folder'")
    if not isinstance(item["folder"], str) or not SAFE_FILE_NAME.fullmatch(item["folder"]):
        raise ValueError(f"{where}: images folder {item['folder']!r} must be a plain folder name")
    max_size = item.get("max_size")
    source = ImageSource(
        item["from"],
        item["folder"],
        item.get("field"),
        item.get("url_template"),
        _positive(max_size, f"{where}: images") if max_size is not None else IMAGE_MAX_BYTES,
    )
    if source.origin == "meta" and not source.field:
        raise ValueError(f"{where}: images from meta need the meta 'field' holding the URL")
    if source.origin == "pairs" and "{item}" not in (source.url_template or ""):
        raise ValueError(f"{where}: images from pairs need a url_template with an {{item}} placeholder")
    return source
