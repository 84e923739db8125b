"""Type checking: `mypy` with pyproject.toml's [tool.mypy] (training/, handlers/, web/ and
docker/*.py, strict but for the checks listed there) finds nothing, as in `make lint` and CI's
lint job; and the settings bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
CHECKED = ("training", "handlers", "web", "docker/*.py")


def _mypy(*args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    found = shutil.which("mypy", path=str(BIN_DIR)) or shutil.which("mypy")
    if found is None:
        pytest.fail("mypy not found: `make setup` installs it (dev extra)")
    return subprocess.run(
        [found, *args], cwd=cwd, capture_output=True, text=True, timeout=600
    )  # fmt: skip


def test_the_project_settings_check_the_packages():
    import tomllib

    settings = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    assert tuple(settings["files"]) == CHECKED
    for option in ("check_untyped_defs", "disallow_untyped_defs", "warn_unused_ignores"):
        assert settings[option] is True, option
    assert settings.get("ignore_missing_imports", False) is False


@pytest.mark.slow  # about 30 s without a warm .mypy_cache
def test_mypy_finds_nothing():
    result = _mypy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout


def test_mypy_reports_type_errors_and_unannotated_functions(tmp_path):
    """Not vacuous: with the project's settings, a wrong type, an unannotated function and an
    unused ignore are all reported."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "def untyped(x):\n"
        "    return x\n"
        "\n"
        "\n"
        "count: int = 'three'\n"
        "fine: int = 3  # type: ignore[assignment]\n"
    )
    result = _mypy("--config-file", str(REPO_ROOT / "pyproject.toml"), str(probe), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "[no-untyped-def]" in result.stdout
    assert "[assignment]" in result.stdout
    assert "[unused-ignore]" in result.stdout
