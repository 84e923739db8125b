"""The evaluator, the baselines, the report and the `movierec evaluate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from training.baselines import BiasBaseline, MostPopular
from training.evaluate import evaluate_scores, flat_figures, headline_k
from training.report import render_markdown, write_report

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN = torch.tensor([[5.0, 0, 0, 0, 0], [0, 0, 3, 0, 0], [0, 5, 0, 0, 0]])
TEST = torch.tensor([[0.0, 4, 0, 5, 2], [0, 0, 0, 0, 4], [3, 0, 0, 0, 0]])
SCORES = torch.tensor([[4.0, 1.1, 2.5, 3.8, 3.9], [1.2, 3.9, 4.0, 1.1, 2.5], [1, 2, 3, 4, 5]])
GENRES = [["A", "B"], ["B"], ["C"], [], []]


def test_evaluate_scores_sections_and_rating_metrics_only_for_ratings():
    ratings = evaluate_scores(
        SCORES, TRAIN, TEST, rating_scores=True, k_values=[2, 4], threshold=4, item_genres=GENRES
    )
    ranks = evaluate_scores(
        SCORES, TRAIN, TEST, rating_scores=False, k_values=[2, 4], threshold=4, item_genres=GENRES
    )
    assert "rating" in ratings and "rating" not in ranks
    assert ratings["ranking"] == ranks["ranking"]
    # Same lists as the hand example in test_ranking_metrics: P@2 = 0.5, P@4 = 0.375.
    assert ranks["ranking"]["precision@2"] == pytest.approx(0.5)
    assert ranks["ranking"]["precision@4"] == pytest.approx(0.375)
    assert ranks["ranking"]["hit_rate@2"] == 1.0
    # Evaluated users' top-2: u0 [4, 3], u1 [1, 4] -> items {1, 3, 4} of 5.
    assert ranks["beyond_accuracy"]["coverage@2"] == pytest.approx(0.6)
    # Both lists pair genre-less items or a genre-less with {B}: every distance is 0 or 1.
    assert ranks["beyond_accuracy"]["diversity@2"] == pytest.approx(0.5)
    assert ranks["cold_start"]["k"] == 4  # nearest configured K to 10
    assert {"click_through@2", "conversion@2", "satisfaction@2"} <= set(ranks["business"])


def test_evaluate_scores_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="same shape"):
        evaluate_scores(SCORES[:, :4], TRAIN, TEST)


def test_flat_figures_are_scalars_without_nan_or_counts():
    result = evaluate_scores(SCORES, TRAIN, TEST, rating_scores=True, k_values=[2])
    flat = flat_figures(result)
    assert {"rmse", "mae", "r2", "ndcg@2", "coverage@2", "click_through@2"} <= set(flat)
    assert "n_users" not in flat and "diversity@2" not in flat  # no genres given
    assert all(isinstance(v, float) and not math.isnan(v) for v in flat.values())


def test_headline_k_prefers_ten():
    assert headline_k([5, 10, 20]) == 10
    assert headline_k([5, 20]) == 5


def test_most_popular_ranks_by_number_of_raters():
    train = torch.tensor([[5.0, 1, 0], [3, 0, 0], [0, 2, 4], [4, 0, 0]])
    scores = MostPopular().fit(train).predict(torch.zeros(2, 3))
    assert scores.tolist() == [[3.0, 2.0, 1.0]] * 2


def test_bias_baseline_by_hand():
    # μ = (5 + 3 + 4) / 3 = 4. One sweep, no regularisation: user biases 0 (item biases 0),
    # item biases: item 0 ((5-4) + (4-4)) / 2 = 0.5, item 1 (3-4) / 1 = -1.
    train = torch.tensor([[5.0, 3.0], [4.0, 0.0]])
    model = BiasBaseline(item_reg=0.0, user_reg=0.0, sweeps=1).fit(train)
    assert float(model.global_mean) == pytest.approx(4.0)
    assert model.item_bias.tolist() == pytest.approx([0.5, -1.0])
    # Folded-in user biases: u0 ((5-4.5) + (3-3)) / 2 = 0.25, u1 (4-4.5) / 1 = -0.5.
    assert model.predict(train).tolist() == [pytest.approx([4.75, 3.25]), pytest.approx([4.0, 2.5])]
    # A user with no ratings gets the item baseline.
    assert model.predict(torch.zeros(1, 2)).tolist() == [pytest.approx([4.5, 3.0])]


def test_bias_baseline_predictions_are_clamped_to_stars():
    train = torch.tensor([[5.0, 5.0, 1.0], [5.0, 5.0, 1.0]])
    predicted = BiasBaseline(0.0, 0.0).fit(train).predict(train * 2)
    assert float(predicted.max()) <= 5.0 and float(predicted.min()) >= 1.0


def _tiny_report(subset: str | None) -> dict:
    settings = {"k_values": [2, 4], "threshold": 4.0, "item_genres": GENRES}
    return {
        "dataset": "ml-1m",
        "split": "random",
        "subset": subset,
        "n_users": 3,
        "n_items": 5,
        "n_train": 3,
        "n_test": 5,
        "protocol": {
            "k_values": [2, 4],
            "relevance_threshold": 4,
            "headline_k": 4,
            "candidates": "c",
            "relevant": "r",
            "users": "u",
        },
        "training_runs": {},
        "models": {
            "sae": evaluate_scores(SCORES, TRAIN, TEST, rating_scores=True, **settings),
            "most_popular": evaluate_scores(SCORES.flip(1), TRAIN, TEST, **settings),
        },
    }


def test_report_files_and_plots(tmp_path):
    files = write_report(_tiny_report(None), tmp_path)
    saved = json.loads((tmp_path / "evaluation.json").read_text())
    assert set(saved["models"]) == {"sae", "most_popular"}
    markdown = (tmp_path / "evaluation.md").read_text()
    assert "| SAE |" in markdown and "| Most popular |" in markdown
    assert "Subset" not in markdown
    html = (tmp_path / "evaluation.html").read_text()
    assert "<table>" in html and 'src="plots/ranking_at_4.png"' in html
    plots = sorted(p.name for p in (tmp_path / "plots").glob("*.png"))
    assert {
        "ranking_at_4.png",
        "rating.png",
        "cold_start_users.png",
        "cold_start_items.png",
    } <= set(plots)
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (tmp_path / "plots").iterdir())
    assert files["markdown"] == tmp_path / "evaluation.md"


def test_report_labels_subset_results():
    markdown = render_markdown(_tiny_report("users 1-2999"), [])
    assert "**Subset:**" in markdown and "users 1-2999" in markdown


@pytest.mark.slow
def test_evaluate_command_writes_report_metrics_and_mlflow_run(
    private_home, checkpoints, mlflow_store
):
    """The DVC stage's command on the fixture checkpoints, re-saved as if their training runs
    had been tracked, so the evaluate run must point at them."""
    import mlflow
    from typer.testing import CliRunner

    from training.cli import app
    from training.config import Paths
    from training.models import load_checkpoint

    home = private_home
    paths = Paths(home)
    train_runs = {}
    for name, path in checkpoints.items():
        with mlflow.start_run(run_name=f"train-{name}") as run:
            train_runs[name] = run.info.run_id
        recommender = load_checkpoint(path)
        recommender.save_model(
            paths.checkpoints / f"{name}.pt",
            {**recommender.extra, "mlflow_run_id": run.info.run_id},
        )

    result = CliRunner().invoke(app, ["evaluate", "--params", str(REPO_ROOT / "params.yaml")])
    assert result.exit_code == 0, result.output
    assert "| SAE |" in result.output

    figures = json.loads((home / "data" / "metrics" / "evaluation.json").read_text())
    assert set(figures) == {"sae", "rbm", "most_popular", "bias"}
    assert {"rmse", "mae", "ndcg@10"} <= set(figures["sae"]) and "rmse" in figures["bias"]
    assert "rmse" not in figures["rbm"] and "rmse" not in figures["most_popular"]
    assert figures["most_popular"]["ndcg@10"] == pytest.approx(0.2448, abs=1e-3)  # issue's figure
    reports = home / "data" / "reports"
    assert {"evaluation.json", "evaluation.md", "evaluation.html"} <= {
        p.name for p in reports.iterdir()
    }

    runs = mlflow.search_runs(
        experiment_names=["movierec"],
        filter_string="attributes.run_name = 'evaluate'",
        output_format="list",
    )
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["train_run.sae"] == train_runs["sae"]
    assert run.data.tags["train_run.rbm"] == train_runs["rbm"]
    assert run.data.metrics["sae.rmse"] == pytest.approx(figures["sae"]["rmse"], abs=1e-5)
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id, "report")}
    assert {"report/evaluation.md", "report/evaluation.html", "report/plots"} <= artifacts


def test_evaluate_command_names_a_missing_checkpoint(private_home):
    from typer.testing import CliRunner

    from training.cli import app

    result = CliRunner().invoke(
        app, ["evaluate", "--no-track", "--params", str(REPO_ROOT / "params.yaml")]
    )
    assert result.exit_code == 4
    assert "sae.pt" in result.output and "movierec train" in result.output
