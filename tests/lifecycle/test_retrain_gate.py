"""``movierec retrain``'s gate on a real MLflow registry: a better candidate takes the champion
alias, a worse one (one epoch) stays registered, tagged rejected, and changes nothing served."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.lifecycle.registry_store import LifecycleStore, lifecycle_store
from training.cli import app as movierec_app
from training.config import REPO_ROOT, GateParams
from training.gate import NDCG, PROMOTED, REJECTED, RMSE, SERVED_NDCG, judge

PARAMS = REPO_ROOT / "params.yaml"
WORSE_EPOCHS = 1  # a candidate trained this briefly is clearly worse than the session's model
SAE_NAME = "movierec-sae"


@pytest.fixture(scope="module")
def store(project_home, tmp_path_factory) -> LifecycleStore:
    with lifecycle_store(project_home, tmp_path_factory.mktemp("gate")) as found:
        yield found


@pytest.fixture(scope="module")
def promoted(store, checkpoints) -> dict:
    """A one-epoch SAE retrained into an empty registry (the champion, nothing to beat), then
    the session's SAE (FIXTURE_EPOCHS) registered and put through the gate against it."""
    import mlflow

    from training.data.preprocess import load_prepared
    from training.registry import champion_version, register_checkpoint
    from training.retrain import gate_candidate, retrain
    from training.tracking import configure_mlflow

    params = store.params
    snapshot, (first,) = retrain(
        ("sae",), params, store.paths, store.database_url, WORSE_EPOCHS, track_snapshot=False
    )
    configure_mlflow(params.mlflow.experiment_name, store.paths)
    client = mlflow.MlflowClient()
    _, version = register_checkpoint(checkpoints["sae"], params, "candidate-sae")
    after_registering = champion_version(client, SAE_NAME, params.mlflow.best_alias)
    outcome = gate_candidate(
        client,
        "sae",
        client.get_model_version(SAE_NAME, version),
        checkpoints["sae"],
        after_registering,
        load_prepared(snapshot.folder),
        params,
    )
    return {
        "first": first,
        "after_registering": after_registering,
        "outcome": outcome,
        "client": client,
    }


@pytest.mark.slow  # trains and registers models
def test_the_first_candidate_is_champion_and_registering_moves_no_alias(promoted):
    first = promoted["first"]
    assert (first.outcome, first.champion_version, first.reason) == (
        PROMOTED,
        None,
        "no champion yet",
    )
    assert str(promoted["after_registering"].version) == first.candidate_version


@pytest.mark.slow  # trains and registers models
def test_the_gate_promotes_a_better_candidate(promoted, store):
    outcome, client = promoted["outcome"], promoted["client"]
    assert outcome.outcome == PROMOTED, outcome.reason
    assert outcome.candidate[RMSE] < outcome.champion[RMSE]
    assert outcome.candidate[SERVED_NDCG] > outcome.champion[SERVED_NDCG]
    champion = client.get_model_version_by_alias(SAE_NAME, store.params.mlflow.best_alias)
    assert str(champion.version) == outcome.candidate_version
    assert champion.tags["gate"] == PROMOTED


def _exported_checkpoint(store: LifecycleStore, folder: Path) -> tuple[str, str, str]:
    """What ``export --from-registry`` builds from: the version, its run, the weights' hash."""
    from training.export.from_registry import download_checkpoints
    from training.models import load_checkpoint

    path = download_checkpoints(store.params, ("sae",), folder)["sae"]
    recommender = load_checkpoint(path)
    reference = recommender.extra["registry"]
    weights = hashlib.sha256()
    for tensor in recommender.model.state_dict().values():
        weights.update(tensor.cpu().numpy().tobytes())
    return reference["version"], reference["run_id"], weights.hexdigest()


@pytest.mark.slow  # trains and registers models
def test_a_worse_candidate_is_rejected_and_nothing_served_changes(promoted, store, tmp_path):
    client = promoted["client"]
    alias = store.params.mlflow.best_alias
    before = _exported_checkpoint(store, tmp_path / "before")
    report = tmp_path / "retrain.json"

    result = CliRunner().invoke(
        movierec_app,
        [
            "retrain",
            "--model",
            "sae",
            "--epochs",
            str(WORSE_EPOCHS),
            "--params",
            str(PARAMS),
            "--database-url",
            store.database_url,
            "--no-dvc",
            "--report",
            str(report),
        ],
        prog_name="movierec",
    )

    assert result.exit_code == 0, result.output
    summary = json.loads(report.read_text())
    (outcome,) = summary["models"]
    assert outcome["outcome"] == REJECTED and summary["promoted"] == []
    assert "rmse" in outcome["reason"] and "beyond tolerance" in outcome["reason"]
    assert f"version {outcome['candidate_version']} rejected" in result.stdout
    rejected = client.get_model_version(SAE_NAME, outcome["candidate_version"])
    assert rejected.tags["gate"] == REJECTED and rejected.tags["gate_reason"] == outcome["reason"]
    champion = client.get_model_version_by_alias(SAE_NAME, alias)
    assert str(champion.version) == promoted["outcome"].candidate_version  # unchanged
    assert _exported_checkpoint(store, tmp_path / "after") == before


@pytest.mark.parametrize(
    ("candidate", "promote"),
    [({NDCG: 0.196}, True), ({NDCG: 0.2}, True), ({NDCG: 0.19}, False)],
)
def test_the_rbm_gate_allows_its_tolerance_and_no_more(candidate, promote):
    gate = GateParams.model_validate({"rbm": {"ndcg_tolerance": 0.005}})
    decision = judge("rbm", candidate, {NDCG: 0.2}, gate)
    assert decision.promote is promote
    assert ("beyond" in decision.summary) is not promote


def test_the_sae_gate_needs_both_figures():
    gate = GateParams()
    champion = {RMSE: 0.92, SERVED_NDCG: 0.45}
    worse_ranking = judge("sae", {RMSE: 0.91, SERVED_NDCG: 0.40}, champion, gate)
    assert not worse_ranking.promote
    assert "served_ndcg 0.4000 vs champion 0.4500" in worse_ranking.summary
