"""`guider data download NAME [--mirror BASE_URL] [--dry-run]`: fetch a real dataset into resources/NAME/.

Every upstream file of the registry is streamed, resumed, retried and verified (size and
sha256 from the registry or the checksum lock); a file downloaded from its upstream host
for the first time is pinned into the lock (trust on first use). Then the images of the
items that survive the protocol's k-core are fetched concurrently; the ones that cannot
be fetched are listed in resources/NAME/images_failed.tsv and imputed later.

The server is not trusted. A file whose size is unknown is capped (registry, per role),
must arrive whole (announced length) or pass its dataset kind's format check before it
gets its final name, and is pinned only after that check. Image file names come from
item ids of the downloaded files: an id that is not one plain file name (see
registry.SAFE_ITEM_ID: no '/', not '..', no control characters, <= 128 characters) is
not downloaded; it is listed in images_failed.tsv with the reason "unsafe item id", a
warning says how many, and the command still succeeds for the other items (those items
are imputed like any other missing image). Every image path is also checked to resolve
inside the images folder.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
from functools import partial
from pathlib import Path
from types import ModuleType
from urllib.parse import urlsplit

import pandas as pd
import yaml

from guider.data.download.checksum_lock import ChecksumLock
from guider.data.download.http import (
    ChecksumError,
    HttpSettings,
    ImageJob,
    OfflineError,
    fetch_file,
    fetch_images,
    new_session,
    probe,
    remote_size,
    verify_file,
)
from guider.data.download.registry import (
    IMAGE_SUFFIXES,
    DatasetSpec,
    UpstreamFile,
    get_dataset,
    is_safe_item_id,
    with_mirror,
)
from guider.runs.atomic import atomic_path

log = logging.getLogger(__name__)
MIRROR_ENV = "GUIDER_DATA_MIRROR"
FAILED_IMAGES_FILE = "images_failed.tsv"
UNSAFE_ID = "unsafe item id"
UNSAFE_PATH = "unsafe image path"
BAD_URL = "unusable image URL"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="dataset in the registry: baby, sports, clothing, microlens")
    parser.add_argument(
        "--mirror",
        help=f"base URL replacing the upstream host (same paths); also config key data.mirror or ${MIRROR_ENV}",
    )
    parser.add_argument("--config", type=Path, help="YAML config whose data.mirror key gives the mirror")
    parser.add_argument("--dry-run", action="store_true", help="list the files, sizes and URLs; download nothing")
    parser.add_argument("--resources", type=Path, default=Path("resources"), help="downloads go to RESOURCES/NAME/")
    parser.add_argument(
        "--lock", type=Path, help="checksum lock file (default: the project's guider/data/checksums.lock.json)"
    )
    parser.add_argument("--pin", action="store_true", help="also pin checksums of files fetched from a --mirror")
    parser.add_argument("--registry", type=Path, help="dataset registry YAML (default: guider/data/datasets.yaml)")
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=["image_features", "images"],
        help="do not fetch the Amazon CNN features file / the item images (repeatable)",
    )
    parser.add_argument("--workers", type=int, default=8, help="concurrent image downloads")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without data before a retry")
    parser.add_argument("--retries", type=int, default=4, help="retries per file on transient errors")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    spec = get_dataset(args.name, args.registry)
    mirror = resolve_mirror(args.mirror, args.config)
    folder = args.resources / spec.name
    files = [f for f in spec.files if f.role not in args.skip]
    lock = ChecksumLock(args.lock)
    settings = HttpSettings(read_timeout=args.timeout, retries=args.retries)
    if args.dry_run:
        print_plan(spec, files, folder, lock, mirror, settings, with_images="images" not in args.skip)
        return 0
    fetch_files(spec, files, folder, lock, mirror, settings, pin_mirror=args.pin, progress=not args.no_progress)
    if "images" not in args.skip:
        fetch_item_images(spec, folder, mirror, settings, workers=args.workers, progress=not args.no_progress)
    return 0


def resolve_mirror(cli_value: str | None, config: Path | None) -> str | None:
    """The mirror from --mirror, else the config's data.mirror, else $GUIDER_DATA_MIRROR."""
    if cli_value:
        return cli_value
    if config is not None:
        try:
            value = ((yaml.safe_load(config.read_text()) or {}).get("data") or {}).get("mirror")
        except (OSError, yaml.YAMLError, AttributeError) as err:
            raise ValueError(f"{config}: cannot read data.mirror ({err})") from err
        if value:
            return str(value)
    return os.environ.get(MIRROR_ENV) or None


def kind_module(spec: DatasetSpec) -> ModuleType:
    """The parser module of a dataset kind (guider.data.sources.amazon / guider.data.sources.microlens)."""
    return importlib.import_module(f"guider.data.sources.{spec.kind}")


# --- upstream files --------------------------------------------------------------------------


