"""HTTP downloads that survive flaky networks and never leave a partial file looking complete.

`fetch_file` streams one large file into `<dest>.part` with a progress bar, resumes a
partial file with an HTTP Range request, retries transient errors (connection drops,
timeouts, 408/429/5xx) with exponential backoff, checks size and sha256, and only then
renames the part file onto `dest`. `fetch_images` downloads many small images with a
bounded thread pool, keeps only files that decode as images and reports the failures
(the caller logs them; the feature extractor imputes them).
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import requests
import urllib3
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from guider.atomic import atomic_path

log = logging.getLogger(__name__)
CHUNK = 1 << 16  # bytes per read: what an interrupted read loses, and the resume granularity
RETRYABLE_STATUS = {408, 425, 429, 500, 502, 503, 504}
USER_AGENT = os.environ.get("GUIDER_USER_AGENT", "Mozilla/5.0 (compatible; guider-data/0.1)")


class DownloadError(RuntimeError):
    """A download failed for good; the message names the URL and the reason."""


class ChecksumError(DownloadError):
    """The bytes received are not the file the registry or the lock describes."""


class OfflineError(DownloadError):
    """The host cannot be reached at all (no network, DNS failure, connection refused)."""


class TransientError(Exception):
    """A failure worth retrying (internal)."""


@dataclass(frozen=True)
class HttpSettings:
    connect_timeout: float = 10.0
    read_timeout: float = 60.0  # seconds without a byte before the transfer is retried
    retries: int = 4
    backoff: float = 1.0  # first wait; doubles on each retry

    @property
    def timeout(self) -> tuple[float, float]:
        return (self.connect_timeout, self.read_timeout)


@dataclass(frozen=True)
class Fetched:
    path: Path
    size: int
    sha256: str
    resumed_from: int = 0


@dataclass(frozen=True)
class ImageJob:
    key: str  # item identifier (ASIN, video id)
    url: str
    dest: Path


def new_session() -> requests.Session:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def probe(url: str, settings: HttpSettings = HttpSettings(), session: requests.Session | None = None) -> None:
    """Fail fast, without retries, when the host of `url` cannot be reached at all."""
    session = session or new_session()
    try:
        session.head(url, timeout=(min(settings.connect_timeout, 5.0), 10.0), allow_redirects=True).close()
    except (requests.ConnectionError, requests.Timeout) as err:
        raise OfflineError(f"cannot reach {url}: {_short_reason(err)}") from err


def remote_size(
    url: str, settings: HttpSettings = HttpSettings(), session: requests.Session | None = None
) -> int | None:
    """Content-Length from a HEAD request, or None when the server does not say."""
    session = session or new_session()
    try:
        response = session.head(url, timeout=settings.timeout, allow_redirects=True)
    except (requests.ConnectionError, requests.Timeout) as err:
        raise OfflineError(f"cannot reach {url}: {_short_reason(err)}") from err
    with response:
        if response.status_code >= 400:
            raise DownloadError(f"{url}: HTTP {response.status_code} {response.reason}")
        length = response.headers.get("Content-Length")
        return int(length) if length is not None else None


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, *, size: int | None, sha256: str | None, label: str) -> Fetched:
    """Size and sha256 of `path`, checked against the expected ones; ChecksumError on a mismatch."""
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise ChecksumError(f"{label}: {actual_size} bytes, expected {size}")
    actual_sha = file_sha256(path)
    if sha256 is not None and actual_sha != sha256.lower():
        raise ChecksumError(f"{label}: sha256 {actual_sha}, expected {sha256}")
    return Fetched(path, actual_size, actual_sha)


def fetch_file(
    url: str,
    dest: str | os.PathLike,
    *,
    size: int | None = None,
    sha256: str | None = None,
    settings: HttpSettings = HttpSettings(),
    session: requests.Session | None = None,
    progress: bool = True,
) -> Fetched:
    """Download `url` to `dest` (resuming `<dest>.part`), verify it, then rename it into place.

    On a checksum mismatch the part file is deleted and `dest` is left untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    session = session or new_session()
    resumed_from = part.stat().st_size if part.exists() else 0
    if size is not None and resumed_from > size:  # not a prefix of the expected file
        part.unlink()
        resumed_from = 0
    try:
        with tqdm(
            total=size,
            initial=resumed_from,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=dest.name,
            disable=not progress,
            leave=False,
        ) as bar:
            _transfer_with_retries(url, part, size, settings, session, bar)
        fetched = verify_file(part, size=size, sha256=sha256, label=f"{url} -> {dest}")
    except ChecksumError:
        part.unlink(missing_ok=True)
        raise
    os.replace(part, dest)
    return Fetched(dest, fetched.size, fetched.sha256, resumed_from)


