"""Fetching MovieLens: from the shared mirror, from a (local) download, and failing safely.

"A half-written download never replaces good data": every failed fetch below must leave the
previous verified folder byte for byte as it was and no staging folder behind.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import subprocess
import threading
import zipfile
from functools import partial
from pathlib import Path

import pytest

from training.data import datasets
from training.data.datasets import ML_1M, ML_100K, get_spec
from training.data.ingest import (
    SOURCE_FILE,
    ChecksumError,
    DataUnavailableError,
    fetch,
    git_blob_of,
    read_source,
    sha256_of,
    verify_file,
)

ML_1M_PARTIAL = ML_1M.ratings[1]
ML_1M_PARTIAL_LINES = 487_650
# Bigger than the 1 MiB read chunk, so the chunked hashing is exercised.
LARGE_FILE_BYTES = 3 * (1 << 20) + 17
# Nothing listens on the discard port: a download from it fails at once, like being offline.
UNREACHABLE_URL = "http://127.0.0.1:9/{name}.zip"


def snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file in a folder: equal snapshots mean nothing was touched."""
    return {p.name: sha256_of(p) for p in sorted(folder.iterdir())}


def leftovers(raw_root: Path) -> list[str]:
    """Staging or backup folders a fetch might leave beside the dataset."""
    return sorted(p.name for p in raw_root.iterdir() if p.name.startswith("."))


# --- checksums ----------------------------------------------------------------------------------


