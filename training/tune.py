"""Hyper-parameter search with Optuna: the seed's search spaces, median pruning on the per-epoch
validation figure, every trial an MLflow child run of a parent ``tune-<model>`` run, and the
best parameters optionally written back into ``params.yaml`` so ``dvc repro`` trains with them.

The study lives in ``optuna.db`` at the project root; each study's trials table and
parameter-importance plot are also kept in ``data/tune/<study>/``. Trials are scored on the
validation split carved from train (the model's early-stopping monitor, lower is better);
the test split stays untouched until ``evaluate``.
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from training.config import ConfigError, Params, Paths, get_logger, load_params
from training.monitoring.tuning_metrics import TUNING_TEXTFILE, record_study

if TYPE_CHECKING:
    from mlflow import ActiveRun
    from optuna import Study, Trial
    from ruamel.yaml.comments import CommentedSeq

    from training.models.base import EpochCallback

log = get_logger("tuning")
TUNABLE_MODELS = ("sae", "rbm")
STUDY_DB = "optuna.db"
# Pruning: no pruning before this many trials have finished, nor before this epoch of a trial.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EPOCHS = 5
# Best values are written back rounded to this many significant digits (tuning noise is larger).
WRITE_SIGNIFICANT_DIGITS = 4
ARCHITECTURE_COMMENT = "# n_items"

# The seed's search spaces, plus the single wide layer the models were tuned to (300).
# Categorical choices must be plain scalars for Optuna's storage, so SAE encoder sizes are
# labels like "50-20"; any other architecture set in params.yaml joins them.
SAE_HIDDEN_LAYERS = ("20-10", "50-20", "100-50", "300")
RBM_BATCH_SIZES = (50, 100, 200)
LR_RANGE = (1e-4, 1e-1)
WEIGHT_DECAY_RANGE = (1e-6, 1e-1)
DROPOUT_RANGE = (0.0, 0.5)
N_HIDDEN_RANGE = (100, 500)
CD_K_RANGE = (1, 20)


def layers_label(layers: list[int]) -> str:
    return "-".join(str(size) for size in layers)


def sae_layer_choices(configured: list[int]) -> tuple[str, ...]:
    label = layers_label(configured)
    return SAE_HIDDEN_LAYERS if label in SAE_HIDDEN_LAYERS else (*SAE_HIDDEN_LAYERS, label)


def suggest_sae(trial: Trial, base: Params) -> dict[str, Any]:
    label = trial.suggest_categorical("hidden_layers", sae_layer_choices(base.sae.hidden_layers))
    return {
        "hidden_layers": [int(size) for size in label.split("-")],
        "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        "weight_decay": trial.suggest_float("weight_decay", *WEIGHT_DECAY_RANGE, log=True),
        "dropout": trial.suggest_float("dropout", *DROPOUT_RANGE),
    }


def suggest_rbm(trial: Trial, base: Params) -> dict[str, Any]:
    return {
        "n_hidden": trial.suggest_int("n_hidden", *N_HIDDEN_RANGE),
        "lr": trial.suggest_float("lr", *LR_RANGE, log=True),
        "cd_k": trial.suggest_int("cd_k", *CD_K_RANGE),
        "batch_size": trial.suggest_categorical("batch_size", RBM_BATCH_SIZES),
    }


SEARCH_SPACES: dict[str, Callable[[Trial, Params], dict[str, Any]]] = {
    "sae": suggest_sae,
    "rbm": suggest_rbm,
}


def decode_params(model: str, values: dict[str, Any]) -> dict[str, Any]:
    """Optuna's stored values -> params.yaml values (e.g. "50-20" -> [50, 20])."""
    decoded = dict(values)
    if model == "sae" and "hidden_layers" in decoded:
        decoded["hidden_layers"] = [int(s) for s in str(decoded["hidden_layers"]).split("-")]
    return decoded