def _transfer_with_retries(
    url: str, part: Path, size: int | None, settings: HttpSettings, session: requests.Session, bar: tqdm
) -> None:
    for attempt in range(settings.retries + 1):
        try:
            _transfer(url, part, size, settings, session, bar)
            return
        except TransientError as err:
            if attempt == settings.retries:
                raise DownloadError(
                    f"{url}: giving up after {attempt + 1} attempts ({err}); "
                    f"rerun to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from err
            wait = settings.backoff * 2**attempt
            log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, err, wait, attempt + 1, settings.retries)
            time.sleep(wait)


def _transfer(
    url: str, part: Path, size: int | None, settings: HttpSettings, session: requests.Session, bar: tqdm
) -> None:
    """One attempt: append the missing bytes to `part`; raise TransientError to be retried."""
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored: no on-the-fly compression
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=settings.timeout) as response:
            offset = _check_response(response, url, offset)
            if offset is None:
                return
            expected_total = _expected_total(response, offset)
            if size is not None and expected_total is not None and expected_total != size:
                raise ChecksumError(f"{url}: server announces {expected_total} bytes, expected {size}")
            bar.reset(total=expected_total or size)
            bar.update(offset)
            with open(part, "ab" if offset else "wb") as handle:
                for block in response.raw.stream(CHUNK, decode_content=False):  # the bytes as served
                    handle.write(block)
                    bar.update(len(block))
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
        raise TransientError(_short_reason(err)) from err
    received = part.stat().st_size
    if expected_total is not None and received < expected_total:
        raise TransientError(f"connection closed after {received} of {expected_total} bytes")


def _check_response(response: requests.Response, url: str, offset: int) -> int | None:
    """The offset to write at (0 when the server ignored the Range), or None when `part` is already whole."""
    status = response.status_code
    if status == 416 and offset:  # nothing left to send: the part file is complete (verified later)
        return None
    if status in RETRYABLE_STATUS:
        raise TransientError(f"HTTP {status} {response.reason}")
    if status >= 400:
        raise DownloadError(f"{url}: HTTP {status} {response.reason}")
    if offset and status != 206:
        log.info("%s: server ignored the Range request; restarting from byte 0", url)
        return 0
    return offset


def _expected_total(response: requests.Response, offset: int) -> int | None:
    content_range = response.headers.get("Content-Range", "")
    if response.status_code == 206 and "/" in content_range and not content_range.endswith("/*"):
        return int(content_range.rsplit("/", 1)[1])
    length = response.headers.get("Content-Length")
    return offset + int(length) if length is not None else None


def fetch_images(
    jobs: list[ImageJob],
    *,
    workers: int = 8,
    settings: HttpSettings = HttpSettings(),
    progress: bool = True,
) -> dict[str, str]:
    """Download `jobs` concurrently (at most `workers` at a time); return {key: reason} of the failures.

    Images already on disk are kept (they were validated when written). A download counts
    only if the bytes decode as an image; the file is written atomically.
    """
    todo = [job for job in jobs if not job.dest.exists()]
    failures: dict[str, str] = {}
    local = threading.local()

    def thread_session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = new_session()
        return local.session

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = {pool.submit(_fetch_one_image, job, settings, thread_session): job for job in todo}
        for future in tqdm(as_completed(futures), total=len(futures), desc="images", unit="img", disable=not progress):
            reason = future.result()
            if reason is not None:
                failures[futures[future].key] = reason
    return failures


def _fetch_one_image(job: ImageJob, settings: HttpSettings, get_session) -> str | None:
    """None on success, else the reason of the failure (never raises)."""
    for attempt in range(settings.retries + 1):
        try:
            data = _get_bytes(job.url, settings, get_session())
            _check_image(data)
            job.dest.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(job.dest) as tmp:
                tmp.write_bytes(data)
                tmp.chmod(0o644)  # readable like the other downloads (mkstemp creates 0600)
            return None
        except TransientError as err:
            if attempt == settings.retries:
                return f"{err} (after {attempt + 1} attempts)"
            time.sleep(settings.backoff * 2**attempt)
        except DownloadError as err:
            return str(err)
    return "unreachable"


def _get_bytes(url: str, settings: HttpSettings, session: requests.Session) -> bytes:
    try:
        with session.get(url, timeout=settings.timeout) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise TransientError(f"HTTP {response.status_code} {response.reason}")
            if response.status_code >= 400:
                raise DownloadError(f"HTTP {response.status_code} {response.reason}")
            return response.content
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise TransientError(_short_reason(err)) from err


def _check_image(data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise DownloadError(f"not a readable image ({len(data)} bytes: {err})") from err


def _short_reason(err: Exception) -> str:
    """The innermost cause of a requests/urllib3 error, without the long wrapper text."""
    text = str(err)
    for marker in (
        "Failed to resolve",
        "Connection refused",
        "Name or service not known",
        "timed out",
        "IncompleteRead",
        "Connection broken",
        "Network is unreachable",
    ):
        if marker in text:
            return marker if marker != "Failed to resolve" else "DNS lookup failed"
    return text[:200]
