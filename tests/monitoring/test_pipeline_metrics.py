"""Pipeline health as data: the real ``movierec`` command, run as DVC runs a stage (DVC_STAGE
set), records the stage's last success and duration, or its failure, in data/metrics/pipeline.prom;
outside DVC it writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.monitoring.helpers import value
from training.monitoring.pipeline_metrics import (
    DURATION,
    LAST_FAILURE,
    LAST_SUCCESS,
    PIPELINE_TEXTFILE,
    STAGE_ENV,
)

CLI_TIMEOUT_S = 120
# The console entry point (training.cli.main), as the `movierec` script calls it.
ENTRY = "from training.cli import main; main()"


def movierec(home: Path, *args: str, stage: str | None = None) -> int:
    env = {**os.environ, "MOVIEREC_HOME": str(home)}
    env.pop(STAGE_ENV, None)
    if stage is not None:
        env[STAGE_ENV] = stage
    return subprocess.run(
        [sys.executable, "-c", ENTRY, *args], env=env, capture_output=True, timeout=CLI_TIMEOUT_S
    ).returncode


def test_a_stage_command_records_its_success_then_its_failure(tmp_path):
    textfile = tmp_path / "data" / "metrics" / PIPELINE_TEXTFILE
    assert movierec(tmp_path, "data", "--help") == 0
    assert not textfile.exists()  # not under DVC: nothing written

    assert movierec(tmp_path, "data", "--help", stage="prepare") == 0
    text = textfile.read_text()
    succeeded = value(text, LAST_SUCCESS, stage="prepare")
    assert succeeded is not None and succeeded > 0
    assert value(text, DURATION, stage="prepare") > 0
    assert value(text, LAST_FAILURE, stage="prepare") is None

    # A bad option: exit status 2. The last success and its duration stay beside the failure.
    assert movierec(tmp_path, "data", "prepare", "--no-such-option", stage="prepare") == 2
    assert movierec(tmp_path, "data", "--help", stage="fetch") == 0
    text = textfile.read_text()
    assert value(text, LAST_SUCCESS, stage="prepare") == succeeded
    assert value(text, LAST_FAILURE, stage="prepare") >= succeeded
    assert value(text, LAST_SUCCESS, stage="fetch") >= succeeded
