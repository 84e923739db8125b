"""``movierec retrain``: learn from what the web app stored, and promote only a model that is not
worse than the champion.

Each run: snapshot the app's ratings (training.data.app_snapshot), train a candidate on the
snapshot (training.train: tracked and registered in MLflow, its checkpoint under
``data/candidates/``, never over the DVC pipeline's), score the candidate and the champion on the
same snapshot with the one protocol (training.evaluate; the SAE's served figure from its
TorchServe form), and let the gate (training.gate) decide. The champion alias moves only on
"promoted"; a rejected candidate stays registered, tagged with the reason. The report
(``data/retrain.json``) says which way each model went; CI releases the promoted ones.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import torch
import typer

from training.config import Params, Paths, app_database_url, get_logger, load_params
from training.data.app_snapshot import SnapshotSummary, snapshot_app
from training.data.preprocess import PreparedData, load_prepared
from training.evaluate import evaluate_model
from training.export.torchserve import EXAMPLE_BATCH, script_for_serving
from training.gate import NDCG, PROMOTED, RMSE, SERVED_NDCG, GateDecision, judge
from training.metrics.ranking import headline_k, ranking_metrics
from training.models import load_checkpoint
from training.models.base import BaseRecommender
from training.registry import (
    champion_version,
    download_checkpoint,
    registered_name,
    registry_errors,
    set_champion,
    version_of_run,
)
from training.train import MODEL_NAMES, train_model

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = get_logger("training")
CANDIDATES = "candidates"  # data/candidates/<model>.pt: the latest candidate's checkpoint
REPORT_FILE = "retrain.json"
# Tags on a candidate's model version (and run): the gate's outcome, why, and against what.
GATE_TAG = "gate"
GATE_REASON_TAG = "gate_reason"
GATE_CHAMPION_TAG = "gate_champion_version"


class SnapshotPaths(Paths):
    """The project's paths, with the app snapshot as the prepared dataset a run trains on."""

    def __init__(self, root: Path, snapshot: Path) -> None:
        super().__init__(root)
        self.snapshot = snapshot

    def prepared(self, dataset: str) -> Path:
        return self.snapshot


@dataclass(frozen=True)
class GateOutcome:
    model: str
    registered_name: str
    candidate_version: str
    candidate_run_id: str | None
    champion_version: str | None  # the champion the candidate was judged against
    outcome: str  # training.gate.PROMOTED or REJECTED
    reason: str
    candidate: dict[str, float]
    champion: dict[str, float] | None


def gate_figures(
    recommender: BaseRecommender, data: PreparedData, params: Params
) -> dict[str, Any]:
    """The figures the gate compares: test RMSE and NDCG@k of the trained model (the evaluation
    protocol) and, for a rating model, NDCG@k of its served TorchServe form."""
    k = headline_k(params.evaluate.k_values)
    threshold = params.evaluate.relevance_threshold
    result = evaluate_model(
        recommender, data.train, data.test, k_values=params.evaluate.k_values, threshold=threshold
    )
    figures = {NDCG: float(result["ranking"][f"ndcg@{k}"])}
    if recommender.rating_scores:
        figures[RMSE] = float(result["rating"]["rmse"])
        served = script_for_serving(recommender.model, data.train[:EXAMPLE_BATCH])
        with torch.inference_mode():
            _, ranking = served(data.train)
        figures[SERVED_NDCG] = float(
            ranking_metrics(ranking, data.train, data.test, [k], threshold)[f"ndcg@{k}"]
        )
    return {name: round(value, 6) for name, value in figures.items()}