def with_model_params(base: Params, model: str, values: dict[str, Any]) -> Params:
    """A validated copy of ``base`` with ``values`` replacing that model's keys."""
    raw = base.model_dump()
    raw[model] = {**raw[model], **values}
    return Params.model_validate(raw)


def default_study_name(model: str, base: Params) -> str:
    """Per model; a configured SAE architecture outside the seed's choices changes the
    categorical space, which an existing Optuna study refuses, so it gets its own study."""
    if model == "sae" and layers_label(base.sae.hidden_layers) not in SAE_HIDDEN_LAYERS:
        return f"tune-sae-{layers_label(base.sae.hidden_layers)}"
    return f"tune-{model}"


@dataclass
class TuneResult:
    study_name: str
    storage: str
    best_value: float | None
    best_params: dict[str, Any]
    n_trials: int
    states: dict[str, int]
    parent_run_id: str | None
    importance_plot: Path | None


class TrialRunner:
    """The objective: train one sampled configuration for ``trial_epochs``, reporting the
    validation monitor each epoch so the pruner can stop hopeless trials."""

    def __init__(self, model: str, base: Params, paths: Paths, workdir: Path, track: bool) -> None:
        from training.models import RECOMMENDERS

        self.model = model
        self.base = base
        self.paths = paths
        self.workdir = workdir  # trial checkpoints, never the pipeline's own
        self.track = track
        self.monitor = RECOMMENDERS[model].monitor

    def __call__(self, trial: Trial) -> float:
        import optuna

        sampled = SEARCH_SPACES[self.model](trial, self.base)
        trial_params = with_model_params(self.base, self.model, sampled)

        def report(epoch: int, loss: float, figures: dict[str, float]) -> None:
            trial.report(figures[self.monitor], epoch)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        run = self._start_child(trial, sampled)
        status = "FAILED"
        try:
            value = self._train(trial, trial_params, report)
            status = "FINISHED"
            return value
        except optuna.TrialPruned:
            status = "KILLED"
            if run is not None:
                import mlflow

                mlflow.set_tag("optuna.state", "pruned")
            raise
        finally:
            if run is not None:
                import mlflow

                mlflow.end_run(status=status)

    def _start_child(self, trial: Trial, sampled: dict[str, Any]) -> ActiveRun | None:
        if not self.track:
            return None
        import mlflow

        run = mlflow.start_run(run_name=f"trial-{trial.number}", nested=True)
        mlflow.set_tags(
            {
                "optuna.trial": trial.number,
                "optuna.study": trial.study.study_name,
                "model": self.model,
            }
        )
        mlflow.log_params({f"{self.model}.{k}": v for k, v in sampled.items()})
        return run

    def _train(self, trial: Trial, trial_params: Params, report: EpochCallback) -> float:
        from training.train import train_model

        # A trial never overwrites the pipeline's checkpoint; per-epoch figures reach the active
        # child run through the recommender's own log_metrics.
        result = train_model(
            self.model,
            trial_params,
            self.paths,
            track=False,
            progress=False,
            on_epoch=report,
            epochs=self.base.tune.trial_epochs,
            checkpoint=self.workdir / f"trial-{trial.number}.pt",
        )
        value = float(result.history.best_value)
        trial.set_user_attr("best_epoch", result.history.best_epoch)
        if self.track:
            import mlflow

            mlflow.log_metrics(
                {
                    f"best_{self.monitor}": value,
                    "best_epoch": result.history.best_epoch,
                    "seconds_total": result.history.seconds_total,
                }
            )
            mlflow.set_tag("optuna.state", "complete")
        return value


def plot_importances(importances: dict[str, float], path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(importances)[::-1]  # most important on top
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(names) + 1.5))
    ax.barh(names, [importances[n] for n in names], color="tab:blue")
    ax.set_xlabel("importance (fANOVA)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _importances(study: Study) -> dict[str, float] | None:
    from optuna.importance import get_param_importances
    from optuna.trial import TrialState

    if len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))) < 2:
        return None
    try:
        return get_param_importances(study)
    except (ValueError, RuntimeError) as exc:  # e.g. every trial sampled the same values
        log.warning("parameter importances unavailable: %s", exc)
        return None


