"""The evaluator, the baselines, the report and the `movierec evaluate` command."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from pydantic import BaseModel

from training.baselines import EASE, BiasBaseline, MostPopular, fit_baselines
from training.evaluate import (
    HYBRID_WEIGHT_GRID,
    evaluate_model,
    evaluate_scores,
    flat_figures,
    headline_k,
    tune_hybrid_weights,
)
from training.metrics.beyond_accuracy import item_popularity, median_popularity
from training.metrics.ranking import rating_metrics, top_k
from training.models.base import BaseRecommender
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


def test_ranking_figures_come_from_the_ranking_and_rating_figures_from_the_scores():
    """The SAE serves lists by its ranking and is judged on RMSE by its predicted ratings."""
    ranking = SCORES.flip(1)
    settings = {"k_values": [2, 4], "threshold": 4, "item_genres": GENRES}
    both = evaluate_scores(SCORES, TRAIN, TEST, rating_scores=True, ranking=ranking, **settings)
    ranked = evaluate_scores(ranking, TRAIN, TEST, rating_scores=False, **settings)
    scored = evaluate_scores(SCORES, TRAIN, TEST, rating_scores=True, **settings)
    assert both["ranking"] == ranked["ranking"] != scored["ranking"]
    assert both["beyond_accuracy"] == ranked["beyond_accuracy"]
    assert both["rating"] == rating_metrics(SCORES, TEST)

    def column(result: dict, name: str) -> list[float]:  # NaN (empty bucket) as a string
        return [str(row[name]) for row in result["cold_start"]["users"]]

    assert column(both, "ndcg@4") == column(ranked, "ndcg@4") != column(scored, "ndcg@4")
    assert column(both, "rmse") == column(scored, "rmse")


class NoParams(BaseModel):
    pass


class FixedOutputs(torch.nn.Module):
    """A model's inference module that answers SCORES and their flipped ranking, whatever asked."""

    def forward(self, ratings: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return SCORES[: len(ratings)], SCORES[: len(ratings)].flip(1)


class FixedRecommender(BaseRecommender):
    name = "fixed"
    params_class = NoParams
    monitor = "val_loss"
    rating_scores = True

    def build_model(self) -> torch.nn.Module:
        return FixedOutputs()

    def fit_setup(self, train, generator) -> None:  # pragma: no cover - never trained
        raise NotImplementedError

    def train_epoch(self, train, generator) -> float:  # pragma: no cover
        raise NotImplementedError

    def validate(self, inputs, targets) -> dict[str, float]:  # pragma: no cover
        raise NotImplementedError


def test_evaluate_model_scores_a_recommenders_scores_and_ranking():
    """A recommender is scored on its (scores, ranking), rating metrics by its rating_scores."""
    settings = {"k_values": [2, 4], "threshold": 4, "item_genres": GENRES}
    recommender = FixedRecommender(NoParams(), n_items=SCORES.shape[1])
    expected = evaluate_scores(
        SCORES, TRAIN, TEST, rating_scores=True, ranking=SCORES.flip(1), **settings
    )
    assert str(evaluate_model(recommender, TRAIN, TEST, **settings)) == str(expected)


def test_evaluate_scores_rejects_a_ranking_of_another_shape():
    with pytest.raises(ValueError, match="ranking"):
        evaluate_scores(SCORES, TRAIN, TEST, ranking=SCORES[:, :4])


def test_evaluate_scores_reports_the_median_popularity_of_the_lists():
    result = evaluate_scores(SCORES, TRAIN, TEST, k_values=[2, 4], threshold=4)
    users = (TEST >= 4).any(dim=1)
    lists = top_k(SCORES[users], TRAIN[users] > 0, 4)
    popularity = item_popularity(TRAIN)
    for k in (2, 4):
        expected = median_popularity(lists[:, :k], popularity)
        assert result["beyond_accuracy"][f"median_popularity@{k}"] == expected
    # u0's top-2 [4, 3] and u1's [1, 4]: nobody rated 3 or 4 in train, item 1 once; the
    # medians are 0 and 0.5, their median 0.25.
    assert result["beyond_accuracy"]["median_popularity@2"] == 0.25


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


# -- EASE ----------------------------------------------------------------------------------------


def _ridge_without_self(rated: torch.Tensor, l2: float) -> torch.Tensor:
    """EASE column by column: item j regressed on every other item, L2 weight l2 (float64)."""
    x = rated.double()
    n = x.shape[1]
    weights = torch.zeros(n, n, dtype=torch.float64)
    for j in range(n):
        others = [i for i in range(n) if i != j]
        design = x[:, others]
        gram = design.t() @ design + l2 * torch.eye(n - 1, dtype=torch.float64)
        weights[others, j] = torch.linalg.solve(gram, design.t() @ x[:, j])
    return weights


def test_ease_has_a_zero_diagonal_and_is_the_constrained_least_squares_solution():
    generator = torch.Generator().manual_seed(0)
    stars = torch.randint(1, 6, (20, 7), generator=generator).float()
    train = stars * (torch.rand(20, 7, generator=generator) < 0.4)
    model = EASE(l2=2.0).fit(train)
    assert model.weights.shape == (7, 7) and model.weights.dtype == torch.float32
    assert torch.all(model.weights.diagonal() == 0)
    expected = _ridge_without_self(train > 0, 2.0)
    assert torch.allclose(model.weights.double(), expected, atol=1e-6)
    # Scores are the user's own 0/1 vector times B: the star values do not matter.
    users = torch.tensor([[5.0, 0, 1, 0, 0, 0, 2], [1.0, 0, 5, 0, 0, 0, 4]])
    assert torch.equal(model.predict(users[:1]), model.predict(users[1:]))
    assert torch.allclose(model.predict(users), (users > 0).float() @ model.weights)


def test_ease_by_hand():
    # X = [[1, 1], [1, 0], [0, 1]], λ = 1: each item regressed on the other,
    # b = (x1·x1 + λ)⁻¹ x1·x0 = 1 / (2 + 1).
    train = torch.tensor([[5.0, 3.0], [4.0, 0.0], [0.0, 1.0]])
    model = EASE(l2=1.0).fit(train)
    assert model.weights.tolist() == [[0.0, pytest.approx(1 / 3)], [pytest.approx(1 / 3), 0.0]]
    assert model.predict(torch.tensor([[5.0, 0.0]])).tolist() == [[0.0, pytest.approx(1 / 3)]]


def test_ease_refuses_to_predict_before_fit():
    with pytest.raises(RuntimeError, match="before fit"):
        EASE().predict(torch.zeros(1, 3))


def _co_rated() -> tuple[torch.Tensor, torch.Tensor]:
    """Items 0 and 1 are rated together (users 0-3); 2 and 3, more popular, by users 4-9.
    Users 10 and 11 rated item 0 and, in test, loved item 1."""
    train = torch.zeros(12, 5)
    train[:4, :2] = 4.0
    train[4:10, 2:4] = 3.0
    train[10:, 0] = 5.0
    test = torch.zeros(12, 5)
    test[10:, 1] = 5.0
    return train, test


def test_ease_as_evaluate_models_scores_the_baselines():
    train, test = _co_rated()
    baselines = fit_baselines(train)
    assert [b.name for b in baselines] == ["ease", "most_popular", "bias"]
    assert baselines[0].l2 == 500.0  # the default the report names
    results = {
        b.name: evaluate_scores(
            b.predict(train), train, test, rating_scores=b.rating_scores, k_values=[1, 2]
        )
        for b in baselines
    }
    assert "rating" not in results["ease"] and "rating" in results["bias"]
    # EASE finds item 1 through item 0; most-popular offers the more popular items 2 and 3.
    assert results["ease"]["ranking"]["ndcg@1"] == pytest.approx(1.0)
    assert results["ease"]["ranking"]["hit_rate@1"] == 1.0
    assert results["most_popular"]["ranking"]["ndcg@2"] == 0.0
    assert flat_figures(results["ease"])["ndcg@1"] == pytest.approx(1.0)
    # Items 2 and 3 were never rated with item 0: EASE gives them exactly nothing.
    assert baselines[0].predict(train[10:])[:, 2:4].abs().max() == 0.0


# -- the hybrid's weights -----------------------------------------------------------------------


class _FixedRanking:
    """A recommender whose ranking of any rows is a fixed function of them."""

    def __init__(self, rank) -> None:
        self.rank = rank

    def rank_scores(self, ratings: torch.Tensor) -> torch.Tensor:
        return self.rank(ratings)


def test_hybrid_weights_are_tuned_on_validation_held_out_of_train():
    from training.config import load_params

    params = load_params(REPO_ROOT / "params.yaml")
    generator = torch.Generator().manual_seed(0)
    train = torch.randint(1, 6, (40, 15), generator=generator).float()
    train *= torch.rand(40, 15, generator=generator) < 0.5
    # The RBM's ranking favours popular items; the SAE's the opposite: the mix should lean RBM.
    popular = item_popularity(train).float()
    recommenders = {
        "rbm": _FixedRanking(lambda rows: popular.expand(len(rows), -1)),
        "sae": _FixedRanking(lambda rows: -popular.expand(len(rows), -1)),
    }
    tuned = tune_hybrid_weights(recommenders, train, params)
    weights, figures = tuned["weights"], tuned["val_ndcg@10"]
    assert set(figures) == {str(w) for w in HYBRID_WEIGHT_GRID}
    assert weights["sae"] in HYBRID_WEIGHT_GRID
    assert weights["sae"] + weights["rbm"] == pytest.approx(1.0)
    assert figures[str(weights["sae"])] == max(figures.values())
    assert figures["0.0"] > figures["1.0"]
    assert weights["sae"] < 0.5


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


def test_report_names_the_hybrid_and_ease_rows():
    report = _tiny_report(None)
    settings = {"k_values": [2, 4], "threshold": 4.0, "item_genres": GENRES}
    for name in ("hybrid", "hybrid_tuned", "ease"):
        report["models"][name] = evaluate_scores(SCORES.flip(0), TRAIN, TEST, **settings)
    markdown = render_markdown(report, [])
    for label in ("Hybrid (default weights)", "Hybrid (weights chosen on validation)", "EASE"):
        assert f"| {label}" in markdown


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
    from training.config import Paths, load_params
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
    assert set(figures) == {
        "sae",
        "rbm",
        "hybrid",
        "hybrid_tuned",
        "ease",
        "most_popular",
        "bias",
    }
    assert {"rmse", "mae", "ndcg@10"} <= set(figures["sae"]) and "rmse" in figures["bias"]
    for name in ("rbm", "hybrid", "hybrid_tuned", "ease", "most_popular"):
        assert "rmse" not in figures[name], name
    assert figures["most_popular"]["ndcg@10"] == pytest.approx(0.2448, abs=1e-3)  # issue's figure
    assert figures["ease"]["ndcg@10"] == pytest.approx(0.448, abs=2e-3)  # baselines.EASE_L2's
    assert all("median_popularity@10" in found for found in figures.values())
    reports = home / "data" / "reports"
    assert {"evaluation.json", "evaluation.md", "evaluation.html"} <= {
        p.name for p in reports.iterdir()
    }
    report = json.loads((reports / "evaluation.json").read_text())["models"]
    params = load_params(REPO_ROOT / "params.yaml")
    assert report["sae"]["choices"]["rank_weight"]["chosen"] in params.sae.rank_weights
    assert report["hybrid"]["weights"] == {"sae": 0.5, "rbm": 0.5}
    tuned = report["hybrid_tuned"]["weights"]
    assert tuned["sae"] in HYBRID_WEIGHT_GRID and sum(tuned.values()) == pytest.approx(1.0)

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
