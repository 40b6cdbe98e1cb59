"""HTTP downloads that survive flaky networks and never leave a partial file looking complete.

`fetch_file` streams one large file into `<dest>.part` with a progress bar, resumes a
partial file with an HTTP Range request, retries transient errors (connection drops,
timeouts, 408/429/5xx) with exponential backoff, checks size and sha256, and only then
renames the part file onto `dest`. `fetch_images` downloads many small images with a
bounded thread pool, keeps only files that decode as images and reports the failures
(the caller logs them; the feature extractor imputes them).

The server is not trusted. A file whose size is not known from the registry or the lock
may not grow past `max_size` (TooLargeError; what was received is deleted). A transfer
counts as complete only when it reached the announced length (Content-Length or the
Content-Range total) or, when the server announced none, when it ended cleanly and the
caller's format `check` accepts the file; `check` also runs on every file that has no
known sha256, i.e. before it can be pinned. A file the check refuses keeps its `.part`
name when it may merely be cut short (IncompleteDownloadError; a rerun resumes), and is
deleted when it arrived whole but is not a valid file. Images are streamed with a cap too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import requests
import urllib3
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from guider.data.download.registry import IMAGE_MAX_BYTES
from guider.runs.atomic import atomic_path

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


class TooLargeError(DownloadError):
    """The server sends (or announces) more bytes than the size cap of a file of unknown size."""


class IncompleteDownloadError(DownloadError):
    """The bytes received are not a complete file of their format (the transfer was cut, or the file is bad)."""


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
    max_bytes: int = IMAGE_MAX_BYTES  # an image larger than this is refused


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
    max_size: int | None = None,
    check: Callable[[Path], None] | None = None,
) -> Fetched:
    """Download `url` to `dest` (resuming `<dest>.part`), verify it, then rename it into place.

    `size`/`sha256`: what the file must be, when known. `max_size`: the most bytes it may
    have while `size` is unknown. `check(path)`: raises ValueError (e.g. DatasetError)
    with the reason when `path` is not a complete file of its format; it runs when the
    server did not announce the length, and whenever `sha256` is unknown (before a pin).

    On a checksum mismatch, a file over the cap or a whole file the check refuses, the
    part file is deleted; a file that may only be cut short stays `<dest>.part` so that a
    rerun resumes it. `dest` is left untouched in every failure.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)  # default mode: the user's umask applies
    part = dest.with_name(dest.name + ".part")
    session = session or new_session()
    limit = size if size is not None else max_size
    resumed_from = part.stat().st_size if part.exists() else 0
    if limit is not None and resumed_from > limit:  # not a prefix of the expected file
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
            total = _transfer_with_retries(url, part, size, max_size, settings, session, bar)
        fetched = verify_file(part, size=size, sha256=sha256, label=f"{url} -> {dest}")
    except (ChecksumError, TooLargeError):
        part.unlink(missing_ok=True)
        raise
    if check is not None and sha256 is None:
        _check_format(check, url, dest, part, whole=size is not None or total == fetched.size)
    os.replace(part, dest)
    return Fetched(dest, fetched.size, fetched.sha256, resumed_from)


def _check_format(check: Callable[[Path], None], url: str, dest: Path, part: Path, *, whole: bool) -> None:
    """Run the format check on `part`; IncompleteDownloadError (one line) when it fails."""
    try:
        check(part)
    except (ValueError, OSError) as err:
        received = part.stat().st_size
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        if whole:  # the server sent all it announced: the file itself is bad
            part.unlink(missing_ok=True)
            raise IncompleteDownloadError(
                f"{dest.name}: refused after {received:,} bytes from {url}, the whole file as announced: "
                f"{reason}; nothing kept"
            ) from err
        raise IncompleteDownloadError(
            f"{dest.name}: incomplete after {received:,} bytes from {url} (the server announced no length): "
            f"{reason}; kept as {part.name} (rerun to resume)"
        ) from err


def _transfer_with_retries(
    url: str,
    part: Path,
    size: int | None,
    max_size: int | None,
    settings: HttpSettings,
    session: requests.Session,
    bar: tqdm,
) -> int | None:
    """Run attempts until one completes; the total length the server announced in it (None: unknown)."""
    for attempt in range(settings.retries + 1):
        try:
            return _transfer(url, part, size, max_size, settings, session, bar)
        except TransientError as err:
            if attempt == settings.retries:
                raise DownloadError(
                    f"{url}: giving up after {attempt + 1} attempts ({err}); "
                    f"rerun to resume from {part.stat().st_size if part.exists() else 0} bytes"
                ) from err
            wait = settings.backoff * 2**attempt
            log.warning("%s: %s; retrying in %.1f s (%d/%d)", url, err, wait, attempt + 1, settings.retries)
            time.sleep(wait)
    raise AssertionError("unreachable")