def expected_checksums(spec: DatasetSpec, upstream: UpstreamFile, lock: ChecksumLock) -> tuple[int | None, str | None]:
    """(size, sha256) a file must have: the registry's, else the lock's pin, else unknown."""
    pin = lock.pinned(spec.name, upstream.name)
    if pin and upstream.sha256 and pin.sha256 != upstream.sha256:
        raise ChecksumError(
            f"{lock.path}: {spec.name}/{upstream.name} is pinned to {pin.sha256} "
            f"but the registry says {upstream.sha256}; fix the lock"
        )
    size = upstream.size if upstream.size is not None else (pin.size if pin else None)
    return size, upstream.sha256 or (pin.sha256 if pin else None)


def fetch_files(
    spec: DatasetSpec,
    files: list[UpstreamFile],
    folder: Path,
    lock: ChecksumLock,
    mirror: str | None,
    settings: HttpSettings,
    *,
    pin_mirror: bool,
    progress: bool,
) -> None:
    session = new_session()
    missing = [f for f in files if not (folder / f.name).exists()]
    if missing:
        check_reachable(with_mirror(missing[0].url, mirror), spec, folder, settings, session)
    for upstream in files:
        size, sha256 = expected_checksums(spec, upstream, lock)
        dest = folder / upstream.name
        if dest.exists():
            fetched = _verify_present(dest, size, sha256)
            log.info("%s: present, %d bytes, sha256 %s", dest, fetched.size, fetched.sha256)
        else:
            url = with_mirror(upstream.url, mirror)
            log.info("downloading %s -> %s", url, dest)
            fetched = fetch_file(
                url,
                dest,
                size=size,
                sha256=sha256,
                settings=settings,
                session=session,
                progress=progress,
                max_size=upstream.size_cap,
                check=partial(kind_module(spec).check_file, upstream.role),
            )
            log.info(
                "%s: %d bytes, sha256 %s%s",
                dest,
                fetched.size,
                fetched.sha256,
                f" (resumed from byte {fetched.resumed_from})" if fetched.resumed_from else "",
            )
            if sha256 is None and (mirror is None or pin_mirror):
                lock.pin(spec.name, upstream.name, upstream.url, fetched.size, fetched.sha256)
                log.info("pinned %s/%s in %s (trust on first use)", spec.name, upstream.name, lock.path)


def _verify_present(dest: Path, size: int | None, sha256: str | None):
    try:
        return verify_file(dest, size=size, sha256=sha256, label=str(dest))
    except ChecksumError as err:
        raise ChecksumError(f"{err}; this file is not the upstream one: delete it to download it again") from err


def check_reachable(url: str, spec: DatasetSpec, folder: Path, settings: HttpSettings, session) -> None:
    """Fail within seconds, with the ways forward, when the data host cannot be reached."""
    try:
        probe(url, settings, session)
    except OfflineError as err:
        names = ", ".join(f.name for f in spec.files)
        raise OfflineError(
            f"{err}. Without network access, either (1) run the embedded demo, which needs no download "
            f"(snakemake --configfile config/demo.yaml, or guider data synthetic); (2) point --mirror (config key "
            f"data.mirror) at a mirror or local server that serves the same paths; or (3) place the files by hand "
            f"in {folder}/ ({names}; docs/data.md) and rerun this command to verify them"
        ) from err


# --- item images -----------------------------------------------------------------------------


def image_jobs(spec: DatasetSpec, folder: Path, mirror: str | None) -> tuple[list[ImageJob], list[str], dict[str, str]]:
    """(image downloads for the k-core items, items that have no image URL, {item: reason} of refused items).

    An item is refused when its id is not a safe file name, when its image path would
    resolve outside the images folder, or when its image URL is not an http(s) URL.
    """
    module = kind_module(spec)
    items = [str(item) for item in module.core_items(spec, folder)]
    refused = {item: UNSAFE_ID for item in items if not is_safe_item_id(item)}
    if refused:
        shown = ", ".join(repr(item[:40]) for item in list(refused)[:3])
        log.warning(
            "%s: %d item id(s) are not plain file names (e.g. %s); their images are not downloaded "
            "(listed as %r in %s)",
            spec.name,
            len(refused),
            shown,
            UNSAFE_ID,
            folder / FAILED_IMAGES_FILE,
        )
    safe = [item for item in items if item not in refused]
    urls = module.image_urls(spec, folder, safe)
    target = folder / spec.images.folder
    root = target.resolve()
    jobs = []
    for item in safe:
        if item not in urls:
            continue
        url = _image_url(urls[item], mirror)
        if url is None:
            refused[item] = BAD_URL
            continue
        dest = target / f"{item}{_suffix(url)}"
        if dest.resolve().parent != root:  # defence in depth: e.g. a symlink planted in the folder
            refused[item] = UNSAFE_PATH
            continue
        jobs.append(ImageJob(item, url, dest, spec.images.max_size))
    return jobs, [item for item in safe if item not in urls], refused


