"""MLflow wiring: one place decides where runs go, and what a run shows of its model.

Where: ``MLFLOW_TRACKING_URI`` if set (``make up`` points it at the project's ``mlflow server``);
DagsHub's MLflow when ``DAGSHUB_REPO_OWNER`` and ``DAGSHUB_REPO_NAME`` are set, through
``dagshub.init(..., mlflow=True)`` itself (it sets the URI and the credentials, the token from
``DAGSHUB_USER_TOKEN``); otherwise an embedded SQLite store with a local artifact folder.
Nothing here touches the network at import, and ``dagshub`` is imported only when selected.

What: besides its figures, a training run logs the model's architecture (a text summary and a
diagram drawn from its parametrised layers) and its learning curves, one panel per figure.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from training.config import ConfigError, Paths

if TYPE_CHECKING:
    import torch
    from matplotlib.figure import Figure
    from matplotlib.patches import FancyBboxPatch

    from training.models.base import History

# pip requirements for the logged MLflow model (training.registry), given explicitly so MLflow
# does not freeze the env.
MLFLOW_MODEL_REQUIREMENTS = ["torch==2.13.0", "numpy<2"]
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
DAGSHUB_OWNER_ENV = "DAGSHUB_REPO_OWNER"
DAGSHUB_NAME_ENV = "DAGSHUB_REPO_NAME"
DAGSHUB_TOKEN_ENV = "DAGSHUB_USER_TOKEN"  # dagshub's own variable: it reads the token there
DAGSHUB_TOKENS_PAGE = "https://dagshub.com/user/settings/tokens"

# Where a run's description goes among its artifacts.
ARCHITECTURE_TEXT = "model/architecture.txt"
ARCHITECTURE_PLOT = "plots/{model}_architecture.png"
CURVES_PLOT = "plots/{model}_curves.png"
PLOT_DPI = 100
CURVE_PANEL_INCHES = (4.0, 2.8)
CURVE_COLUMNS = 3
BOX_WIDTH = 0.8  # of a branch's column in the architecture diagram
BOX_HEIGHT = 0.6  # of a layer's row


@dataclass(frozen=True)
class TrackingTarget:
    tracking_uri: str
    artifact_location: str | None  # only for the embedded store
    kind: str  # "env", "dagshub" or "local"


def tracking_kind(environ: Mapping[str, str] | None = None) -> str:
    """Which store the environment selects: "env", "dagshub" or "local" (no side effect)."""
    env = os.environ if environ is None else environ
    if env.get(TRACKING_URI_ENV):
        return "env"
    if env.get(DAGSHUB_OWNER_ENV) and env.get(DAGSHUB_NAME_ENV):
        return "dagshub"
    return "local"


def local_target(paths: Paths) -> TrackingTarget:
    """The embedded store: ``<root>/mlflow.db`` and ``<root>/mlruns`` (the server's store too)."""
    return TrackingTarget(f"sqlite:///{paths.root / 'mlflow.db'}", paths.mlruns.as_uri(), "local")


def connect_dagshub(owner: str, name: str) -> TrackingTarget:
    """``dagshub.init(..., mlflow=True)``: DagsHub checks the token and the repository (creating
    it when missing, as DagsHub documents) and sets MLflow's URI, user name and password in
    this process' environment. Needs the token in the environment: without one dagshub would
    start an interactive OAuth flow, which a pipeline stage or CI job cannot answer."""
    if not os.environ.get(DAGSHUB_TOKEN_ENV):
        raise ConfigError(
            f"{DAGSHUB_OWNER_ENV}/{DAGSHUB_NAME_ENV} select DagsHub ({owner}/{name}) but "
            f"{DAGSHUB_TOKEN_ENV} is not set: create a token at {DAGSHUB_TOKENS_PAGE} and export "
            f"it, or unset the DagsHub variables to track locally"
        )
    import dagshub

    # DagsHub's documented entry point; the package re-exports it without declaring so.
    dagshub.init(repo_owner=owner, repo_name=name, mlflow=True)  # type: ignore[attr-defined]
    return TrackingTarget(os.environ[TRACKING_URI_ENV], None, "dagshub")


def resolve_tracking(
    paths: Paths | None = None, environ: Mapping[str, str] | None = None
) -> TrackingTarget:
    """Where runs go. Selecting DagsHub calls ``dagshub.init`` (network); the other two only
    read ``environ``. After ``dagshub.init`` the environment holds its URI, so later calls in
    the same process reuse it without contacting DagsHub again."""
    env = os.environ if environ is None else environ
    kind = tracking_kind(env)
    if kind == "env":
        return TrackingTarget(env[TRACKING_URI_ENV], None, "env")
    if kind == "dagshub":
        return connect_dagshub(env[DAGSHUB_OWNER_ENV], env[DAGSHUB_NAME_ENV])
    return local_target(paths or Paths())


def configure_mlflow(experiment_name: str, paths: Paths | None = None) -> TrackingTarget:
    """Point MLflow at the resolved store and select (creating if needed) the experiment."""
    import mlflow

    target = resolve_tracking(paths)
    mlflow.set_tracking_uri(target.tracking_uri)
    if target.artifact_location and mlflow.get_experiment_by_name(experiment_name) is None:
        Path(target.artifact_location.removeprefix("file://")).mkdir(parents=True, exist_ok=True)
        mlflow.create_experiment(experiment_name, artifact_location=target.artifact_location)
    mlflow.set_experiment(experiment_name)
    return target


# -- what a run shows of its model ---------------------------------------------------------------
@dataclass(frozen=True)
class Layer:
    """A module that owns parameters: where it sits, what it is, the shapes it holds."""

    path: str  # e.g. "members.0.0"
    kind: str  # e.g. "Linear"
    shapes: dict[str, tuple[int, ...]]
    n_params: int

    @property
    def branch(self) -> str:
        """The column it is drawn in: the top-level child, plus the index of a ModuleList."""
        parts = self.path.split(".")
        if len(parts) > 1 and parts[1].isdigit():
            return ".".join(parts[:2])
        return parts[0] or "model"

    @property
    def label(self) -> str:
        weight = self.shapes.get("weight")
        if self.kind == "Linear" and weight is not None and len(weight) == 2:
            detail = f"{weight[1]} → {weight[0]}"
        else:
            detail = ", ".join(
                f"{name} {'×'.join(map(str, shape))}" for name, shape in self.shapes.items()
            )
        return f"{self.path or 'model'}: {self.kind}\n{detail}\n{self.n_params:,} params"


def parametrised_layers(model: torch.nn.Module) -> list[Layer]:
    """Every module holding parameters of its own, in registration order."""
    layers = []
    for path, module in model.named_modules():
        own = dict(module.named_parameters(recurse=False))
        if own:
            layers.append(
                Layer(
                    path,
                    type(module).__name__,
                    {name: tuple(p.shape) for name, p in own.items()},
                    sum(p.numel() for p in own.values()),
                )
            )
    return layers


def architecture_summary(model: torch.nn.Module) -> str:
    """The module tree as torch prints it, then each parametrised layer and the totals."""
    layers = parametrised_layers(model)
    rows = [
        f"  {layer.path or 'model':<24} {layer.kind:<12} {layer.n_params:>12,}  "
        + ", ".join(f"{name} {shape}" for name, shape in layer.shapes.items())
        for layer in layers
    ]
    buffers = sum(b.numel() for b in model.buffers())
    total = sum(layer.n_params for layer in layers)
    return "\n".join(
        [
            repr(model),
            "",
            "parametrised layers:",
            *rows,
            f"total parameters: {total:,}; buffer values: {buffers:,}",
        ]
    )


def architecture_figure(model: torch.nn.Module, title: str) -> Figure:
    """One column per branch (a member of an ensemble, a sub-network), its layers top to bottom,
    input to output, joined by arrows; drawn from the module itself, so it cannot go stale."""
    from matplotlib.figure import Figure

    branches: dict[str, list[Layer]] = {}
    for layer in parametrised_layers(model):
        branches.setdefault(layer.branch, []).append(layer)
    depth = max((len(layers) for layers in branches.values()), default=1)
    fig = Figure(figsize=(max(4.0, 2.6 * len(branches)), 1.6 * depth + 1.0))
    ax = fig.add_subplot()
    for column, (branch, layers) in enumerate(branches.items()):
        ax.text(column, 0.55, branch, ha="center", va="bottom", fontweight="bold", fontsize=9)
        for row, layer in enumerate(layers):
            ax.add_patch(_box(column, -row))
            ax.text(column, -row, layer.label, ha="center", va="center", fontsize=7)
            if row:
                ax.annotate(
                    "",
                    xy=(column, -row + BOX_HEIGHT / 2),
                    xytext=(column, -row + 1 - BOX_HEIGHT / 2),
                    arrowprops={"arrowstyle": "->"},
                )
    ax.set_xlim(-0.5, len(branches) - 0.5)
    ax.set_ylim(-depth + 0.5, 0.9)
    ax.axis("off")
    total = sum(layer.n_params for layers in branches.values() for layer in layers)
    fig.suptitle(f"{title}: {type(model).__name__}, {total:,} parameters")
    fig.tight_layout()
    return fig


def _box(x: float, y: float) -> FancyBboxPatch:
    from matplotlib.patches import FancyBboxPatch

    return FancyBboxPatch(
        (x - BOX_WIDTH / 2, y - BOX_HEIGHT / 2),
        BOX_WIDTH,
        BOX_HEIGHT,
        boxstyle="round,pad=0.02",
        facecolor="#dbe9f6",
        edgecolor="#2b5d8a",
    )


def curves_figure(history: History, title: str) -> Figure:
    """The training loss and every validation figure per epoch, one panel each, the best epoch
    marked."""
    from matplotlib.figure import Figure

    series = {"train loss": list(history.train_loss)}
    for figures in history.validation:
        for name, value in figures.items():
            series.setdefault(name, []).append(float(value))
    columns = min(CURVE_COLUMNS, len(series))
    rows = -(-len(series) // columns)
    width, height = CURVE_PANEL_INCHES
    fig = Figure(figsize=(width * columns, height * rows + 0.6))
    for index, (name, values) in enumerate(series.items(), start=1):
        ax = fig.add_subplot(rows, columns, index)
        ax.plot(range(1, len(values) + 1), values, color="tab:blue")
        if history.best_epoch:
            ax.axvline(history.best_epoch, color="grey", linestyle="--", linewidth=1)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{title}: learning curves (best epoch {history.best_epoch})")
    fig.tight_layout()
    return fig


def log_model_description(name: str, model: torch.nn.Module, history: History) -> None:
    """Into the active run: the architecture (text and diagram) and the learning curves."""
    import mlflow

    mlflow.log_text(architecture_summary(model), ARCHITECTURE_TEXT)
    for figure, artifact in (
        (architecture_figure(model, name.upper()), ARCHITECTURE_PLOT),
        (curves_figure(history, name.upper()), CURVES_PLOT),
    ):
        mlflow.log_figure(figure, artifact.format(model=name), save_kwargs={"dpi": PLOT_DPI})
