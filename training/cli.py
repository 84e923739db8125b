"""``movierec``: the one command line. DVC stages and Make targets call these commands.

Exit codes scripts can trust: 0 success, 2 bad usage, 3 invalid input (data or config; the
message names the file and line), 4 data or service unavailable, 1 anything unexpected.
"""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn, ParamSpec, TypeVar

import typer
from typer.core import TyperGroup

from training.config import DATASETS, ConfigError, Paths, load_params

if TYPE_CHECKING:
    # typer vendors click (typer._click): TyperGroup takes and returns its types, not click's.
    from typer._click import Command, Context

P = ParamSpec("P")
R = TypeVar("R")
EXIT_INVALID = 3
EXIT_UNAVAILABLE = 4

app = typer.Typer(
    help="MovieLens recommendations: data, training, evaluation, export, serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and preprocess MovieLens data.", no_args_is_help=True)
app.add_typer(data_app, name="data")

ParamsOption = Annotated[Path, typer.Option("--params", help="params.yaml to read.")]
DEFAULT_PARAMS = Path("params.yaml")


def fail(message: str, code: int) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def cli_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn the project's known error types into a one-line message and a stable exit code."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        from training.data.ingest import ChecksumError, DataUnavailableError
        from training.data.parsers import DataValidationError

        try:
            return func(*args, **kwargs)
        except (ConfigError, DataValidationError, ChecksumError) as exc:
            fail(str(exc), EXIT_INVALID)
        except (DataUnavailableError, FileNotFoundError) as exc:
            fail(str(exc), EXIT_UNAVAILABLE)

    return wrapper


@data_app.command("fetch")
@cli_errors
def data_fetch(
    dataset: Annotated[
        str | None, typer.Option(help=f"One of {DATASETS}; default from params.")
    ] = None,
    force: Annotated[bool, typer.Option(help="Fetch again even if present.")] = False,
    params: ParamsOption = DEFAULT_PARAMS,
) -> None:
    """Copy a dataset from $MOVIELENS_MIRROR or download it from GroupLens, verifying checksums."""
    from training.data.ingest import fetch

    name = dataset or load_params(params).data.dataset
    if name not in DATASETS:
        fail(f"unknown dataset {name!r}; choose one of {DATASETS}", 2)
    folder = fetch(name, Paths().raw, force=force)
    typer.echo(str(folder))


@data_app.command("prepare")
@cli_errors
def data_prepare(
    params: ParamsOption = DEFAULT_PARAMS,
    metrics: Annotated[Path | None, typer.Option(help="Write summary figures (JSON) here.")] = None,
) -> None:
    """Validate the raw files and write tensors, encodings, catalogue and metadata."""
    from training.data.preprocess import prepare, summary

    data_params = load_params(params).data
    paths = Paths()
    metadata = prepare(
        paths.raw_dataset(data_params.dataset), paths.prepared(data_params.dataset), data_params
    )
    figures = summary(metadata)
    if metrics is not None:
        metrics.parent.mkdir(parents=True, exist_ok=True)
        metrics.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    typer.echo(json.dumps(figures))


@app.command("train")
@cli_errors
def train(
    model: Annotated[str, typer.Option(help="sae, rbm or all.")] = "all",
    params: ParamsOption = DEFAULT_PARAMS,
    track: Annotated[bool, typer.Option(help="Track the run in MLflow.")] = True,
    epochs: Annotated[int | None, typer.Option(help="Override the epochs in params.")] = None,
    metrics: Annotated[
        Path | None, typer.Option(help="Folder for train_<model>.json figures.")
    ] = None,
    plots: Annotated[
        Path | None, typer.Option(help="Folder for train_<model>.csv learning curves.")
    ] = None,
) -> None:
    """Train the SAE and/or the RBM with early stopping; saves data/checkpoints/<model>.pt."""
    from training.train import (
        CURVE_FILE,
        MODEL_NAMES,
        train_model,
        train_summary,
        write_learning_curve,
    )

    names = MODEL_NAMES if model == "all" else (model,)
    if any(name not in MODEL_NAMES for name in names):
        fail(f"unknown model {model!r}; choose sae, rbm or all", 2)
    loaded = load_params(params)
    for name in names:
        result = train_model(name, loaded, track=track, epochs=epochs)
        figures = train_summary(result)
        if metrics is not None:
            metrics.mkdir(parents=True, exist_ok=True)
            (metrics / f"train_{name}.json").write_text(json.dumps(figures, indent=2) + "\n")
        if plots is not None:
            write_learning_curve(result.history, plots / CURVE_FILE.format(model=name))
        typer.echo(json.dumps({"model": name, "checkpoint": str(result.checkpoint), **figures}))


