"""Bring a MovieLens dataset into ``data/raw/<name>/``, verified, from a mirror or GroupLens.

A fetch builds the new folder beside the old one and swaps it in only after every checksum
passed, so a half-written download never replaces good data.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import requests
from tqdm import tqdm

from training.config import get_logger, mirror_dir
from training.data.datasets import DatasetSpec, RatingsSource, get_spec

log = get_logger("data")
SOURCE_FILE = "SOURCE.json"
_CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_S = 60


class DataUnavailableError(RuntimeError):
    """The dataset cannot be obtained; the message says how to provide it."""


class ChecksumError(RuntimeError):
    pass


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def git_blob_of(path: Path) -> str:
    """``git hash-object`` of a file: the only known fingerprint of the full ML-1M ratings."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(path: Path, sha256: str | None = None, git_blob: str | None = None) -> None:
    if sha256 is not None and (actual := sha256_of(path)) != sha256:
        raise ChecksumError(f"{path}: sha256 {actual} does not match the expected {sha256}")
    if git_blob is not None and (actual := git_blob_of(path)) != git_blob:
        raise ChecksumError(f"{path}: git blob {actual} does not match the expected {git_blob}")


def _verify_ratings(path: Path, source: RatingsSource) -> None:
    verify_file(path, sha256=source.sha256, git_blob=source.git_blob)


def _copy_from_mirror(spec: DatasetSpec, mirror: Path, staging: Path) -> dict:
    folder = mirror / spec.name
    if not folder.is_dir():
        raise DataUnavailableError(
            f"mirror {mirror} has no {spec.name}/ folder; {_how_to_provide(spec)}"
        )
    for name, digest in spec.files.items():
        src = folder / name
        if not src.is_file():
            raise DataUnavailableError(f"mirror file {src} is missing; {_how_to_provide(spec)}")
        shutil.copyfile(src, staging / name)
        verify_file(staging / name, sha256=digest)
    for source in spec.ratings:
        plain, packed = folder / source.filename, folder / (source.xz_name or "")
        if plain.is_file():
            shutil.copyfile(plain, staging / source.filename)
        elif source.xz_name and packed.is_file():
            try:
                with lzma.open(packed) as xz, (staging / source.filename).open("wb") as dst:
                    shutil.copyfileobj(xz, dst, _CHUNK)
            except (lzma.LZMAError, EOFError) as exc:
                raise ChecksumError(f"{packed}: not a complete xz file ({exc})") from exc
        else:
            continue
        _verify_ratings(staging / source.filename, source)
        return {
            "origin": "mirror",
            "location": str(folder),
            "ratings": source.filename,
            "subset": source.subset,
        }
    names = ", ".join(s.filename for s in spec.ratings)
    raise DataUnavailableError(f"mirror {folder} holds no ratings file ({names})")


def _download(spec: DatasetSpec, staging: Path) -> dict:
    archive = staging / f"{spec.name}.zip"
    try:
        with requests.get(spec.url, stream=True, timeout=DOWNLOAD_TIMEOUT_S) as response:
            response.raise_for_status()
            total = int(response.headers.get("content-length", 0)) or None
            with (
                archive.open("wb") as out,
                tqdm(total=total, unit="B", unit_scale=True, desc=f"download {spec.name}") as bar,
            ):
                for chunk in response.iter_content(_CHUNK):
                    out.write(chunk)
                    bar.update(len(chunk))
    except requests.RequestException as exc:
        raise DataUnavailableError(
            f"cannot download {spec.url} ({exc}); {_how_to_provide(spec)}"
        ) from exc
    try:
        zipped = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise ChecksumError(f"{spec.url}: the download is not a valid zip archive ({exc})") from exc
    with zipped:
        for member in zipped.namelist():
            name = Path(member).name
            wanted = name in spec.files or any(name == s.filename for s in spec.ratings)
            if wanted and not member.endswith("/"):
                with zipped.open(member) as src, (staging / name).open("wb") as dst:
                    shutil.copyfileobj(src, dst, _CHUNK)
    archive.unlink()
    for name, digest in spec.files.items():
        if not (staging / name).is_file():
            raise ChecksumError(f"{spec.url}: the archive has no {name}")
        verify_file(staging / name, sha256=digest)
    full = spec.ratings[0]
    _verify_ratings(staging / full.filename, full)
    return {"origin": "download", "location": spec.url, "ratings": full.filename, "subset": None}


def _how_to_provide(spec: DatasetSpec) -> str:
    return (
        f"to provide {spec.name}, either allow downloads from {spec.url}, or set "
        f"MOVIELENS_MIRROR to a folder that holds {spec.name}/ in GroupLens' layout "
        f"(for example MOVIELENS_MIRROR=../shared/data)"
    )


def fetch(name: str, raw_root: Path, force: bool = False) -> Path:
    """Make ``raw_root/name`` hold the verified dataset; returns that folder."""
    spec = get_spec(name)
    target = raw_root / name
    if not force and (target / SOURCE_FILE).is_file():
        log.info("%s already present in %s", name, target)
        return target
    raw_root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.partial-", dir=raw_root))
    staging.chmod(0o755)
    try:
        mirror = mirror_dir()
        source = _copy_from_mirror(spec, mirror, staging) if mirror else _download(spec, staging)
        checksums = {p.name: sha256_of(p) for p in sorted(staging.iterdir())}
        (staging / SOURCE_FILE).write_text(
            json.dumps({**source, "sha256": checksums}, indent=2) + "\n", encoding="utf-8"
        )
        _swap_in(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    log.info("%s ready in %s (%s)", name, target, source["origin"])
    return target


def _swap_in(staging: Path, target: Path) -> None:
    backup = target.with_name(f".{target.name}.old")
    if backup.exists():
        shutil.rmtree(backup)
    if target.exists():
        os.replace(target, backup)
    os.replace(staging, target)
    shutil.rmtree(backup, ignore_errors=True)


def read_source(folder: Path) -> dict:
    """What ``fetch`` recorded about a raw folder (origin, ratings file, subset, checksums)."""
    path = folder / SOURCE_FILE
    if not path.is_file():
        raise DataUnavailableError(
            f"{folder} was not fetched by movierec (no {SOURCE_FILE}); run `movierec data fetch`"
        )
    return json.loads(path.read_text(encoding="utf-8"))