def _transfer(
    url: str,
    part: Path,
    size: int | None,
    max_size: int | None,
    settings: HttpSettings,
    session: requests.Session,
    bar: tqdm,
) -> int | None:
    """One attempt: append the missing bytes to `part`; raise TransientError to be retried.

    Returns the total length of the file as the server announced it, or `size` when that
    is known, or None (the server sent no length: completeness is up to the format check).
    """
    offset = part.stat().st_size if part.exists() else 0
    if size is not None and offset == size:
        return size
    headers = {"Accept-Encoding": "identity"}  # the bytes as stored: no on-the-fly compression
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        with session.get(url, headers=headers, stream=True, timeout=settings.timeout) as response:
            checked = _check_response(response, url, offset)
            if checked is None:  # 416: the part file already holds every byte the server has
                return _total_of_416(response, url, part, offset, size)
            offset = checked
            expected_total = _expected_total(response, url, offset)
            if size is not None and expected_total is not None and expected_total != size:
                raise ChecksumError(f"{url}: server announces {expected_total} bytes, expected {size}")
            if size is None and max_size is not None and expected_total is not None and expected_total > max_size:
                raise TooLargeError(
                    f"{url}: the server announces {expected_total:,} bytes, more than the {max_size:,}-byte cap "
                    f"for this file; nothing kept (raise max_size in the registry if the file really is that large)"
                )
            total = expected_total if expected_total is not None else size
            limit = total if total is not None else max_size
            bar.reset(total=total)
            bar.update(offset)
            written = offset
            with open(part, "ab" if offset else "wb") as handle:
                for block in response.raw.stream(CHUNK, decode_content=False):  # the bytes as served
                    written += len(block)
                    if limit is not None and written > limit:
                        raise _overflow(url, limit, expected_total, size)
                    handle.write(block)
                    bar.update(len(block))
    except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as err:
        # includes a chunked body without its terminating chunk and a body shorter than Content-Length
        raise TransientError(_short_reason(err)) from err
    received = part.stat().st_size
    if total is not None and received < total:
        raise TransientError(f"connection closed after {received} of {total} bytes")
    return total


def _overflow(url: str, limit: int, announced: int | None, size: int | None) -> DownloadError:
    if announced is not None:
        return ChecksumError(f"{url}: the server sends more than the {announced:,} bytes it announced; nothing kept")
    if size is not None:
        return ChecksumError(f"{url}: the server sends more than the expected {size:,} bytes; nothing kept")
    return TooLargeError(
        f"{url}: more than {limit:,} bytes, the size cap for this file; the partial download was deleted "
        f"(raise max_size in the registry if the file really is that large)"
    )


def _total_of_416(response: requests.Response, url: str, part: Path, offset: int, size: int | None) -> int | None:
    """The file's total length from a 416 answer's `Content-Range: bytes */N` (None when absent)."""
    match = re.fullmatch(r"bytes \*/(\d+)", response.headers.get("Content-Range", "").strip())
    if match is None:
        return size
    total = int(match.group(1))
    if total < offset:  # the part file is longer than the file: not a prefix of it
        part.unlink()
        raise TransientError(f"the part file has {offset} bytes but the file only {total}; restarting")
    return total


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
    if offset:
        start = _range_start(response)
        if start is not None and start != offset:
            raise DownloadError(f"{url}: asked for the bytes from {offset}, the server sent them from {start}")
    return offset


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def _range_start(response: requests.Response) -> int | None:
    match = CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    return int(match.group(1)) if match else None


def _expected_total(response: requests.Response, url: str, offset: int) -> int | None:
    """The file's total length as announced (Content-Range total, else offset + Content-Length), or None."""
    content_range = response.headers.get("Content-Range", "").strip()
    if response.status_code == 206 and content_range:
        match = CONTENT_RANGE.fullmatch(content_range)
        if match is None:
            raise DownloadError(f"{url}: malformed Content-Range {content_range[:80]!r}")
        if match.group(3) != "*":
            return int(match.group(3))
    length = response.headers.get("Content-Length")
    if length is None:
        return None
    if not length.strip().isdigit():
        raise DownloadError(f"{url}: malformed Content-Length {length[:80]!r}")
    return offset + int(length)


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
            data = _get_bytes(job.url, settings, get_session(), job.max_bytes)
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
        except OSError as err:  # writing the image (disk full, permissions): report it, keep the others going
            return f"cannot write {job.dest.name}: {err.strerror or err}"
    return "unreachable"


def _get_bytes(url: str, settings: HttpSettings, session: requests.Session, max_bytes: int) -> bytes:
    """The body of `url`, streamed; DownloadError when it is larger than `max_bytes`."""
    try:
        with session.get(url, timeout=settings.timeout, stream=True) as response:
            if response.status_code in RETRYABLE_STATUS:
                raise TransientError(f"HTTP {response.status_code} {response.reason}")
            if response.status_code >= 400:
                raise DownloadError(f"HTTP {response.status_code} {response.reason}")
            length = response.headers.get("Content-Length", "")
            if length.strip().isdigit() and int(length) > max_bytes:
                raise DownloadError(f"larger than the {max_bytes:,}-byte image cap ({int(length):,} bytes announced)")
            body = bytearray()
            for block in response.iter_content(CHUNK):  # decoded as served (gzip): the cap counts decoded bytes
                body += block
                if len(body) > max_bytes:
                    raise DownloadError(f"larger than the {max_bytes:,}-byte image cap")
            return bytes(body)
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as err:
        raise TransientError(_short_reason(err)) from err
    except requests.RequestException as err:  # a malformed URL or answer: this image fails, the others go on
        raise DownloadError(_short_reason(err)) from err


def _check_image(data: bytes) -> None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
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