def _image_url(url: str, mirror: str | None) -> str | None:
    """`url` through the mirror, or None when it is not an http(s) URL with a host."""
    try:
        url = with_mirror(url.strip(), mirror)
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url


def fetch_item_images(
    spec: DatasetSpec, folder: Path, mirror: str | None, settings: HttpSettings, *, workers: int, progress: bool
) -> dict[str, str]:
    """Fetch the item images; write and return {item: reason} of those that could not be fetched."""
    jobs, without_url, refused = image_jobs(spec, folder, mirror)
    failures = {item: "no image URL" for item in without_url}
    failures.update(refused)
    pending = [job for job in jobs if not job.dest.exists()]
    if pending:
        try:
            probe(pending[0].url, settings)
            failures.update(fetch_images(pending, workers=workers, settings=settings, progress=progress))
        except OfflineError as err:
            log.warning("%s; the %d missing images will be imputed (rerun to fetch them)", err, len(pending))
            failures.update({job.key: "host unreachable" for job in pending})
    write_failures(folder / FAILED_IMAGES_FILE, failures, {job.key: job.url for job in jobs})
    total = len(jobs) + len(without_url) + len(refused)
    log.info(
        "%s: %d of %d item images present, %d failed (listed in %s)",
        spec.name,
        total - len(failures),
        total,
        len(failures),
        folder / FAILED_IMAGES_FILE,
    )
    return failures


def write_failures(path: Path, failures: dict[str, str], urls: dict[str, str]) -> None:
    table = pd.DataFrame(
        {"item": list(failures), "url": [urls.get(k, "") for k in failures], "reason": list(failures.values())}
    )
    with atomic_path(path) as tmp:
        table.to_csv(tmp, sep="\t", index=False)


def _suffix(url: str) -> str:
    suffix = Path(urlsplit(url).path).suffix.lower()
    return suffix if suffix in IMAGE_SUFFIXES else ".jpg"


# --- dry run ---------------------------------------------------------------------------------


def print_plan(
    spec: DatasetSpec,
    files: list[UpstreamFile],
    folder: Path,
    lock: ChecksumLock,
    mirror: str | None,
    settings: HttpSettings,
    *,
    with_images: bool,
) -> None:
    print(f"{spec.name}: {spec.description}")
    print(f"  destination: {folder}/   checksum lock: {lock.path}" + (f"   mirror: {mirror}" if mirror else ""))
    sizes = _sizes(spec, files, lock, mirror, settings)
    for upstream in files:
        pin = lock.pinned(spec.name, upstream.name)
        sha = upstream.sha256 or (pin.sha256 if pin else None)
        state = "present" if (folder / upstream.name).exists() else "missing"
        print(
            f"  {upstream.name:<42} {sizes[upstream.name]:>28}  {state:<7}  "
            f"sha256 {sha or 'not pinned yet (trust on first use)'}"
        )
        print(f"      {with_mirror(upstream.url, mirror)}")
    if with_images:
        print(f"  + item images into {folder / spec.images.folder}/: {_image_plan(spec, folder)}")


def _sizes(
    spec: DatasetSpec, files: list[UpstreamFile], lock: ChecksumLock, mirror: str | None, settings: HttpSettings
) -> dict[str, str]:
    """Human-readable size of each file: registry, lock, else a HEAD request (when online)."""
    known = {
        f.name: f.size if f.size is not None else getattr(lock.pinned(spec.name, f.name), "size", None) for f in files
    }
    online = True
    for upstream in files:
        if known[upstream.name] is None and online:
            try:
                known[upstream.name] = remote_size(
                    with_mirror(upstream.url, mirror), HttpSettings(connect_timeout=5.0, read_timeout=10.0, retries=0)
                )
            except OfflineError:
                online = False
            except Exception as err:  # noqa: BLE001 - a dry run reports, it does not fail
                log.debug("size of %s: %s", upstream.url, err)
    return {
        name: _human(size) if size is not None else ("unknown (offline)" if not online else "unknown")
        for name, size in known.items()
    }


def _image_plan(spec: DatasetSpec, folder: Path) -> str:
    source = f"{spec.images.field} of each meta line" if spec.images.origin == "meta" else spec.images.url_template
    try:
        jobs, without_url, refused = image_jobs(spec, folder, None)
    except (FileNotFoundError, KeyError, ValueError):
        return f"from {source}, for the items of the {spec.k_core}-core (counted once the files are present)"
    present = sum(job.dest.exists() for job in jobs)
    return (
        f"{len(jobs)} from {source} for the {len(jobs) + len(without_url) + len(refused)} items of the "
        f"{spec.k_core}-core ({present} present, {len(without_url)} without a URL"
        + (f", {len(refused)} refused: unsafe id or URL" if refused else "")
        + ")"
    )


def _human(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size:,} B" if unit == "B" else f"{size:,} B ({value:.1f} {unit})"
        value /= 1024
    return f"{size:,} B"
