"""`guider data download` against a hostile or broken server (tests/http_fixture.py misbehaving).

Decisions these tests pin down:
- an item id that is not one plain file name is not downloaded: it is listed in
  images_failed.tsv as "unsafe item id", a warning counts them, and the command still
  succeeds (rc 0) for the other items; nothing is ever written outside resources/;
- a file without a Content-Length is complete only if its format check passes; a cut
  file stays `<name>.part` (a rerun resumes it), the command fails with one line, and
  nothing is pinned;
- files of unknown size and images have a size cap; over it: one line, nothing kept;
- meta and title lines are read with a length cap, so a gzip line bomb costs no memory.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from http_fixture import FIXTURES, UpstreamServer

from guider.cli import main
from guider.data.download.checksum_lock import ChecksumLock
from guider.data.download.cli import _image_url
from guider.data.download.http import HttpSettings, ImageJob, fetch_images
from guider.data.download.registry import DEFAULT_REGISTRY, is_safe_item_id, load_registry
from guider.data.format.dataset import DatasetError
from guider.data.sources import amazon, microlens

AMAZON = "/data/amazon/productGraph/categoryFiles"
RATINGS_PATH = f"{AMAZON}/ratings_Baby.csv"
META_PATH = f"{AMAZON}/meta_Baby.json.gz"
FEATURES_PATH = "/data/amazon/productGraph/image_features/categoryFiles/image_features_Baby.b"
PAIRS_PATH = "/MicroLens-100k-Dataset/MicroLens-100k_pairs.csv"
RATINGS = (FIXTURES / RATINGS_PATH.lstrip("/")).read_bytes()
FAST = HttpSettings(connect_timeout=2, read_timeout=5, retries=0, backoff=0.01)


@pytest.fixture()
def server():
    with UpstreamServer() as running:
        yield running


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download(*args: str) -> int:
    return main(["data", "download", *args, "--no-progress", "--retries", "0"])


def error_lines(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR]


def assert_one_line_error(caplog, *fragments: str) -> str:
    errors = error_lines(caplog)
    assert len(errors) == 1 and "\n" not in errors[0], errors
    for fragment in fragments:
        assert fragment in errors[0], errors[0]
    return errors[0]


def files_under(root: Path) -> set[Path]:
    return {Path(folder) / name for folder, _, names in os.walk(root) for name in names}


def paths_under(root: Path) -> set[Path]:
    """Every file and folder below `root`."""
    return {Path(folder) / name for folder, dirs, names in os.walk(root) for name in dirs + names}


def local_registry(tmp_path: Path, base: str, extra: dict[str, str] | None = None) -> Path:
    """The packaged registry with the upstream host replaced by the local server (downloads are 'upstream')."""
    text = DEFAULT_REGISTRY.read_text().replace("http://snap.stanford.edu", base)
    for after, line in (extra or {}).items():  # e.g. a max_size line after a file's url line
        text = text.replace(after, after + line)
    path = tmp_path / "registry.yaml"
    path.write_text(text)
    return path


def cut_mid_line(data: bytes, at: int) -> int:
    """The first position >= `at` that does not fall right after a newline."""
    while data[at - 1 : at] == b"\n":
        at += 1
    return at


# --- unsafe item ids ---------------------------------------------------------------------


def test_unsafe_amazon_item_ids_are_refused_and_nothing_lands_outside_resources(server, tmp_path, caplog):
    absolute = str(tmp_path / "abs_escape")
    hostile = {"B000000001": "../../../ESCAPE_img", "B000000002": absolute, "B000000003": "a/b", "B000000004": ".."}
    ratings, meta = RATINGS, gzip.decompress((FIXTURES / META_PATH.lstrip("/")).read_bytes())
    for good, bad in hostile.items():
        ratings, meta = ratings.replace(good.encode(), bad.encode()), meta.replace(good.encode(), bad.encode())
    server.behaviour.override[RATINGS_PATH] = ratings
    server.behaviour.override[META_PATH] = gzip.compress(meta)
    resources, lock = tmp_path / "r", tmp_path / "lock.json"
    code = download("baby", "--mirror", server.url, "--resources", str(resources), "--lock", str(lock))
    assert code == 0
    assert {p for p in paths_under(tmp_path) if p != resources and resources not in p.parents} == set()  # no lock
    folder = resources / "baby"
    assert not (folder / "images").exists()  # B5: 404, B6: no URL, the rest unsafe: no image at all
    assert not list(tmp_path.rglob("*ESCAPE*")) and not Path(absolute + ".jpg").exists()
    failed = [line.split("\t") for line in (folder / "images_failed.tsv").read_text().splitlines()[1:]]
    reasons = {row[0]: row[-1] for row in failed}
    assert reasons == {
        **{bad: "unsafe item id" for bad in hostile.values()},
        "B000000005": "HTTP 404 Not Found",
        "B000000006": "no image URL",
    }
    assert "4 item id(s) are not plain file names" in caplog.text
    assert not any("ESCAPE" in path for _, path, _ in server.behaviour.requests)  # never asked for either


def test_unsafe_microlens_ids_never_reach_a_url_or_a_path(server, tmp_path):
    pairs = (FIXTURES / PAIRS_PATH.lstrip("/")).read_text().splitlines()
    hostile = {"101": "../../../ESCAPE_img", "102": "/tmp/abs_escape", "103": "a/b"}
    rows = [pairs[0]] + [",".join([u, hostile.get(i, i), t]) for u, i, t in (line.split(",") for line in pairs[1:])]
    server.behaviour.override[PAIRS_PATH] = ("\n".join(rows) + "\n").encode()
    resources = tmp_path / "r"
    code = download("microlens", "--mirror", server.url, "--resources", str(resources), "--lock", str(tmp_path / "l"))
    assert code == 0
    assert {p for p in paths_under(tmp_path) if p != resources and resources not in p.parents} == set()
    assert sorted(p.name for p in (resources / "microlens/covers").iterdir()) == ["104.jpg", "106.jpg"]
    failed = (resources / "microlens/images_failed.tsv").read_text()
    for bad in hostile.values():
        assert f"{bad}\t\tunsafe item id" in failed
    assert not any("ESCAPE" in path or "abs_escape" in path for _, path, _ in server.behaviour.requests)


def test_the_safe_id_rule_and_image_urls():
    for good in ("B000000001", "101", "0-x_y.z", "a" * 128):
        assert is_safe_item_id(good)
    for bad in ("", ".", "..", "../x", "a/b", "/abs", ".hidden", "a\x00b", "a\nb", "a" * 129, "a b", "B1\n", "-x"):
        assert not is_safe_item_id(bad), bad
    assert _image_url("http://h/images/I/x.jpg", None) == "http://h/images/I/x.jpg"
    assert _image_url("http://h/images/I/x.jpg", "http://m:1") == "http://m:1/images/I/x.jpg"
    for bad in ("file:///etc/passwd", "javascript:alert(1)", "http://[::1/x", "ftp://h/x.jpg", "/just/a/path"):
        assert _image_url(bad, None) is None, bad


def test_the_registry_refuses_file_and_folder_names_that_are_paths(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEFAULT_REGISTRY.read_text().replace("name: ratings_Baby.csv", "name: ../ratings_Baby.csv"))
    with pytest.raises(ValueError, match="plain file name"):
        load_registry(bad)
    bad.write_text(DEFAULT_REGISTRY.read_text().replace("folder: covers", "folder: /tmp/covers"))
    with pytest.raises(ValueError, match="plain folder name"):
        load_registry(bad)


# --- truncated downloads -----------------------------------------------------------------


def test_a_cut_download_without_length_is_kept_as_part_unpinned_then_resumed_and_pinned(server, tmp_path, caplog):
    registry, lock = local_registry(tmp_path, server.url), tmp_path / "lock.json"
    ChecksumLock(lock).pin("sports", "x.csv", "u", 1, "ab" * 32)  # an unrelated pin: the lock must not change
    before = lock.read_bytes()
    cut = cut_mid_line(RATINGS, 1000)
    server.behaviour.no_length.add(RATINGS_PATH)
    server.behaviour.close_after[RATINGS_PATH] = cut
    args = ["baby", "--registry", str(registry), "--lock", str(lock), "--resources", str(tmp_path / "r")]
    assert download(*args, "--skip", "images") == 2
    assert_one_line_error(caplog, "ratings_Baby.csv", f"{cut:,} bytes", "no length", "newline")
    folder = tmp_path / "r/baby"
    assert not (folder / "ratings_Baby.csv").exists()
    assert (folder / "ratings_Baby.csv.part").read_bytes() == RATINGS[:cut]
    assert lock.read_bytes() == before
    # the server behaves again: the rerun resumes from the part file and pins the whole file
    server.behaviour.no_length.clear()
    server.behaviour.close_after.clear()
    caplog.clear()
    assert download(*args, "--skip", "images") == 0, error_lines(caplog)
    assert (folder / "ratings_Baby.csv").read_bytes() == RATINGS
    assert server.requests_for(RATINGS_PATH)[-1][2] == f"bytes={cut}-"
    pins = json.loads(lock.read_text())
    assert pins["baby"]["ratings_Baby.csv"]["sha256"] == sha256(RATINGS)
    assert pins["baby"]["ratings_Baby.csv"]["size"] == len(RATINGS)
    assert pins["sports"]["x.csv"]["sha256"] == "ab" * 32


def test_a_whole_download_without_length_passes_its_check_is_pinned_and_follows_the_umask(server, tmp_path):
    lock, resources = tmp_path / "lock.json", tmp_path / "r"
    server.behaviour.no_length.update({RATINGS_PATH, META_PATH, FEATURES_PATH, "/images/I/item1.jpg"})
    code = download("baby", "--mirror", server.url, "--pin", "--lock", str(lock), "--resources", str(resources))
    assert code == 0
    pins = json.loads(lock.read_text())["baby"]
    assert set(pins) == {"ratings_Baby.csv", "meta_Baby.json.gz", "image_features_Baby.b"}
    assert pins["ratings_Baby.csv"]["sha256"] == sha256(RATINGS)
    umask = os.umask(0)
    os.umask(umask)
    assert len(list((resources / "baby/images").iterdir())) == 4
    for folder in (resources, resources / "baby", resources / "baby/images"):
        assert folder.stat().st_mode & 0o777 == 0o777 & ~umask, folder
    for file in files_under(resources):
        assert file.stat().st_mode & 0o777 == 0o666 & ~umask, file


@pytest.mark.parametrize(
    ("path", "cut", "reason"),
    [
        (META_PATH, 200, "not a complete gzip file"),
        (FEATURES_PATH, 20_000, "not a whole number of 16,394-byte records"),
    ],
)
def test_a_cut_gzip_or_feature_file_without_length_is_refused(server, tmp_path, caplog, path, cut, reason):
    registry, lock = local_registry(tmp_path, server.url), tmp_path / "lock.json"
    server.behaviour.no_length.add(path)
    server.behaviour.close_after[path] = cut
    args = ["baby", "--registry", str(registry), "--lock", str(lock), "--resources", str(tmp_path / "r")]
    assert download(*args, "--skip", "images") == 2
    name = path.rsplit("/", 1)[1]
    assert_one_line_error(caplog, name, f"{cut:,} bytes", reason)
    assert not (tmp_path / "r/baby" / name).exists() and (tmp_path / "r/baby" / f"{name}.part").exists()
    assert name not in json.loads(lock.read_text())["baby"]  # the files before it are pinned, not this one


def test_a_chunked_body_without_its_last_chunk_is_not_complete(server, tmp_path, caplog):
    registry, lock = local_registry(tmp_path, server.url), tmp_path / "lock.json"
    server.behaviour.chunked.add(RATINGS_PATH)
    server.behaviour.close_after[RATINGS_PATH] = 4096  # whole chunks, whole lines even: only the 0-chunk is missing
    args = ["baby", "--registry", str(registry), "--lock", str(lock), "--resources", str(tmp_path / "r")]
    assert download(*args, "--skip", "images") == 2
    assert_one_line_error(caplog, RATINGS_PATH, "giving up", "rerun to resume")
    assert not (tmp_path / "r/baby/ratings_Baby.csv").exists() and not lock.exists()
    server.behaviour.close_after.clear()  # a complete chunked body is fine
    caplog.clear()
    assert download(*args, "--skip", "images") == 0, error_lines(caplog)
    assert (tmp_path / "r/baby/ratings_Baby.csv").read_bytes() == RATINGS


def test_format_checks_of_each_role(tmp_path):
    path = tmp_path / "f"
    cases = [
        (amazon, "ratings", b"A,B,5.0,1\nA,C,4.0,2\n", None),
        (amazon, "ratings", b"A,B,5.0,1\nA,C,4.0,2", "does not end with a newline"),
        (amazon, "ratings", b"A,B,5.0,1\nA,C,4\n", "line 2: 3 fields, expected 4"),
        (amazon, "ratings", b"A,B,5.0,1\nA,C", "the last line (line 2) does not end with a newline"),
        (amazon, "ratings", b"", "empty"),
        (amazon, "meta", gzip.compress(b"{'asin': 'B1'}\n")[:-4], "not a complete gzip file"),
        (amazon, "image_features", b"\0" * (10 + 4096 * 4) * 2, None),
        (microlens, "pairs", b"user,item,timestamp\n1,2,3\n", None),
        (microlens, "pairs", b"user,item,timestamp\n1,2\n", "2 fields, expected 3"),
        (microlens, "titles", b'1,"a, b"\n2,c, d\n', None),
        (microlens, "titles", b'1,"a, b"\n2,"c, d\n', "a quoted field is still open"),
        (microlens, "titles", b'1,"a"b\n2,c "d\n3,"multi\nline"\n', None),
        (microlens, "titles", b"1,a\n2,c", "does not end with a newline"),
    ]
    for module, role, data, error in cases:
        path.write_bytes(data)
        if error is None:
            module.check_file(role, path)
        else:
            with pytest.raises(DatasetError, match=error.replace("(", r"\(").replace(")", r"\)")):
                module.check_file(role, path)


# --- size caps ---------------------------------------------------------------------------


@pytest.mark.parametrize("announced", [True, False])
def test_a_file_over_its_size_cap_fails_in_one_line_and_leaves_nothing(server, tmp_path, caplog, announced):
    registry = local_registry(tmp_path, server.url, {"categoryFiles/ratings_Baby.csv\n": "      max_size: 1000\n"})
    if not announced:
        server.behaviour.no_length.add(RATINGS_PATH)
    lock = tmp_path / "lock.json"
    args = ["baby", "--registry", str(registry), "--lock", str(lock), "--resources", str(tmp_path / "r")]
    assert download(*args, "--skip", "images") == 2
    fragment = "more than the 1,000-byte cap" if announced else "more than 1,000 bytes, the size cap"
    assert_one_line_error(caplog, server.url + RATINGS_PATH, fragment)
    assert list((tmp_path / "r/baby").iterdir()) == [] and not lock.exists()


def test_an_image_over_the_image_cap_is_a_failure_not_a_crash(server, tmp_path):
    big = (FIXTURES / "images/I/item1.jpg").read_bytes()
    server.behaviour.override["/img/big.jpg"] = big
    server.behaviour.override["/img/big_nolength.jpg"] = big
    server.behaviour.no_length.add("/img/big_nolength.jpg")
    jobs = [
        ImageJob(name, f"{server.url}/img/{name}.jpg", tmp_path / f"{name}.jpg", max_bytes=len(big) - 1)
        for name in ("big", "big_nolength")
    ]
    failures = fetch_images(jobs, workers=2, settings=FAST, progress=False)
    assert set(failures) == {"big", "big_nolength"}
    assert all("image cap" in reason for reason in failures.values())
    assert list(tmp_path.iterdir()) == []


# --- line caps ---------------------------------------------------------------------------


def test_titles_and_meta_lines_over_the_cap_name_the_line(tmp_path):
    titles = tmp_path / "titles.csv"
    with open(titles, "w") as handle:
        handle.write("101,fine\n102," + "x" * (microlens.TITLE_LINE_CAP + 10) + "\n")
    with pytest.raises(DatasetError, match="titles.csv: line 2 longer than 1 MiB"):
        microlens.read_titles(titles)
    meta = tmp_path / "meta.json.gz"
    with gzip.open(meta, "wb") as handle:
        handle.write(b"{'asin': 'B1'}\n" + b"{'asin': 'B2', 'title': '" + b"y" * amazon.META_LINE_CAP + b"'}\n")
    with pytest.raises(DatasetError, match="meta.json.gz: line 2 longer than 1 MiB: not an Amazon meta line"):
        amazon.read_meta(meta)


BOMB_SCRIPT = textwrap.dedent(
    """
    import gzip, shutil, sys
    from pathlib import Path
    tests, tmp = Path(sys.argv[1]), Path(sys.argv[2])
    sys.path.insert(0, str(tests))
    from http_fixture import FIXTURES, UpstreamServer
    from guider.cli import main

    # one 1 GiB line, ~1 MB compressed: gzip members of 1 MiB of 'a' each, built without the 1 GiB
    bomb = gzip.compress(b"{'asin': 'B000000001', 'title': '")
    bomb += gzip.compress(b"a" * (1 << 20)) * 1024 + gzip.compress(b"'}\\n")
    meta = "/data/amazon/productGraph/categoryFiles/meta_Baby.json.gz"
    common = ["--lock", str(tmp / "lock.json"), "--skip", "image_features", "--no-progress", "--retries", "0"]
    with UpstreamServer() as server:  # 1. served by a mirror
        server.behaviour.override[meta] = bomb
        code1 = main(["data", "download", "baby", "--mirror", server.url, "--resources", str(tmp / "r1")] + common)
    folder = tmp / "r2/baby"  # 2. placed by hand: read when the images are listed
    folder.mkdir(parents=True)
    shutil.copy(FIXTURES / meta.lstrip("/").replace("meta_Baby.json.gz", "ratings_Baby.csv"), folder)
    (folder / "meta_Baby.json.gz").write_bytes(bomb)
    offline = ["--mirror", "http://127.0.0.1:9", "--resources", str(tmp / "r2")]
    code2 = main(["data", "download", "baby"] + offline + common)
    peak = [line for line in open("/proc/self/status") if line.startswith("VmHWM")][0].split()[1]
    print("RESULT", code1, code2, peak)
    """
)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak memory from /proc")
def test_a_gzip_line_bomb_fails_on_its_line_with_bounded_memory(tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", BOMB_SCRIPT, str(Path(__file__).parent), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    code1, code2, peak_kib = result.stdout.split("RESULT")[1].split()
    assert (int(code1), int(code2)) == (2, 2), result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("ERROR")]
    assert len(errors) == 2, result.stderr[-3000:]
    assert all("meta_Baby.json.gz" in line and "line 1 longer than 1 MiB" in line for line in errors), errors
    assert int(peak_kib) < 1024 * 1024, f"peak RSS {int(peak_kib) / 1024:.0f} MiB"
    print(f"peak RSS of the download subprocess: {int(peak_kib) / 1024:.0f} MiB")
    assert not (tmp_path / "r1/baby/meta_Baby.json.gz").exists()
    assert not (tmp_path / "r1/baby/meta_Baby.json.gz.part").exists()  # whole as announced, but bad: deleted
