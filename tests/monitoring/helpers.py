"""Small helpers the monitoring tests share: a minimal Flask app and Prometheus text parsing."""

from __future__ import annotations

import re

from flask import Flask, abort
from prometheus_client.parser import text_string_to_metric_families

from web import metrics

# Series a family of each type exposes, besides its name as written on the TYPE line.
SUFFIXES = {
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "summary": ("_sum", "_count", "_created"),
}
_SAMPLE_NAME = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)")


def minimal_app(**config) -> Flask:
    """A Flask app with two routes and the monitoring installed; no drift, log or textfile
    unless ``config`` names them."""
    app = Flask("minimal")
    off = {
        "MOVIEREC_DRIFT_REFERENCE": None,
        "MOVIEREC_REQUEST_LOG": None,
        "MOVIEREC_TRAINING_TEXTFILE": None,
    }
    app.config.update({**off, **config})

    @app.get("/movies/<int:movie_id>")
    def movie(movie_id: int):
        if movie_id == 0:
            abort(404)
        if movie_id == 1:
            raise RuntimeError("boom")
        metrics.observe_prediction("sae", "movie", 0.02)
        return {"movie_id": movie_id}

    metrics.init_app(app)
    return app


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """``{(sample name, labels): value}`` of a Prometheus text exposition."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(text: str, metric: str, /, **labels: str) -> float | None:
    return samples(text).get((metric, frozenset(labels.items())))


def sampled_names(text: str) -> set[str]:
    """Names with at least one sample line (declared families without samples left out)."""
    return {
        _SAMPLE_NAME.match(line).group(1)
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def exposed_names(text: str) -> set[str]:
    """Every series name a query could use, read from the text as written (prometheus_client's
    parser renames counters to ``*_total``, which TorchServe's are not): sample names, and the
    names ``# TYPE`` lines declare for families with no sample yet."""
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(maxsplit=3)
            names.add(name)
            names.update(name + suffix for suffix in SUFFIXES.get(kind.strip(), ()))
            if kind.strip() == "counter" and name.endswith("_total"):
                names.add(name.removesuffix("_total") + "_created")
        elif line and not line.startswith("#"):
            names.add(_SAMPLE_NAME.match(line).group(1))
    return names