def gate_candidate(
    client: MlflowClient,
    model: str,
    candidate: ModelVersion,
    candidate_checkpoint: Path,
    champion: ModelVersion | None,
    data: PreparedData,
    params: Params,
) -> GateOutcome:
    """Score the candidate and the champion on ``data``, decide, tag the candidate, and move the
    alias when the gate says so."""
    alias = params.mlflow.best_alias
    candidate_figures = gate_figures(load_checkpoint(candidate_checkpoint), data, params)
    champion_figures = None
    if champion is not None:
        with tempfile.TemporaryDirectory(prefix="movierec-champion-") as tmp:
            path = download_checkpoint(client, champion, model, Path(tmp), alias)
            champion_figures = gate_figures(load_checkpoint(path), data, params)
    decision: GateDecision = judge(model, candidate_figures, champion_figures, params.gate)
    tags = {
        GATE_TAG: decision.outcome,
        GATE_REASON_TAG: decision.summary,
        GATE_CHAMPION_TAG: str(champion.version) if champion is not None else "none",
    }
    for key, value in tags.items():
        client.set_model_version_tag(candidate.name, candidate.version, key, value)
        if candidate.run_id:
            client.set_tag(candidate.run_id, key, value)
    if candidate.run_id:
        for name, value in candidate_figures.items():
            client.log_metric(candidate.run_id, f"gate_{name}", value)
    if decision.promote:
        set_champion(client, candidate.name, alias, candidate.version)
    log.info(
        "%s version %s %s (%s): %s",
        candidate.name,
        candidate.version,
        decision.outcome,
        alias,
        decision.summary,
    )
    return GateOutcome(
        model=model,
        registered_name=candidate.name,
        candidate_version=str(candidate.version),
        candidate_run_id=candidate.run_id,
        champion_version=str(champion.version) if champion is not None else None,
        outcome=decision.outcome,
        reason=decision.summary,
        candidate=candidate_figures,
        champion=champion_figures,
    )


def retrain(
    models: tuple[str, ...],
    params: Params,
    paths: Paths,
    database_url: str,
    epochs: int | None = None,
    track_snapshot: bool = True,
) -> tuple[SnapshotSummary, list[GateOutcome]]:
    """Snapshot, then train, register and gate each model in turn."""
    import mlflow

    from training.tracking import configure_mlflow

    snapshot = snapshot_app(database_url, paths, params.data.dataset, track=track_snapshot)
    data = load_prepared(snapshot.folder)
    snapshot_paths = SnapshotPaths(paths.root, snapshot.folder)
    configure_mlflow(params.mlflow.experiment_name, paths)
    client = mlflow.MlflowClient()
    outcomes = []
    for model in models:
        name = registered_name(params, model)
        # Read before training: registering a model's first version makes it the champion.
        champion = champion_version(client, name, params.mlflow.best_alias)
        checkpoint = paths.data / CANDIDATES / f"{model}.pt"
        result = train_model(
            model, params, snapshot_paths, progress=False, epochs=epochs, checkpoint=checkpoint
        )
        assert result.run_id is not None  # tracked runs have one
        client.set_tag(result.run_id, "data_snapshot", snapshot.fingerprint)
        client.set_tag(result.run_id, "app_ratings_added", str(snapshot.n_ratings_added))
        candidate = version_of_run(client, name, result.run_id)
        outcomes.append(
            gate_candidate(client, model, candidate, checkpoint, champion, data, params)
        )
    return snapshot, outcomes


def report(snapshot: SnapshotSummary, outcomes: list[GateOutcome]) -> dict[str, Any]:
    """What the run did, as CI and people read it: the snapshot, then each model's outcome."""
    return {
        "snapshot": snapshot.to_dict(),
        "models": [asdict(outcome) for outcome in outcomes],
        "promoted": [o.model for o in outcomes if o.outcome == PROMOTED],
    }


def retrain_command(
    model: Annotated[str, typer.Option(help="sae, rbm or all.")] = "all",
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    database_url: Annotated[
        str | None,
        typer.Option(help="The web app's database; default DATABASE_URL, else its SQLite file."),
    ] = None,
    epochs: Annotated[
        int | None, typer.Option(min=1, help="Override the epochs in params.")
    ] = None,
    report_file: Annotated[
        Path | None, typer.Option("--report", help="Where the outcome goes; data/retrain.json.")
    ] = None,
    dvc: Annotated[bool, typer.Option(help="Record the snapshot with `dvc add`.")] = True,
) -> None:
    """Snapshot the app's ratings, retrain, and move the champion only past the gate."""
    names = MODEL_NAMES if model == "all" else (model,)
    if any(name not in MODEL_NAMES for name in names):
        raise typer.BadParameter(f"unknown model {model!r}; choose sae, rbm or all")
    loaded = load_params(params)
    paths = Paths()
    with registry_errors():
        snapshot, outcomes = retrain(
            names, loaded, paths, database_url or app_database_url(paths), epochs, dvc
        )
    summary = report(snapshot, outcomes)
    target = report_file or paths.data / REPORT_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    typer.echo(
        f"snapshot: {snapshot.n_users_added} app users, {snapshot.n_ratings_added} ratings added"
    )
    for outcome in outcomes:
        typer.echo(
            f"{outcome.model}: version {outcome.candidate_version} {outcome.outcome} "
            f"(champion was {outcome.champion_version or 'none'}): {outcome.reason}"
        )
    typer.echo(f"report: {target}")