def _summarise(
    study: Study, importances: dict[str, float] | None, outputs: Path, track: bool
) -> Path | None:
    """Trials table and importance plot into ``outputs`` and, with tracking, onto the parent run
    with the best trial; returns the importance plot, if there is one."""
    plot = None
    if importances:
        plot = plot_importances(
            importances,
            outputs / "param_importances.png",
            f"{study.study_name}: parameter importance",
        )
    table = outputs / "trials.csv"
    study.trials_dataframe().to_csv(table, index=False)
    if not track:
        return plot
    import mlflow

    mlflow.log_artifact(str(table))
    if plot is not None and importances:
        mlflow.log_artifact(str(plot), artifact_path="plots")
        mlflow.log_metrics({f"importance.{k}": v for k, v in importances.items()})
    if _has_best(study):
        mlflow.log_params({f"best.{k}": v for k, v in study.best_params.items()})
        mlflow.log_metrics({"best_value": study.best_value, "best_trial": study.best_trial.number})
    return plot


def _has_best(study: Study) -> bool:
    from optuna.trial import TrialState

    return bool(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))


def run_study(
    model: str,
    base: Params,
    paths: Paths | None = None,
    n_trials: int | None = None,
    timeout_s: int | None = None,
    storage: str | None = None,
    study_name: str | None = None,
    track: bool = True,
) -> TuneResult:
    """Add ``n_trials`` trials (or as many as fit in ``timeout_s``) to the model's study."""
    import optuna

    if model not in TUNABLE_MODELS:
        raise ConfigError(f"unknown model {model!r}; choose one of {TUNABLE_MODELS}")
    paths = paths or Paths()
    storage = storage or f"sqlite:///{paths.root / STUDY_DB}"
    study_name = study_name or default_study_name(model, base)
    n_trials = n_trials or base.tune.n_trials
    timeout_s = timeout_s or base.tune.timeout_s
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction="minimize",
        load_if_exists=True,
        sampler=optuna.samplers.TPESampler(seed=base.train.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
        ),
    )
    parent = None
    if track:
        import mlflow

        from training.tracking import configure_mlflow

        configure_mlflow(base.mlflow.experiment_name, paths)
        parent = mlflow.start_run(run_name=f"tune-{model}")
        mlflow.set_tags(
            {"stage": "tune", "model": model, "optuna.study": study_name, "optuna.storage": storage}
        )
        mlflow.log_params(
            {
                "n_trials": n_trials,
                "timeout_s": timeout_s,
                "trial_epochs": base.tune.trial_epochs,
                "monitor": _monitor(model),
            }
        )
    outputs = paths.data / "tune" / study_name
    outputs.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(prefix="movierec-tune-") as checkpoints:
            study.optimize(
                TrialRunner(model, base, paths, Path(checkpoints), track),
                n_trials=n_trials,
                timeout=timeout_s,
                gc_after_trial=True,
            )
        importances = _importances(study)
        plot = _summarise(study, importances, outputs, track)
    finally:
        if parent is not None:
            import mlflow

            mlflow.end_run()
    states: dict[str, int] = {}
    for trial in study.trials:
        states[trial.state.name.lower()] = states.get(trial.state.name.lower(), 0) + 1
    best_value = study.best_value if _has_best(study) else None
    record_study(
        paths.data / "metrics" / TUNING_TEXTFILE, model, importances or {}, best_value, states
    )
    return TuneResult(
        study_name=study_name,
        storage=storage,
        best_value=best_value,
        best_params=decode_params(model, study.best_params) if best_value is not None else {},
        n_trials=len(study.trials),
        states=states,
        parent_run_id=parent.info.run_id if parent else None,
        importance_plot=plot,
    )


def _monitor(model: str) -> str:
    from training.models import RECOMMENDERS

    return RECOMMENDERS[model].monitor


