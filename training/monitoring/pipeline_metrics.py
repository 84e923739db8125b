"""Pipeline health as data: when each DVC stage last succeeded (and failed), and how long its
last successful run took, in a Prometheus textfile (``data/metrics/pipeline.prom``) beside the
training figures'.

``dvc repro`` sets ``DVC_STAGE`` for every stage command; ``movierec`` (``training.cli.main``)
runs each command inside ``stage_timer``, which does nothing outside DVC. The web app re-exposes
the file at each scrape (``web.instrumentation``), as it does ``training.prom``; a node_exporter
textfile collector pointed at ``data/metrics/`` reads the same file.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from training.config import Paths, get_logger
from training.monitoring.training_metrics import read_textfile, replace_samples

log = get_logger("monitoring")

PIPELINE_TEXTFILE = "pipeline.prom"
STAGE_ENV = "DVC_STAGE"  # dvc/env.py: set by `dvc repro` for each stage's command
STAGE_LABEL = "stage"
LAST_SUCCESS = "pipeline_stage_last_success_timestamp_seconds"
DURATION = "pipeline_stage_duration_seconds"
LAST_FAILURE = "pipeline_stage_last_failure_timestamp_seconds"
PIPELINE_METRICS = {
    LAST_SUCCESS: "When the DVC stage's command last finished successfully (Unix time)",
    DURATION: "Wall time of the DVC stage command's last successful run",
    LAST_FAILURE: "When the DVC stage's command last failed (Unix time)",
}


def default_textfile() -> Path:
    return Paths().data / "metrics" / PIPELINE_TEXTFILE


def record_stage(path: Path, stage: str, seconds: float, ok: bool, finished: float) -> Path:
    """Update ``stage``'s samples (a failure keeps its last success and duration)."""
    labels = {STAGE_LABEL: stage}
    previous = {
        family.name: sample.value
        for family in read_textfile(path)
        for sample in family.samples
        if family.name in PIPELINE_METRICS and sample.labels == labels
    }
    figures = dict(previous)
    if ok:
        figures.update({LAST_SUCCESS: finished, DURATION: seconds})
    else:
        figures[LAST_FAILURE] = finished
    fresh = {name: [(labels, value)] for name, value in figures.items()}
    return replace_samples(path, PIPELINE_METRICS, STAGE_LABEL, stage, fresh)


def _succeeded(exit_code: object) -> bool:
    return exit_code is None or exit_code == 0


@contextmanager
def stage_timer(
    path: Path | None = None, environ: Mapping[str, str] = os.environ
) -> Iterator[None]:
    """Time the command run inside; under DVC, record its stage's outcome on the way out."""
    stage = environ.get(STAGE_ENV)
    if not stage:
        yield
        return
    started = time.monotonic()
    ok = False
    try:
        yield
        ok = True
    except SystemExit as exc:  # typer ends every command with one
        ok = _succeeded(exc.code)
        raise
    finally:
        target = path or default_textfile()
        try:
            record_stage(target, stage, time.monotonic() - started, ok, time.time())
        except OSError as exc:  # the figures must never fail the stage itself
            log.warning("%s: pipeline figures not written: %s", target, exc)
