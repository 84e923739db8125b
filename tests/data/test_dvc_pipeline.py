"""``dvc repro prepare`` on the ML-100K mirror, in a throwaway copy of the project."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from training.config import REPO_ROOT

VENV_BIN = Path(sys.executable).parent
DVC_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory, mirror) -> tuple[Path, dict]:
    """The pipeline's own files, symlink-free, in a fresh git + DVC repository."""
    work = tmp_path_factory.mktemp("dvc-project")
    for name in ("dvc.yaml", "params.yaml"):
        shutil.copyfile(REPO_ROOT / name, work / name)
    shutil.copytree(
        REPO_ROOT / "training",
        work / "training",
        symlinks=False,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("DVC_")}
    env.update(
        PATH=f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        MOVIEREC_HOME=str(work),
        MOVIELENS_MIRROR=str(mirror),
        DVC_NO_ANALYTICS="1",
        DO_NOT_TRACK="1",
    )
    run(["git", "init", "-q"], work, env)
    run([str(VENV_BIN / "dvc"), "init", "-q"], work, env)
    run([str(VENV_BIN / "dvc"), "config", "core.analytics", "false"], work, env)
    return work, env


def run(command: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=DVC_TIMEOUT_S
    )
    assert result.returncode == 0, f"{command}: {result.stdout}\n{result.stderr}"
    return result


@pytest.mark.slow
def test_dvc_repro_prepare_on_ml100k(dvc_project):
    work, env = dvc_project
    run([str(VENV_BIN / "dvc"), "repro", "prepare"], work, env)

    metadata = json.loads(
        (work / "data" / "preprocessed" / "ml-100k" / "metadata.json").read_text(encoding="utf-8")
    )
    assert (metadata["n_users"], metadata["n_items"]) == (943, 1682)
    assert (metadata["n_train"], metadata["n_test"]) == (80_000, 20_000)
    assert metadata["split"] == "u1" and metadata["subset"] is None
    figures = json.loads((work / "data" / "metrics" / "prepare.json").read_text(encoding="utf-8"))
    assert (figures["n_train"], figures["n_test"]) == (80_000, 20_000)
    # fetch ran first (prepare depends on its output), and both stages are recorded.
    assert (work / "data" / "raw" / "ml-100k" / "SOURCE.json").is_file()
    lock = (work / "dvc.lock").read_text(encoding="utf-8")
    assert "fetch:" in lock and "prepare:" in lock

    # Reproducible: nothing is out of date straight after a repro.
    status = run([str(VENV_BIN / "dvc"), "status", "--json", "prepare"], work, env)
    assert json.loads(status.stdout) == {}
