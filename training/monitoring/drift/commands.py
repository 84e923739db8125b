"""The CLI commands (training/cli.py loads them lazily): ``movierec monitor drift`` reports a
time range of the request log against the reference, ``movierec monitor reference`` saves the
reference."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from training.config import Paths
from training.monitoring.drift.reference import (
    REFERENCE_FILE,
    load_reference,
    reference_for_checkpoints,
    save_reference,
)
from training.monitoring.drift.report import compare_requests
from training.monitoring.drift.request_log import REQUEST_LOG_FILE, as_utc, read_request_log

TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]


def drift_command(
    since: Annotated[
        datetime | None,
        typer.Option(formats=TIME_FORMATS, help="Start of the range (UTC unless offset given)."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=TIME_FORMATS, help="End of the range (exclusive).")
    ] = None,
    log_path: Annotated[
        Path | None, typer.Option("--log", help="Request log; default logs/requests.jsonl.")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference; default data/checkpoints/drift_reference.json."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare the logged requests of a time range with the training-time reference (PSI, KS)."""
    from training.data.ingest import DataUnavailableError

    if since and until and as_utc(since) >= as_utc(until):
        raise typer.BadParameter("--since must be before --until")
    paths = Paths()
    log_path = log_path or paths.logs / REQUEST_LOG_FILE
    loaded = load_reference(reference or paths.checkpoints / REFERENCE_FILE)
    requests = read_request_log(log_path, since, until)
    if not requests:
        raise DataUnavailableError(
            f"{log_path}: no logged requests between {since or 'the start'} and {until or 'now'}"
        )
    report = compare_requests(loaded, requests, since, until)
    typer.echo(json.dumps(report.to_dict(), indent=2) if json_output else report.to_text())


def drift_reference_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    output: Annotated[
        Path | None, typer.Option(help="Default data/checkpoints/drift_reference.json.")
    ] = None,
) -> None:
    """Save the training-time reference distributions that drift is measured against."""
    from training.config import load_params

    paths = Paths()
    dataset = load_params(params).data.dataset
    path = save_reference(
        reference_for_checkpoints(paths, dataset), output or paths.checkpoints / REFERENCE_FILE
    )
    typer.echo(str(path))
