"""The evaluation report: full JSON, Markdown and HTML (one source) and the PNG plots they show.

Input is the dictionary ``training.evaluate.evaluate_models`` returns.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes

REPORT_JSON = "evaluation.json"
REPORT_MD = "evaluation.md"
REPORT_HTML = "evaluation.html"
PLOTS_DIR = "plots"
DISPLAY_NAMES = {
    "sae": "SAE",
    "rbm": "RBM",
    "hybrid": "Hybrid (default weights)",
    "hybrid_tuned": "Hybrid (weights chosen on validation)",
    "ease": "EASE (λ=500)",
    "most_popular": "Most popular",
    "bias": "User+item bias",
}
PLOT_DPI = 100
BAR_WIDTH = 0.8  # of each group, shared by its bars
DECIMALS = 4
HTML_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;"
    "color:#222}table{border-collapse:collapse;margin:1rem 0}th,td{border:1px solid #ccc;"
    "padding:.3rem .6rem}th{background:#f3f3f3}img{max-width:100%}"
    "blockquote{background:#fff6d6;border-left:4px solid #e0b000;margin:1rem 0;padding:.5rem 1rem}"
)


def display(name: str) -> str:
    return DISPLAY_NAMES.get(name, name)


def fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{DECIMALS}f}"
    return str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|",
    ]
    lines += ["| " + " | ".join(fmt(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _seconds(value: float | None) -> str | None:
    return f"{value:.1f}" if value is not None else None


def _get(result: dict[str, Any], section: str, name: str) -> float | None:
    return result.get(section, {}).get(name)


# -- tables ------------------------------------------------------------------------------------
def summary_table(report: dict[str, Any]) -> str:
    """Model, RMSE, MAE, P@K, NDCG@K, coverage@K and training seconds (headline K)."""
    k = report["protocol"]["headline_k"]
    rows = [
        [
            display(name),
            _get(r, "rating", "rmse"),
            _get(r, "rating", "mae"),
            _get(r, "ranking", f"precision@{k}"),
            _get(r, "ranking", f"ndcg@{k}"),
            _get(r, "beyond_accuracy", f"coverage@{k}"),
            _seconds(r.get("seconds_to_best")),
        ]
        for name, r in report["models"].items()
    ]
    return _table(
        ["Model", "RMSE", "MAE", f"P@{k}", f"NDCG@{k}", f"Coverage@{k}", "Train s (to best epoch)"],
        rows,
    )


def _rating_table(models: dict[str, Any]) -> str:
    rows = [
        [display(n), r["rating"]["rmse"], r["rating"]["mae"], r["rating"]["r2"]]
        for n, r in models.items()
        if "rating" in r
    ]
    return _table(["Model", "RMSE", "MAE", "R²"], rows)


def _ranking_table(models: dict[str, Any], k: int) -> str:
    names = ("precision", "recall", "ndcg", "map", "hit_rate")
    rows = [[display(n), *(r["ranking"].get(f"{m}@{k}") for m in names)] for n, r in models.items()]
    return _table(["Model", f"P@{k}", f"R@{k}", f"NDCG@{k}", f"MAP@{k}", f"HR@{k}"], rows)


def _section_table(models: dict[str, Any], section: str, names: list[str], k: int) -> str:
    rows = [[display(n), *(r[section].get(f"{m}@{k}") for m in names)] for n, r in models.items()]
    return _table(["Model", *(f"{m.replace('_', '-')}@{k}" for m in names)], rows)


def _cold_table(models: dict[str, Any], kind: str, figure: str, counts: list[str]) -> str:
    first = next(iter(models.values()))["cold_start"][kind]
    header = ["Bucket (train ratings)", *counts, *(display(n) for n in models)]
    rows = [
        [
            row["bucket"],
            *(row[c] for c in counts),
            *(r["cold_start"][kind][i].get(figure) for r in models.values()),
        ]
        for i, row in enumerate(first)
    ]
    return _table(header, rows)


# -- plots -------------------------------------------------------------------------------------
def _pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _grouped_bars(ax: Axes, groups: list[str], series: dict[str, list[float | None]]) -> None:
    width = BAR_WIDTH / max(len(series), 1)
    for i, (label, values) in enumerate(series.items()):
        xs = [g + (i - (len(series) - 1) / 2) * width for g in range(len(groups))]
        heights = [v if v is not None and not math.isnan(v) else 0.0 for v in values]
        ax.bar(xs, heights, width, label=label)
    ax.set_xticks(range(len(groups)), groups)
    ax.grid(axis="y", alpha=0.3)


def _bar_figure(path: Path, title: str, groups: list[str], series: dict, ylabel: str) -> Path:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    _grouped_bars(ax, groups, series)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return path


def _panels(path: Path, title: str, panels: list[tuple[str, dict[str, float | None]]]) -> Path:
    """One small bar chart per metric, one bar per model."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 4), squeeze=False)
    for ax, (metric, values) in zip(axes[0], panels, strict=True):
        heights = [v if v is not None and not math.isnan(v) else 0.0 for v in values.values()]
        ax.bar(range(len(values)), heights, color=[f"C{i}" for i in range(len(values))])
        ax.set_xticks(range(len(values)), list(values), rotation=20, ha="right")
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=PLOT_DPI)
    plt.close(fig)
    return path