# Each stage module owns its command function; these tables are the rest of the command tree.
# Modules are imported only when their command runs (or help lists it), so a command stays fast
# and does not depend on unrelated stages importing cleanly.
_TOP_LEVEL = {
    "evaluate": ("training.evaluate", "evaluate_command"),
    "evaluate-served": ("training.served_evaluation", "evaluate_served_command"),
    "tune": ("training.tune", "tune_command"),
    "retrain": ("training.retrain", "retrain_command"),
}
_DATA = {"snapshot-app": ("training.data.app_snapshot", "snapshot_app_command")}
_EXPORT = {
    "torchserve": ("training.export.torchserve", "export_torchserve_command"),
    "onnx": ("training.export.onnx", "export_onnx_command"),
}
_SERVE = {
    "torchserve": ("training.serving.torchserve_server", "serve_torchserve_command"),
    "triton": ("training.serving.triton_server", "serve_triton_command"),
    "web": ("web.server", "serve_web_command"),
    "mlflow": ("training.serving.mlflow_server", "serve_mlflow_command"),
    "stop": ("training.serving.processes", "stop_command"),
}
_RELEASE = {
    "torchserve": ("training.serving.release.commands", "release_torchserve_command"),
    "triton": ("training.serving.release.commands", "release_triton_command"),
    "promote": ("training.serving.release.commands", "promote_command"),
    "rollback": ("training.serving.release.commands", "rollback_command"),
    "status": ("training.serving.release.commands", "status_command"),
}
_MONITOR = {
    "drift": ("training.monitoring.drift.commands", "drift_command"),
    "reference": ("training.monitoring.drift.commands", "drift_reference_command"),
}


def _lazy_group(commands: dict[str, tuple[str, str]]) -> type[TyperGroup]:
    class LazyGroup(TyperGroup):
        def list_commands(self, ctx: Context) -> list[str]:
            return [*super().list_commands(ctx), *commands]

        def get_command(self, ctx: Context, name: str) -> Command | None:
            if name not in commands:
                return super().get_command(ctx, name)
            module_name, attr = commands[name]
            function = getattr(importlib.import_module(module_name), attr)
            single = typer.Typer(pretty_exceptions_enable=False)
            single.command(name)(cli_errors(function))
            return typer.main.get_command(single)

    return LazyGroup


def _add_lazy_group(name: str, help_text: str, commands: dict[str, tuple[str, str]]) -> None:
    group = typer.Typer(help=help_text, no_args_is_help=True, cls=_lazy_group(commands))
    app.add_typer(group, name=name)


app.info.cls = _lazy_group(_TOP_LEVEL)
data_app.info.cls = _lazy_group(_DATA)
_add_lazy_group("export", "Export trained models for serving.", _EXPORT)
_add_lazy_group("serve", "Start and stop the model servers.", _SERVE)
_add_lazy_group("monitor", "Monitoring: drift reports.", _MONITOR)
_add_lazy_group("release", "Roll a new model version out on a running server.", _RELEASE)


def main() -> None:  # pragma: no cover - console entry
    from training.monitoring.pipeline_metrics import stage_timer

    with stage_timer():  # under `dvc repro`: the stage's last success and duration
        sys.exit(app())
