"""Downloader: registry and mirrors, resume, retries, verification, TOFU pins, images, offline."""

from __future__ import annotations

import hashlib
import json
import socket
import time
from pathlib import Path

import pytest
from http_fixture import FIXTURES, UpstreamServer

from guider.cli import main
from guider.data.download.checksum_lock import ChecksumLock
from guider.data.download.http import (
    ChecksumError,
    DownloadError,
    HttpSettings,
    ImageJob,
    fetch_file,
    fetch_images,
)
from guider.data.download.registry import DEFAULT_REGISTRY, get_dataset, load_registry, with_mirror

RATINGS_PATH = "/data/amazon/productGraph/categoryFiles/ratings_Baby.csv"
RATINGS = FIXTURES / RATINGS_PATH.lstrip("/")
FAST = HttpSettings(connect_timeout=2, read_timeout=5, retries=3, backoff=0.01)


@pytest.fixture()
def server():
    with UpstreamServer() as running:
        yield running


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def free_port() -> int:
    """A port nothing listens on (connections are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- registry ---------------------------------------------------------------------------


def test_registry_lists_the_four_datasets_with_their_upstream_files():
    specs = load_registry()
    assert set(specs) == {"baby", "sports", "clothing", "microlens"}
    baby = specs["baby"]
    assert [f.name for f in baby.files] == ["ratings_Baby.csv", "meta_Baby.json.gz", "image_features_Baby.b"]
    assert baby.file("ratings").url == "http://snap.stanford.edu" + RATINGS_PATH
    assert (baby.expected["users"], baby.expected["items"], baby.expected["interactions"]) == (19445, 7050, 160792)
    assert specs["sports"].file("meta").name == "meta_Sports_and_Outdoors.json.gz"
    assert specs["clothing"].expected["interactions"] == 278677
    assert specs["microlens"].file("pairs").url.startswith("https://recsys.westlake.edu.cn/MicroLens-100k-Dataset/")


def test_unknown_dataset_names_the_known_ones():
    with pytest.raises(ValueError, match="baby, sports, clothing, microlens"):
        get_dataset("books")


def test_mirror_replaces_scheme_and_host_and_keeps_the_path():
    url = "http://snap.stanford.edu/data/a/ratings_Baby.csv?x=1"
    assert with_mirror(url, None) == url
    assert with_mirror(url, "http://127.0.0.1:8000") == "http://127.0.0.1:8000/data/a/ratings_Baby.csv?x=1"
    assert with_mirror(url, "https://m.example.org/cache/") == "https://m.example.org/cache/data/a/ratings_Baby.csv?x=1"
    with pytest.raises(ValueError, match="base URL"):
        with_mirror(url, "not-a-url")


def test_malformed_registry_is_a_clear_error(tmp_path):
    path = tmp_path / "reg.yaml"
    path.write_text("baby:\n  kind: amazon\n  files: []\n")
    with pytest.raises(ValueError, match="missing key"):
        load_registry(path)


# --- single files -----------------------------------------------------------------------


def test_fetch_file_downloads_and_verifies(server, tmp_path):
    dest = tmp_path / "ratings_Baby.csv"
    fetched = fetch_file(
        server.url + RATINGS_PATH,
        dest,
        size=RATINGS.stat().st_size,
        sha256=sha256(RATINGS),
        settings=FAST,
        progress=False,
    )
    assert dest.read_bytes() == RATINGS.read_bytes()
    assert (fetched.size, fetched.sha256, fetched.resumed_from) == (RATINGS.stat().st_size, sha256(RATINGS), 0)
    assert not dest.with_name(dest.name + ".part").exists()


def test_interrupted_transfer_resumes_with_a_range_request(server, tmp_path):
    path = "/data/amazon/productGraph/image_features/categoryFiles/image_features_Baby.b"
    original = (FIXTURES / path.lstrip("/")).read_bytes()
    server.behaviour.cut_after[path] = 70_000  # the first GET dies after 70,000 of 98,364 bytes
    dest = tmp_path / "image_features_Baby.b"
    fetch_file(
        server.url + path,
        dest,
        size=len(original),
        sha256=hashlib.sha256(original).hexdigest(),
        settings=FAST,
        progress=False,
    )
    assert dest.read_bytes() == original
    ranges = [r[2] for r in server.requests_for(path)]
    assert len(ranges) == 2 and ranges[0] is None
    resumed_at = int(ranges[1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 70_000  # only the bytes not yet on disk were asked for again


def test_a_part_file_left_by_an_earlier_run_is_resumed(server, tmp_path):
    dest = tmp_path / "ratings_Baby.csv"
    dest.with_name(dest.name + ".part").write_bytes(RATINGS.read_bytes()[:1000])
    fetched = fetch_file(server.url + RATINGS_PATH, dest, settings=FAST, progress=False)
    assert fetched.resumed_from == 1000 and dest.read_bytes() == RATINGS.read_bytes()
    assert [r[2] for r in server.requests_for(RATINGS_PATH)] == ["bytes=1000-"]


def test_a_server_ignoring_ranges_makes_the_download_restart_from_zero(server, tmp_path):
    server.behaviour.ignore_range.add(RATINGS_PATH)
    dest = tmp_path / "ratings_Baby.csv"
    dest.with_name(dest.name + ".part").write_bytes(b"stale bytes of another attempt")
    fetched = fetch_file(server.url + RATINGS_PATH, dest, sha256=sha256(RATINGS), settings=FAST, progress=False)
    assert dest.read_bytes() == RATINGS.read_bytes() and fetched.size == RATINGS.stat().st_size


def test_transient_errors_are_retried_then_given_up(server, tmp_path):
    server.behaviour.fail_times[RATINGS_PATH] = 2
    fetch_file(server.url + RATINGS_PATH, tmp_path / "a.csv", settings=FAST, progress=False)
    assert len(server.requests_for(RATINGS_PATH)) == 3
    server.behaviour.fail_times[RATINGS_PATH] = 10
    with pytest.raises(DownloadError, match="giving up after 4 attempts"):
        fetch_file(server.url + RATINGS_PATH, tmp_path / "b.csv", settings=FAST, progress=False)
    assert not (tmp_path / "b.csv").exists()


def test_checksum_mismatch_is_an_error_and_leaves_no_file(server, tmp_path):
    dest = tmp_path / "ratings_Baby.csv"
    with pytest.raises(ChecksumError, match="sha256"):
        fetch_file(server.url + RATINGS_PATH, dest, sha256="0" * 64, settings=FAST, progress=False)
    with pytest.raises(ChecksumError, match="announces 1662 bytes, expected 5"):
        fetch_file(server.url + RATINGS_PATH, dest, size=5, settings=FAST, progress=False)
    assert list(tmp_path.iterdir()) == []


def test_http_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404"):
        fetch_file(server.url + "/nope.csv", tmp_path / "nope.csv", settings=FAST, progress=False)
    assert len(server.requests_for("/nope.csv")) == 1
    assert list(tmp_path.iterdir()) == []


# --- images -----------------------------------------------------------------------------


def test_images_are_fetched_concurrently_and_failures_reported(server, tmp_path):
    server.behaviour.override["/images/I/garbage.jpg"] = b"<html>not an image</html>"
    server.behaviour.fail_times["/images/I/item2.jpg"] = 1  # transient: retried
    names = ["item1.jpg", "item2.jpg", "item3.png", "missing.jpg", "garbage.jpg"]
    jobs = [ImageJob(name, f"{server.url}/images/I/{name}", tmp_path / name) for name in names]
    failures = fetch_images(jobs, workers=3, settings=FAST, progress=False)
    assert set(failures) == {"missing.jpg", "garbage.jpg"}
    assert "404" in failures["missing.jpg"] and "not a readable image" in failures["garbage.jpg"]
    for name in ("item1.jpg", "item2.jpg", "item3.png"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / "images/I" / name).read_bytes()
    assert not (tmp_path / "missing.jpg").exists() and not (tmp_path / "garbage.jpg").exists()
    before = len(server.behaviour.requests)
    assert fetch_images(jobs[:3], workers=2, settings=FAST, progress=False) == {}
    assert len(server.behaviour.requests) == before  # present images are not fetched again


def test_image_downloads_run_concurrently_but_never_above_the_bound(server, tmp_path):
    body = (FIXTURES / "images/I/item1.jpg").read_bytes()
    jobs = []
    for n in range(12):
        server.behaviour.override[f"/img/{n}.jpg"] = body
        jobs.append(ImageJob(str(n), f"{server.url}/img/{n}.jpg", tmp_path / f"{n}.jpg"))
    server.behaviour.delay = 0.1
    assert fetch_images(jobs, workers=3, settings=FAST, progress=False) == {}
    assert 2 <= server.behaviour.max_in_flight <= 3
    assert len(list(tmp_path.iterdir())) == 12


# --- checksum lock ----------------------------------------------------------------------


def test_lock_pins_once_and_refuses_a_different_pin(tmp_path):
    lock = ChecksumLock(tmp_path / "lock.json")
    assert lock.pinned("baby", "a.csv") is None
    lock.pin("baby", "a.csv", "http://x/a.csv", 10, "ab" * 32)
    assert ChecksumLock(tmp_path / "lock.json").pinned("baby", "a.csv").sha256 == "ab" * 32
    lock.pin("baby", "a.csv", "http://x/a.csv", 10, "ab" * 32)  # the same pin again is fine
    with pytest.raises(ValueError, match="pinned"):
        lock.pin("baby", "a.csv", "http://x/a.csv", 10, "cd" * 32)


# --- command line -----------------------------------------------------------------------


def _local_registry(tmp_path: Path, base: str) -> Path:
    """A registry whose upstream host is the local server (so downloads are 'from upstream')."""
    text = DEFAULT_REGISTRY.read_text()
    path = tmp_path / "registry.yaml"
    path.write_text(text.replace("http://snap.stanford.edu", base).replace("http://ecx.images-amazon.com", base))
    return path


def test_upstream_download_pins_checksums_and_a_changed_file_is_refused(server, tmp_path):
    registry, lock = _local_registry(tmp_path, server.url), tmp_path / "lock.json"
    args = [
        "data",
        "download",
        "baby",
        "--registry",
        str(registry),
        "--lock",
        str(lock),
        "--skip",
        "images",
        "--no-progress",
    ]
    assert main(args + ["--resources", str(tmp_path / "r1")]) == 0
    pins = json.loads(lock.read_text())["baby"]
    assert pins["ratings_Baby.csv"]["sha256"] == sha256(RATINGS)
    assert pins["ratings_Baby.csv"]["size"] == RATINGS.stat().st_size
    server.behaviour.override[RATINGS_PATH] = RATINGS.read_bytes().replace(b"5.0", b"1.0")
    assert main(args + ["--resources", str(tmp_path / "r2")]) == 2
    assert not (tmp_path / "r2/baby/ratings_Baby.csv").exists()
    assert not (tmp_path / "r2/baby/ratings_Baby.csv.part").exists()


def test_mirror_downloads_pin_only_when_asked_and_are_verified_against_pins(server, tmp_path):
    args = ["data", "download", "baby", "--mirror", server.url, "--skip", "images", "--no-progress"]
    lock = tmp_path / "lock.json"
    assert main(args + ["--resources", str(tmp_path / "r1"), "--lock", str(lock)]) == 0
    assert not lock.exists()
    assert main(args + ["--resources", str(tmp_path / "r2"), "--lock", str(lock), "--pin"]) == 0
    assert json.loads(lock.read_text())["baby"]["ratings_Baby.csv"]["sha256"] == sha256(RATINGS)
    wrong = tmp_path / "wrong.json"
    ChecksumLock(wrong).pin("baby", "ratings_Baby.csv", "u", RATINGS.stat().st_size, "0" * 64)
    assert main(args + ["--resources", str(tmp_path / "r3"), "--lock", str(wrong)]) == 2
    assert not (tmp_path / "r3/baby/ratings_Baby.csv").exists()


def test_a_present_file_that_differs_from_its_pin_is_an_error(server, tmp_path, caplog):
    folder = tmp_path / "r/baby"
    folder.mkdir(parents=True)
    (folder / "ratings_Baby.csv").write_text("A,B,5.0,1\n")
    lock = tmp_path / "lock.json"
    ChecksumLock(lock).pin("baby", "ratings_Baby.csv", "u", RATINGS.stat().st_size, sha256(RATINGS))
    code = main(
        [
            "data",
            "download",
            "baby",
            "--mirror",
            server.url,
            "--lock",
            str(lock),
            "--resources",
            str(tmp_path / "r"),
            "--skip",
            "images",
            "--no-progress",
        ]
    )
    assert code == 2 and "delete it to download it again" in caplog.text
    assert (folder / "ratings_Baby.csv").read_text() == "A,B,5.0,1\n"  # left for the user to inspect


def test_download_command_fetches_images_and_logs_failures(server, tmp_path):
    code = main(
        [
            "data",
            "download",
            "baby",
            "--mirror",
            server.url,
            "--lock",
            str(tmp_path / "lock.json"),
            "--resources",
            str(tmp_path),
            "--workers",
            "3",
            "--no-progress",
        ]
    )
    assert code == 0
    folder = tmp_path / "baby"
    assert sorted(p.name for p in (folder / "images").iterdir()) == [
        "B000000001.jpg",
        "B000000002.jpg",
        "B000000003.png",
        "B000000004.jpg",
    ]  # P7/P8 are outside the 5-core
    failed = (folder / "images_failed.tsv").read_text().splitlines()
    assert failed[0] == "item\turl\treason"
    reasons = dict(line.split("\t")[0::2] for line in failed[1:])
    assert reasons == {"B000000005": "HTTP 404 Not Found", "B000000006": "no image URL"}
    assert (folder / "image_features_Baby.b").read_bytes() == (
        FIXTURES / "data/amazon/productGraph/image_features/categoryFiles/image_features_Baby.b"
    ).read_bytes()


def test_dry_run_lists_files_sizes_and_urls_and_downloads_nothing(server, tmp_path, capsys):
    code = main(
        [
            "data",
            "download",
            "baby",
            "--dry-run",
            "--mirror",
            server.url,
            "--resources",
            str(tmp_path),
            "--lock",
            str(tmp_path / "lock.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0 and list(tmp_path.iterdir()) == []
    for name in ("ratings_Baby.csv", "meta_Baby.json.gz", "image_features_Baby.b"):
        assert name in out
    assert f"{RATINGS.stat().st_size:,} B" in out and "98,364 B (96.1 KiB)" in out
    assert server.url + RATINGS_PATH in out
    assert all(r[0] == "HEAD" for r in server.behaviour.requests)


def test_offline_download_fails_within_seconds_naming_the_url_and_the_ways_forward(tmp_path, caplog):
    mirror = f"http://127.0.0.1:{free_port()}"
    start = time.perf_counter()
    code = main(
        [
            "data",
            "download",
            "baby",
            "--mirror",
            mirror,
            "--resources",
            str(tmp_path),
            "--lock",
            str(tmp_path / "lock.json"),
            "--no-progress",
        ]
    )
    assert code == 2 and time.perf_counter() - start < 5
    message = caplog.text
    assert mirror + RATINGS_PATH in message
    assert "config/demo.yaml" in message and str(tmp_path / "baby") in message
    assert list((tmp_path).glob("baby/*")) == []


def test_config_key_gives_the_mirror(server, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  mirror: {server.url}\n")
    code = main(
        [
            "data",
            "download",
            "microlens",
            "--config",
            str(config),
            "--resources",
            str(tmp_path / "r"),
            "--lock",
            str(tmp_path / "lock.json"),
            "--no-progress",
        ]
    )
    assert code == 0
    covers = sorted(p.name for p in (tmp_path / "r/microlens/covers").iterdir())
    assert covers == ["101.jpg", "102.jpg", "103.jpg", "104.jpg", "106.jpg"]  # 105 answers 404
    assert "105\t" in (tmp_path / "r/microlens/images_failed.tsv").read_text()
