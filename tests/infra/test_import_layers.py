"""The import layering of pyproject.toml's [tool.importlinter]: `lint-imports` keeps every
contract (handlers stand alone, training imports neither web nor benchmarks, training's layers,
no cycles between sibling modules, web views never import web.app), and the contracts bite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
BIN_DIR = Path(sys.executable).parent
CONTRACTS = (
    "handlers ship alone inside the .mar",
    "training imports neither the web app nor the benchmarks",
    "training's layers follow the data flow",
    "no import cycles between sibling modules",
    "web views do not import the app factory",
)


def _lint_imports(cwd: Path, *config: str) -> subprocess.CompletedProcess:
    found = shutil.which("lint-imports", path=str(BIN_DIR)) or shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports not found: `make setup` installs it (import-linter, dev extra)")
    return subprocess.run(
        [found, "--no-logo", "--no-cache", *config],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_lint_imports_keeps_every_contract():
    result = _lint_imports(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    for contract in CONTRACTS:
        assert contract in result.stdout, contract
    assert "0 broken" in result.stdout


def test_a_view_importing_the_app_factory_breaks_the_contracts(tmp_path):
    """A copy of web/ whose view imports web.app again (the cycle views -> app -> views)."""
    for package in ("training", "handlers", "web", "benchmarks"):
        shutil.copytree(
            REPO_ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__", "results"),
        )
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    view = tmp_path / "web" / "views" / "pages.py"
    view.write_text(view.read_text() + "\nfrom web.app import create_app  # noqa: E402\n")
    result = _lint_imports(tmp_path)
    assert result.returncode != 0, result.stdout
    assert "web.views.pages -> web.app" in result.stdout
    assert "No cycles are allowed in web" in result.stdout