def write_plots(report: dict[str, Any], folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    models, k = report["models"], report["protocol"]["headline_k"]
    k_values = report["protocol"]["k_values"]
    names = {display(n): r for n, r in models.items()}

    def panel(section: str, metric: str) -> tuple[str, dict[str, float | None]]:
        return metric, {n: _get(r, section, metric) for n, r in names.items()}

    ranking = ["precision", "recall", "ndcg", "map", "hit_rate"]
    plots = [
        _bar_figure(
            folder / f"ranking_at_{k}.png",
            f"Ranking quality at K={k}",
            [f"{m}@{k}" for m in ranking],
            {n: [r["ranking"].get(f"{m}@{k}") for m in ranking] for n, r in names.items()},
            "score",
        ),
        _bar_figure(
            folder / "ndcg_by_k.png",
            "NDCG by K",
            [f"K={x}" for x in k_values],
            {n: [r["ranking"].get(f"ndcg@{x}") for x in k_values] for n, r in names.items()},
            "NDCG",
        ),
        _panels(
            folder / "beyond_accuracy.png",
            f"Beyond accuracy at K={k}",
            [panel("beyond_accuracy", f"{m}@{k}") for m in ("coverage", "diversity", "novelty")],
        ),
        _panels(
            folder / "business.png",
            f"Simulated business figures at K={k}",
            [
                panel("business", f"{m}@{k}")
                for m in ("click_through", "conversion", "satisfaction")
            ],
        ),
    ]
    rated = {n: r for n, r in names.items() if "rating" in r}
    if rated:
        plots.append(
            _panels(
                folder / "rating.png",
                "Rating accuracy (lower is better)",
                [
                    ("RMSE", {n: r["rating"]["rmse"] for n, r in rated.items()}),
                    ("MAE", {n: r["rating"]["mae"] for n, r in rated.items()}),
                ],
            )
        )
    for kind, figure, label in (
        ("users", f"ndcg@{k}", f"NDCG@{k}"),
        ("items", f"hit_rate@{k}", f"hit rate@{k}"),
    ):
        buckets = [row["bucket"] for row in next(iter(models.values()))["cold_start"][kind]]
        plots.append(
            _bar_figure(
                folder / f"cold_start_{kind}.png",
                f"Cold start: {label} by the {kind[:-1]}'s number of training ratings",
                buckets,
                {n: [row.get(figure) for row in r["cold_start"][kind]] for n, r in names.items()},
                label,
            )
        )
    return plots


# -- documents ---------------------------------------------------------------------------------
def render_markdown(report: dict[str, Any], plots: list[Path]) -> str:
    models, protocol = report["models"], report["protocol"]
    k = protocol["headline_k"]
    parts = [
        "# Evaluation: SAE vs RBM vs baselines",
        f"Dataset **{report['dataset']}**, split **{report['split']}**: {report['n_users']} users "
        f"× {report['n_items']} items, {report['n_train']} train / {report['n_test']} test "
        "ratings.",
    ]
    if report.get("subset"):
        parts.append(
            f"> **Subset:** these results were made from a subset of the dataset "
            f"({report['subset']}); they are not comparable with published figures "
            "on the full dataset."
        )
    parts += [
        "## Protocol",
        f"One protocol for every model. Candidates: {protocol['candidates']}. Relevant: "
        f"{protocol['relevant']}. Users: {protocol['users']}. Gains are binary. Rating metrics "
        "only for models whose scores are predicted ratings.",
        "## Summary",
        "Reproduce with `dvc repro evaluate` (= `movierec evaluate`); what Triton serves is "
        "scored by `movierec evaluate-served` (`data/metrics/served.json`). The bar for every "
        f"ranking model is EASE's NDCG@{k}; the hybrid rows mix the SAE's and the RBM's "
        "rankings as every serving path does.",
        summary_table(report),
        _choices(models),
    ]
    if any("rating" in r for r in models.values()):
        parts += ["## Rating accuracy", _rating_table(models)]
    parts.append("## Ranking")
    for x in protocol["k_values"]:
        parts += [f"### K = {x}", _ranking_table(models, x)]
    parts += [
        "## Beyond accuracy",
        "Coverage: share of the catalogue in at least one list. Diversity: mean pairwise Jaccard "
        "distance of genre sets within a list. Novelty: mean -log2(share of users who rated the "
        "item) over recommended items (higher = less popular).",
        "Median popularity: the median over users of the median number of training ratings of "
        "the films in their list (a list of films one or two people rated scores 1-2).",
        _section_table(
            models,
            "beyond_accuracy",
            ["coverage", "diversity", "novelty", "median_popularity"],
            k,
        ),
        "## Simulated business figures",
        "A simulated click is a recommended item the user went on to rate in the test period. "
        "Click-through: share of users with at least one click; conversion: share of clicks "
        "rated 5 stars; satisfaction: mean test rating of clicks.",
        _section_table(models, "business", ["click_through", "conversion", "satisfaction"], k),
        "## Cold start",
        f"### Users by number of training ratings: NDCG@{k}",
        _cold_table(models, "users", f"ndcg@{k}", ["n_users"]),
        f"### Items by number of training ratings: hit rate@{k}",
        f"Share of relevant (user, item) test pairs of the bucket's items that made the top {k}.",
        _cold_table(models, "items", f"hit_rate@{k}", ["n_items", "n_relevant_pairs"]),
    ]
    rated = {n: r for n, r in models.items() if "rating" in r}
    if rated:
        parts += [
            "### Items by number of training ratings: RMSE",
            _cold_table(rated, "items", "rmse", ["n_items"]),
            "### Users by number of training ratings: RMSE",
            _cold_table(rated, "users", "rmse", ["n_users"]),
        ]
    parts.append("## Plots")
    parts += [f"![{plot.stem}]({PLOTS_DIR}/{plot.name})" for plot in plots]
    return "\n\n".join(parts) + "\n"


def _choices(models: dict[str, Any]) -> str:
    """What was chosen on validation only (the SAE's rank weight, the hybrid's weights)."""
    lines = ["Chosen on validation (held out of train; never on test):", ""]
    for name, result in models.items():
        for choice, detail in (result.get("choices") or {}).items():
            figures: dict[str, Any] = next(
                (v for key, v in detail.items() if key.startswith("val_")), {}
            )
            tried = ", ".join(f"{w}: {fmt(v)}" for w, v in figures.items())
            chosen = detail.get("chosen", detail.get("weights"))
            if isinstance(chosen, dict):
                chosen = ", ".join(f"w_{part} {weight:g}" for part, weight in chosen.items())
            lines.append(f"- {display(name)}, {choice.replace('_', ' ')}: {chosen} (tried {tried})")
    return "\n".join(lines) if len(lines) > 2 else ""


def render_html(markdown: str, title: str = "movierec evaluation") -> str:
    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark").enable("table").render(markdown)
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{HTML_STYLE}</style></head>\n<body>\n{body}</body></html>\n"
    )


def _json_safe(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def write_report(report: dict[str, Any], folder: Path) -> dict[str, Path]:
    """Write evaluation.json, evaluation.md, evaluation.html and plots/ into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    plots = write_plots(report, folder / PLOTS_DIR)
    markdown = render_markdown(report, plots)
    files = {
        "json": folder / REPORT_JSON,
        "markdown": folder / REPORT_MD,
        "html": folder / REPORT_HTML,
    }
    files["json"].write_text(json.dumps(_json_safe(report), indent=1) + "\n", encoding="utf-8")
    files["markdown"].write_text(markdown, encoding="utf-8")
    files["html"].write_text(render_html(markdown), encoding="utf-8")
    return {**files, **{plot.stem: plot for plot in plots}}
