"""Secrets the web app makes for itself when the environment sets none (a dev or demo server).

A secret drawn afresh at every start would reject every cookie and token signed before it: the
visitor would lose their identity, ratings and A/B arm at each restart. So each one is drawn
once, kept in ``<MOVIEREC_HOME>/.run/web-secrets/<NAME>`` (mode 0600, folder 0700) and read back
by every gunicorn worker and every later start. Production sets them in the environment instead.
"""

from __future__ import annotations

import os
import secrets
import stat
import tempfile
from pathlib import Path

from training.config import ConfigError, Paths

# Under .run/, next to the pid files of the locally started servers (training/serving).
SECRETS_DIR = Path(".run") / "web-secrets"
FILE_MODE = 0o600
DIR_MODE = 0o700


def secrets_dir(root: Path | str | None = None) -> Path:
    return Paths(root).root / SECRETS_DIR


def load_or_create(path: Path, nbytes: int, min_length: int) -> tuple[str, bool]:
    """The secret kept in ``path``, drawn (``nbytes`` random bytes, hex) if there is none yet.

    Returns ``(secret, created)``. Workers starting together race to create the file: each writes
    its candidate to a private temporary file and hard-links it to ``path``, which fails if the
    file exists (like O_EXCL) and never shows a half-written file; the loser reads the winner's.
    """
    created = not path.exists() and _create(path, nbytes)
    return _read(path, min_length), created


def _create(path: Path, nbytes: int) -> bool:
    """Draw a secret into ``path``; False if another process created the file first."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mode 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as file:
            file.write(secrets.token_hex(nbytes) + "\n")
            file.flush()
            os.fsync(file.fileno())  # a crash must not leave an empty secret behind
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        return True
    finally:
        os.unlink(temporary)


def _read(path: Path, min_length: int) -> str:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise ConfigError(
            f"{path} is readable by others (mode {mode:o}): `chmod 600 {path}`, and rotate the "
            "secret if someone else may have read it"
        )
    value = path.read_text(encoding="ascii").strip()
    if len(value) < min_length:
        raise ConfigError(
            f"{path} holds a secret shorter than {min_length} characters: delete it to draw a "
            "new one"
        )
    return value