def test_sha256_of_small_and_chunked_files(tmp_path):
    small = tmp_path / "abc"
    small.write_bytes(b"abc")
    assert sha256_of(small) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    data = bytes(range(256)) * (LARGE_FILE_BYTES // 256) + b"tail"
    large = tmp_path / "large"
    large.write_bytes(data)
    assert sha256_of(large) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("size", [0, 11, LARGE_FILE_BYTES])
def test_git_blob_of_equals_git_hash_object(tmp_path, size):
    path = tmp_path / "blob.dat"
    path.write_bytes((b"1::1193::5::978300760\n" * (size // 22 + 1))[:size])
    expected = subprocess.run(
        ["git", "hash-object", str(path)], check=True, capture_output=True, text=True
    ).stdout.strip()
    assert git_blob_of(path) == expected


def test_verify_file_names_the_file_on_mismatch(tmp_path):
    path = tmp_path / "u.data"
    path.write_bytes(b"1\t2\t3\t4\n")
    verify_file(path, sha256=sha256_of(path), git_blob=git_blob_of(path))  # right: passes
    with pytest.raises(ChecksumError, match=r"u\.data: sha256 .* does not match"):
        verify_file(path, sha256="0" * 64)
    with pytest.raises(ChecksumError, match=r"u\.data: git blob .* does not match"):
        verify_file(path, git_blob="0" * 40)


def test_get_spec_rejects_unknown_dataset():
    assert get_spec("ml-1m") is ML_1M
    with pytest.raises(ValueError, match="ml-20m"):
        get_spec("ml-20m")


# --- the shared mirror --------------------------------------------------------------------------


@pytest.fixture
def use_mirror(monkeypatch, mirror):
    monkeypatch.setenv("MOVIELENS_MIRROR", str(mirror))
    return mirror


@pytest.fixture
def good_100k(tmp_path, use_mirror) -> Path:
    """A raw root already holding a verified ML-100K, fetched from the real mirror."""
    raw_root = tmp_path / "raw"
    fetch("ml-100k", raw_root)
    return raw_root


def test_fetch_100k_from_mirror(good_100k, mirror):
    folder = good_100k / "ml-100k"
    names = {p.name for p in folder.iterdir()}
    assert names == {*ML_100K.files, "u.data", SOURCE_FILE}
    source = read_source(folder)
    assert source["origin"] == "mirror"
    assert source["location"] == str(mirror / "ml-100k")
    assert source["ratings"] == "u.data" and source["subset"] is None
    assert source["sha256"]["u.data"] == ML_100K.ratings[0].sha256
    for name, digest in ML_100K.files.items():
        assert source["sha256"][name] == digest == sha256_of(folder / name)
    assert leftovers(good_100k) == []


def test_fetch_again_keeps_data_unless_forced(good_100k):
    folder = good_100k / "ml-100k"
    stamp = (folder / SOURCE_FILE).stat().st_mtime_ns
    assert fetch("ml-100k", good_100k) == folder
    assert (folder / SOURCE_FILE).stat().st_mtime_ns == stamp  # nothing rewritten
    before = snapshot(folder)
    fetch("ml-100k", good_100k, force=True)
    assert snapshot(folder).keys() == before.keys()
    assert leftovers(good_100k) == []


def test_fetch_1m_partial_from_mirror_is_labelled(tmp_path, use_mirror):
    folder = fetch("ml-1m", tmp_path / "raw")
    ratings = folder / ML_1M_PARTIAL.filename
    assert not (folder / "ratings.dat").exists()  # the partial file keeps its honest name
    assert sha256_of(ratings) == ML_1M_PARTIAL.sha256  # decompressed from .xz, verified
    with ratings.open("rb") as handle:
        assert handle.readline() == b"1::1193::5::978300760\n"
        assert 1 + sum(1 for _ in handle) == ML_1M_PARTIAL_LINES
    source = read_source(folder)
    assert source["ratings"] == ML_1M_PARTIAL.filename
    assert "1-2999" in source["subset"]
    for name, digest in ML_1M.files.items():
        assert sha256_of(folder / name) == digest


# --- failures keep good data --------------------------------------------------------------------


def test_mismatching_mirror_leaves_good_data_untouched(good_100k, tmp_path, monkeypatch):
    before = snapshot(good_100k / "ml-100k")
    fake = tmp_path / "fake-mirror"
    for name in (*ML_100K.files, "u.data"):
        (fake / "ml-100k").mkdir(parents=True, exist_ok=True)
        (fake / "ml-100k" / name).write_text(f"not the real {name}\n", encoding="ascii")
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake))
    with pytest.raises(ChecksumError, match="does not match"):
        fetch("ml-100k", good_100k, force=True)
    assert snapshot(good_100k / "ml-100k") == before
    assert leftovers(good_100k) == []


def test_truncated_ratings_never_replace_good_data(good_100k, tmp_path, monkeypatch, mirror):
    """Every file right but u.data cut in half, as an interrupted copy would leave it."""
    before = snapshot(good_100k / "ml-100k")
    fake = tmp_path / "fake-mirror" / "ml-100k"
    fake.mkdir(parents=True)
    for name in ML_100K.files:
        (fake / name).symlink_to(mirror / "ml-100k" / name)
    full = (mirror / "ml-100k" / "u.data").read_bytes()
    (fake / "u.data").write_bytes(full[: len(full) // 2])
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    with pytest.raises(ChecksumError, match=r"u\.data: sha256"):
        fetch("ml-100k", good_100k, force=True)
    assert snapshot(good_100k / "ml-100k") == before
    assert leftovers(good_100k) == []


def test_truncated_xz_in_mirror_is_a_checksum_error(tmp_path, monkeypatch, mirror):
    fake = tmp_path / "fake-mirror" / "ml-1m"
    fake.mkdir(parents=True)
    for name in ML_1M.files:
        (fake / name).symlink_to(mirror / "ml-1m" / name)
    packed = (mirror / "ml-1m" / ML_1M_PARTIAL.xz_name).read_bytes()
    (fake / ML_1M_PARTIAL.xz_name).write_bytes(packed[: len(packed) // 2])
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    raw_root = tmp_path / "raw"
    with pytest.raises(ChecksumError, match=ML_1M_PARTIAL.xz_name):
        fetch("ml-1m", raw_root)
    assert list(raw_root.iterdir()) == []


def test_failed_first_fetch_leaves_nothing(tmp_path, monkeypatch):
    fake = tmp_path / "fake-mirror" / "ml-100k"
    fake.mkdir(parents=True)
    for name in (*ML_100K.files, "u.data"):
        (fake / name).write_text("junk\n", encoding="ascii")
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    raw_root = tmp_path / "raw"
    with pytest.raises(ChecksumError):
        fetch("ml-100k", raw_root)
    assert list(raw_root.iterdir()) == []


def test_mirror_without_dataset_says_how_to_provide(tmp_path, monkeypatch):
    (tmp_path / "empty-mirror").mkdir()
    monkeypatch.setenv("MOVIELENS_MIRROR", str(tmp_path / "empty-mirror"))
    with pytest.raises(DataUnavailableError) as exc:
        fetch("ml-1m", tmp_path / "raw")
    message = str(exc.value)
    assert "has no ml-1m/ folder" in message
    assert "MOVIELENS_MIRROR" in message and ML_1M.url in message


def test_mirror_missing_a_file_names_it(tmp_path, monkeypatch, mirror):
    fake = tmp_path / "fake-mirror" / "ml-100k"
    fake.mkdir(parents=True)
    for source in (mirror / "ml-100k").iterdir():
        if source.name != "u.user":
            (fake / source.name).symlink_to(source)
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    with pytest.raises(DataUnavailableError, match=r"ml-100k/u\.user is missing"):
        fetch("ml-100k", tmp_path / "raw")


def test_mirror_without_ratings_names_the_expected_files(tmp_path, monkeypatch, mirror):
    fake = tmp_path / "fake-mirror" / "ml-1m"
    fake.mkdir(parents=True)
    for name in ML_1M.files:
        (fake / name).symlink_to(mirror / "ml-1m" / name)
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    with pytest.raises(DataUnavailableError) as exc:
        fetch("ml-1m", tmp_path / "raw")
    assert "holds no ratings file" in str(exc.value)
    assert "ratings.dat" in str(exc.value) and ML_1M_PARTIAL.filename in str(exc.value)


def test_offline_without_mirror_says_how_to_provide(tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "GROUPLENS_URL", UNREACHABLE_URL)
    raw_root = tmp_path / "raw"
    with pytest.raises(DataUnavailableError) as exc:
        fetch("ml-100k", raw_root)
    message = str(exc.value)
    assert "cannot download http://127.0.0.1:9/ml-100k.zip" in message
    assert "set MOVIELENS_MIRROR to a folder that holds ml-100k/" in message
    assert list(raw_root.iterdir()) == []


def test_read_source_of_unfetched_folder(tmp_path):
    with pytest.raises(DataUnavailableError, match="movierec data fetch"):
        read_source(tmp_path)


# --- downloads, from a real HTTP server on localhost --------------------------------------------


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def grouplens_site(tmp_path_factory, mirror):
    """A local stand-in for files.grouplens.org serving zips in GroupLens' archive layout."""
    site = tmp_path_factory.mktemp("grouplens")
    names = [*ML_100K.files, "u.data"]
    with zipfile.ZipFile(site / "ml-100k.zip", "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("ml-100k/", "")
        for name in names:
            archive.write(mirror / "ml-100k" / name, f"ml-100k/{name}")
    whole = (site / "ml-100k.zip").read_bytes()
    (site / "truncated.zip").write_bytes(whole[: len(whole) // 2])
    with zipfile.ZipFile(site / "no-split.zip", "w", zipfile.ZIP_STORED) as archive:
        for name in names:
            if name != "u1.test":
                archive.write(mirror / "ml-100k" / name, f"no-split/{name}")
    handler = partial(QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/{{name}}.zip"
    server.shutdown()
    server.server_close()
    thread.join()


def test_download_verifies_and_swaps_in(grouplens_site, tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "GROUPLENS_URL", grouplens_site)
    folder = fetch("ml-100k", tmp_path / "raw")
    assert {p.name for p in folder.iterdir()} == {*ML_100K.files, "u.data", SOURCE_FILE}
    source = json.loads((folder / SOURCE_FILE).read_text(encoding="utf-8"))
    assert source["origin"] == "download"
    assert source["location"] == grouplens_site.format(name="ml-100k")
    assert source["sha256"]["u.data"] == ML_100K.ratings[0].sha256


def test_download_missing_member_keeps_good_data(grouplens_site, good_100k, monkeypatch):
    before = snapshot(good_100k / "ml-100k")
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    # The archive served under ml-100k's name lacks u1.test.
    monkeypatch.setattr(datasets, "GROUPLENS_URL", grouplens_site.replace("{name}", "no-split"))
    with pytest.raises(ChecksumError, match=r"the archive has no u1\.test"):
        fetch("ml-100k", good_100k, force=True)
    assert snapshot(good_100k / "ml-100k") == before
    assert leftovers(good_100k) == []


def test_download_http_error_is_unavailable(grouplens_site, tmp_path, monkeypatch):
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "GROUPLENS_URL", grouplens_site)
    with pytest.raises(DataUnavailableError, match="404"):
        fetch("ml-1m", tmp_path / "raw")  # the stand-in site serves no ml-1m.zip


def test_download_of_broken_archive_keeps_good_data(grouplens_site, good_100k, monkeypatch):
    """A truncated archive, or a proxy's HTML page served with status 200."""
    before = snapshot(good_100k / "ml-100k")
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    monkeypatch.setattr(datasets, "GROUPLENS_URL", grouplens_site.replace("{name}", "truncated"))
    try:
        with pytest.raises(ChecksumError, match="zip"):
            fetch("ml-100k", good_100k, force=True)
    finally:  # whatever the error type, the good data must survive
        assert snapshot(good_100k / "ml-100k") == before
        assert leftovers(good_100k) == []