# -- writing the best parameters back ------------------------------------------------------------
def _yaml_value(value: Any) -> Any:
    """Floats rounded and spelled so PyYAML (YAML 1.1, used by load_params) reads them as
    floats: it needs a dot in the mantissa, "1.0e-05" rather than "1e-05"."""
    from ruamel.yaml import YAML

    if isinstance(value, bool) or not isinstance(value, float):
        return value
    text = f"{value:.{WRITE_SIGNIFICANT_DIGITS}g}"
    mantissa, _, exponent = text.partition("e")
    if exponent and "." not in mantissa:
        text = f"{mantissa}.0e{exponent}"
    elif not exponent and "." not in mantissa:
        text = f"{mantissa}.0"
    return YAML().load(text)


def _describe_architecture(layers: CommentedSeq, sizes: list[int]) -> None:
    """params.yaml annotates the SAE layers with the full architecture; keep that comment true."""
    comment = layers.ca.comment[0] if layers.ca.comment else None
    if comment is not None and comment.value.lstrip().startswith(ARCHITECTURE_COMMENT):
        mirrored = [*sizes, *sizes[-2::-1]]
        comment.value = f"{ARCHITECTURE_COMMENT} -> {' -> '.join(map(str, mirrored))} -> n_items\n"


def write_best_params(path: Path, model: str, values: dict[str, Any]) -> Params:
    """Replace only ``model``'s keys in ``path``, keeping comments, order and other sections;
    the result is validated before it replaces the file. Returns the validated params."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yaml = YAML()
    yaml.width = 4096  # never re-wrap long lines
    try:
        document = yaml.load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    if document is None:
        document = {}
    section = document.setdefault(model, {})
    for key, value in values.items():
        if isinstance(value, list):
            current = section.get(key)
            if isinstance(current, CommentedSeq):
                current[:] = value  # in place: keeps the flow style and its comment
                if key == "hidden_layers":
                    _describe_architecture(current, value)
                continue
            value = CommentedSeq(value)
            value.fa.set_flow_style()
        section[key] = _yaml_value(value)
    buffer = io.StringIO()
    yaml.dump(document, buffer)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(buffer.getvalue(), encoding="utf-8")
    try:
        validated = load_params(tmp)
    except ConfigError:
        tmp.unlink()
        raise
    tmp.replace(path)
    return validated


# -- command ---------------------------------------------------------------------------------------
def tune_command(
    model: Annotated[str, typer.Option(help="sae or rbm.")] = "sae",
    trials: Annotated[
        int | None, typer.Option(min=1, help="Trials; default params.tune.n_trials.")
    ] = None,
    timeout: Annotated[
        int | None, typer.Option(min=1, help="Seconds; default params.tune.timeout_s.")
    ] = None,
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    write: Annotated[bool, typer.Option(help="Write the best params into --params.")] = False,
    track: Annotated[bool, typer.Option(help="Log parent and trial runs to MLflow.")] = True,
    study: Annotated[str | None, typer.Option(help="Study name; default tune-<model>.")] = None,
    storage: Annotated[
        str | None, typer.Option(help="Optuna storage URL; default sqlite:///optuna.db.")
    ] = None,
) -> None:
    """Optuna search over the model's hyper-parameters with median pruning."""
    if model not in TUNABLE_MODELS:
        raise typer.BadParameter(
            f"unknown model {model!r}; choose sae or rbm", param_hint="--model"
        )
    base = load_params(params)
    result = run_study(model, base, Paths(), trials, timeout, storage, study, track)
    summary: dict[str, Any] = {
        "study": result.study_name,
        "storage": result.storage,
        "trials": result.n_trials,
        "states": result.states,
        "best_value": result.best_value,
        "best_params": result.best_params,
        "mlflow_parent_run": result.parent_run_id,
    }
    if write:
        if not result.best_params:
            raise ConfigError(f"study {result.study_name} has no completed trial; nothing written")
        write_best_params(params, model, result.best_params)
        summary["written_to"] = str(params)
    typer.echo(json.dumps(summary, default=str))
