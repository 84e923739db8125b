"""The ``movierec data`` commands as scripts see them: help, output and exit codes.

Exit codes (training/cli.py): 0 success, 2 bad usage, 3 invalid input naming file and line,
4 data unavailable. A few tests run the installed console script in a subprocess (what DVC and
Make do); the rest invoke the same Typer app in process, which is much faster to start.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.data.synthetic import BASE, TEST, write_raw_100k
from training.config import REPO_ROOT
from training.data import datasets

MOVIEREC = Path(sys.executable).parent / "movierec"
PARAMS = REPO_ROOT / "params.yaml"
# The documented contract (README, training/cli.py docstring), not the module's own constants.
EXIT_USAGE, EXIT_INVALID, EXIT_UNAVAILABLE = 2, 3, 4
COMMAND_TIMEOUT_S = 120
WIDE_TERMINAL = {"COLUMNS": "200", "NO_COLOR": "1"}  # help text unwrapped, no colour codes


def movierec(*args: str, home: Path, mirror: Path | None = None) -> subprocess.CompletedProcess:
    """Run the installed console script with its own MOVIEREC_HOME (and mirror, if given)."""
    env = {key: value for key, value in os.environ.items() if key != "MOVIELENS_MIRROR"}
    env.update(WIDE_TERMINAL, MOVIEREC_HOME=str(home))
    env["PATH"] = f"{MOVIEREC.parent}{os.pathsep}{env.get('PATH', '')}"
    if mirror is not None:
        env["MOVIELENS_MIRROR"] = str(mirror)
    return subprocess.run(
        [str(MOVIEREC), *args],
        env=env,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
    )


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """MOVIEREC_HOME for in-process runs, with no mirror unless a test sets one."""
    monkeypatch.setenv("MOVIEREC_HOME", str(tmp_path))
    monkeypatch.delenv("MOVIELENS_MIRROR", raising=False)
    return tmp_path


def invoke(*args: str):
    # Imported here so a broken command module elsewhere fails these tests, not collection.
    from training.cli import app

    return CliRunner().invoke(app, list(args), env=WIDE_TERMINAL, prog_name="movierec")


# --- the console script -------------------------------------------------------------------------


def test_console_script_help(tmp_path):
    result = movierec("--help", home=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage: movierec" in result.stdout
    assert "data" in result.stdout and "train" in result.stdout


def test_fetch_then_prepare_writes_metrics(tmp_path, mirror):
    fetched = movierec("data", "fetch", "--params", str(PARAMS), home=tmp_path, mirror=mirror)
    assert fetched.returncode == 0, fetched.stderr
    assert fetched.stdout.strip() == str(tmp_path.resolve() / "data" / "raw" / "ml-100k")
    metrics = tmp_path / "metrics" / "prepare.json"
    prepared = movierec(
        "data", "prepare", "--params", str(PARAMS), "--metrics", str(metrics), home=tmp_path
    )
    assert prepared.returncode == 0, prepared.stderr
    figures = json.loads(metrics.read_text(encoding="utf-8"))
    assert json.loads(prepared.stdout.strip().splitlines()[-1]) == figures
    assert (figures["n_users"], figures["n_items"]) == (943, 1682)
    assert (figures["n_train"], figures["n_test"]) == (80_000, 20_000)
    assert (tmp_path / "data" / "preprocessed" / "ml-100k" / "metadata.json").is_file()


def test_bad_data_file_exits_3_naming_file_and_line(tmp_path):
    raw = write_raw_100k(tmp_path / "data" / "raw" / "ml-100k", base=BASE, test=[*TEST, (20, 2, 7)])
    result = movierec("data", "prepare", "--params", str(PARAMS), home=tmp_path)
    assert result.returncode == EXIT_INVALID, result.stderr
    assert f"{raw.resolve() / 'u1.test'}:3: rating 7 is outside 1-5" in result.stderr
    assert "Traceback" not in result.stderr


# --- the same app in process --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        pytest.param(["data"], ["fetch", "prepare"], id="data"),
        pytest.param(["data", "fetch"], ["--dataset", "--force", "--params"], id="data-fetch"),
        pytest.param(["data", "prepare"], ["--params", "--metrics"], id="data-prepare"),
        pytest.param(["train"], ["--model", "--epochs", "--params"], id="train"),
    ],
)
def test_subcommand_help(home, command, expected):
    result = invoke(*command, "--help")
    assert result.exit_code == 0, result.output
    assert f"Usage: movierec {' '.join(command)} " in result.stdout
    for word in expected:
        assert word in result.stdout


def test_bad_params_exit_3_naming_the_key(home):
    params = home / "params.yaml"
    params.write_text("data:\n  rbm_threshold: 0\n", encoding="utf-8")
    result = invoke("data", "prepare", "--params", str(params))
    assert result.exit_code == EXIT_INVALID, result.output
    assert str(params) in result.stderr and "data.rbm_threshold" in result.stderr


def test_checksum_mismatch_exits_3(home, monkeypatch):
    fake = home / "fake-mirror" / "ml-100k"
    fake.mkdir(parents=True)
    for name in (*datasets.ML_100K.files, "u.data"):
        (fake / name).write_text("junk\n", encoding="ascii")
    monkeypatch.setenv("MOVIELENS_MIRROR", str(fake.parent))
    result = invoke("data", "fetch", "--dataset", "ml-100k")
    assert result.exit_code == EXIT_INVALID, result.output
    assert "does not match the expected" in result.stderr


def test_mirror_without_dataset_exits_4(home, monkeypatch):
    (home / "empty").mkdir()
    monkeypatch.setenv("MOVIELENS_MIRROR", str(home / "empty"))
    result = invoke("data", "fetch", "--dataset", "ml-1m")
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "MOVIELENS_MIRROR" in result.stderr


def test_prepare_before_fetch_exits_4(home):
    result = invoke("data", "prepare", "--params", str(PARAMS))
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "movierec data fetch" in result.stderr


def test_unknown_dataset_is_bad_usage(home):
    result = invoke("data", "fetch", "--dataset", "ml-20m")
    assert result.exit_code == EXIT_USAGE
    assert "ml-20m" in result.stderr


def test_offline_without_mirror_exits_4_saying_how(home, monkeypatch):
    # Nothing listens on the discard port: the download fails at once, as it does offline.
    monkeypatch.setattr(datasets, "GROUPLENS_URL", "http://127.0.0.1:9/{name}.zip")
    result = invoke("data", "fetch", "--dataset", "ml-100k")
    assert result.exit_code == EXIT_UNAVAILABLE, result.output
    assert "cannot download http://127.0.0.1:9/ml-100k.zip" in result.stderr
    assert "MOVIELENS_MIRROR" in result.stderr
    assert not (home / "data" / "raw" / "ml-100k").exists()
