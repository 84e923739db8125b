"""Optuna tuning: search spaces, pruning, MLflow parent/child runs and writing params back."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
import yaml

from training.config import ConfigError, Paths, load_params
from training.monitoring.training_metrics import read_textfile
from training.monitoring.tuning_metrics import BEST_VALUE, IMPORTANCE, TRIALS, TUNING_TEXTFILE
from training.tune import (
    SAE_HIDDEN_LAYERS,
    TrialRunner,
    decode_params,
    default_study_name,
    sae_layer_choices,
    tune_command,
    with_model_params,
    write_best_params,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
TRIAL_EPOCHS = 2


@pytest.fixture
def params_file(tmp_path) -> Path:
    """A copy of the project's params.yaml with tiny trials."""
    path = tmp_path / "params.yaml"
    shutil.copy(REPO_ROOT / "params.yaml", path)
    text = path.read_text()
    trial_epochs = load_params(path).tune.trial_epochs
    path.write_text(text.replace(f"trial_epochs: {trial_epochs}", f"trial_epochs: {TRIAL_EPOCHS}"))
    assert load_params(path).tune.trial_epochs == TRIAL_EPOCHS
    return path


def test_seed_layer_choices_plus_the_configured_architecture():
    assert sae_layer_choices([50, 20]) == SAE_HIDDEN_LAYERS
    assert sae_layer_choices([500, 250]) == (*SAE_HIDDEN_LAYERS, "500-250")


def test_study_name_changes_with_the_categorical_space():
    base = load_params(REPO_ROOT / "params.yaml")
    assert default_study_name("rbm", base) == "tune-rbm"
    wide = with_model_params(base, "sae", {"hidden_layers": [500, 250]})
    assert default_study_name("sae", wide) == "tune-sae-500-250"


def test_decode_params_turns_layer_labels_into_lists():
    assert decode_params("sae", {"hidden_layers": "100-50", "lr": 0.1}) == {
        "hidden_layers": [100, 50],
        "lr": 0.1,
    }
    assert decode_params("rbm", {"batch_size": 50}) == {"batch_size": 50}


def test_write_best_params_edits_only_that_model(params_file):
    before = params_file.read_text()
    written = write_best_params(
        params_file,
        "sae",
        {"hidden_layers": [100, 50], "lr": 1e-05, "dropout": 0.123456, "weight_decay": 0.0},
    )
    after = params_file.read_text()
    assert written.sae.hidden_layers == [100, 50]
    assert written.sae.lr == pytest.approx(1e-05)  # PyYAML must read it as a float
    assert written.sae.dropout == pytest.approx(0.1235)  # 4 significant digits
    assert isinstance(yaml.safe_load(after)["sae"]["lr"], float)
    assert "hidden_layers: [100, 50]" in after  # flow style kept
    assert "n_items -> 100 -> 50 -> 100 -> n_items" in after  # its comment kept true
    # Everything outside the sae section is byte-for-byte unchanged, comments included.
    unchanged = [line for line in before.splitlines() if not line.startswith("  ")]
    assert unchanged == [line for line in after.splitlines() if not line.startswith("  ")]
    assert yaml.safe_load(after)["rbm"] == yaml.safe_load(before)["rbm"]


def test_write_best_params_refuses_invalid_values(params_file):
    before = params_file.read_text()
    with pytest.raises(ConfigError, match="dropout"):
        write_best_params(params_file, "sae", {"dropout": 1.5})
    assert params_file.read_text() == before
    assert not list(params_file.parent.glob(".*.tmp"))


def test_median_pruning_is_wired_to_the_epoch_callback(prepared, project_home, tmp_path):
    """A pruner that always prunes stops the trial right after its first reported epoch."""

    class PruneEverything(optuna.pruners.BasePruner):
        def prune(self, study, trial) -> bool:
            return True

    base = load_params(REPO_ROOT / "params.yaml")
    study = optuna.create_study(pruner=PruneEverything(), sampler=optuna.samplers.RandomSampler(0))
    study.optimize(TrialRunner("rbm", base, Paths(project_home), tmp_path, track=False), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert list(trial.intermediate_values) == [1]


@pytest.mark.slow
def test_two_trial_study_logs_child_runs_and_writes_params(
    prepared, private_home, mlflow_store, params_file
):
    import mlflow

    original = load_params(params_file)
    tune_command(
        model="sae",
        trials=2,
        timeout=None,
        params=params_file,
        write=True,
        track=True,
        study=None,
        storage=None,
    )

    study = optuna.load_study(
        study_name="tune-sae", storage=f"sqlite:///{private_home / 'optuna.db'}"
    )
    assert len(study.trials) == 2
    client = mlflow.MlflowClient()
    parents = mlflow.search_runs(
        experiment_names=["movierec"],
        filter_string="attributes.run_name = 'tune-sae'",
        output_format="list",
    )
    assert len(parents) == 1
    parent = parents[0]
    children = mlflow.search_runs(
        experiment_names=["movierec"],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        output_format="list",
    )
    assert sorted(c.info.run_name for c in children) == ["trial-0", "trial-1"]
    for child in children:
        history = client.get_metric_history(child.info.run_id, "train_loss")
        assert 1 <= len(history) <= TRIAL_EPOCHS
        assert "sae.lr" in child.data.params
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    assert "plots/param_importances.png" in artifacts
    # The same study as Prometheus figures (the dashboards' hyperparameter panels).
    figures = {
        (family.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in read_textfile(Paths(private_home).data / "metrics" / TUNING_TEXTFILE)
        for sample in family.samples
    }
    sae = (("model_type", "sae"),)
    assert figures[(BEST_VALUE, sae)] == pytest.approx(study.best_value)
    assert figures[(TRIALS, (*sae, ("state", "complete")))] == 2
    importances = {
        dict(labels)["parameter"]: value
        for (name, labels), value in figures.items()
        if name == IMPORTANCE
    }
    assert set(importances) <= set(study.best_params) and importances
    assert sum(importances.values()) == pytest.approx(1.0)

    written = load_params(params_file)  # still valid
    best = decode_params("sae", study.best_params)
    assert written.sae.hidden_layers == best["hidden_layers"]
    for key in ("lr", "weight_decay", "dropout"):
        assert getattr(written.sae, key) == pytest.approx(best[key], rel=1e-3)
    assert written.rbm == original.rbm and written.evaluate == original.evaluate
