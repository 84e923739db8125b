"""Data and prediction drift: reference distributions saved at training time, PSI and a KS
statistic over a sliding window of logged requests, and the ``movierec monitor drift`` report.

Features of a request (a user's ratings sent for recommendations): the rating values, the
training popularity of the rated items, and the profile size (how many items were rated).
Predictions: the scores the served model returned. Each is compared with the same quantity
measured on the training data (for scores: the top-k unseen scores of every training user).

PSI (population stability index) over bins fixed by the reference; rule of thumb: < 0.1 stable,
0.1-0.2 moderate, > 0.2 significant shift. KS: the largest distance between the two empirical
CDFs (scipy's two-sample test). A distribution is flagged when PSI exceeds its threshold or the
KS statistic exceeds its threshold with a small p-value.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from scipy import stats

from training.config import ConfigError, Paths, get_logger
from training.monitoring.shared_log_file import SharedRotatingFileHandler

log = get_logger("monitoring")

REFERENCE_FILE = "drift_reference.json"
REFERENCE_FORMAT = 1
REQUEST_LOG_FILE = "requests.jsonl"
FEATURES = ("rating_value", "item_popularity", "profile_size")
# Rating values are few and discrete: one bin each. The others get quantile bins.
DISCRETE_FEATURES = ("rating_value",)
# Reference samples kept for the KS test; enough for a KS precision of about 0.02.
REFERENCE_SAMPLE_SIZE = 5000
REFERENCE_SEED = 42
# How many recommendations a request shows (the served scores the web app logs).
REFERENCE_TOP_K = 10
PSI_QUANTILE_BINS = 10
# Empty bins would make PSI infinite; a small floor keeps it finite and still large.
PSI_EPSILON = 1e-4
PSI_DRIFT_THRESHOLD = 0.2
KS_DRIFT_THRESHOLD = 0.1
KS_MAX_P_VALUE = 0.01
# The online window: the last N logged requests; fewer than the minimum says nothing reliable.
WINDOW_REQUESTS = 500
MIN_WINDOW_REQUESTS = 20
ROUND_DIGITS = 6
REQUEST_LOG_MAX_BYTES = 50 * 1024 * 1024
REQUEST_LOG_BACKUPS = 5
TIME_FORMATS = ["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S"]


# -- statistics -----------------------------------------------------------------------------------
def psi(expected: Sequence[float], actual: Sequence[float], epsilon: float = PSI_EPSILON) -> float:
    """Population stability index of two proportion vectors over the same bins."""
    e = np.clip(np.asarray(expected, dtype=float), epsilon, None)
    a = np.clip(np.asarray(actual, dtype=float), epsilon, None)
    if e.shape != a.shape:
        raise ValueError(f"bins differ: expected {e.shape}, actual {a.shape}")
    return float(np.sum((a - e) * np.log(a / e)))


def ks(reference: Sequence[float], actual: Sequence[float]) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and p-value."""
    result = stats.ks_2samp(np.asarray(reference, float), np.asarray(actual, float))
    return float(result.statistic), float(result.pvalue)


@dataclass(frozen=True)
class Distribution:
    """A reference distribution: PSI bins (inner edges, bin i = (edges[i-1], edges[i]]), the
    reference's share in each bin, and a sample for KS."""

    edges: list[float]
    proportions: list[float]
    sample: list[float]

    @classmethod
    def from_values(
        cls,
        values: Iterable[float],
        discrete: bool = False,
        sample_size: int = REFERENCE_SAMPLE_SIZE,
        seed: int = REFERENCE_SEED,
    ) -> Distribution:
        data = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, float)
        if data.size == 0:
            raise ValueError("a reference distribution needs at least one value")
        if discrete:
            levels = np.unique(data)
            edges = (levels[:-1] + levels[1:]) / 2
        else:
            quantiles = np.linspace(0, 1, PSI_QUANTILE_BINS + 1)[1:-1]
            edges = np.unique(np.quantile(data, quantiles))
        counts = np.bincount(np.digitize(data, edges, right=True), minlength=edges.size + 1)
        sample = data
        if data.size > sample_size:
            sample = np.random.default_rng(seed).choice(data, sample_size, replace=False)
        return cls(
            edges=[round(float(e), ROUND_DIGITS) for e in edges],
            proportions=[round(float(p), ROUND_DIGITS) for p in counts / data.size],
            sample=[round(float(v), ROUND_DIGITS) for v in np.sort(sample)],
        )

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Distribution:
        return cls(list(raw["edges"]), list(raw["proportions"]), list(raw["sample"]))

    def bin_proportions(self, values: Sequence[float]) -> np.ndarray:
        data = np.asarray(values, float)
        counts = np.bincount(
            np.digitize(data, self.edges, right=True), minlength=len(self.edges) + 1
        )
        return counts / max(data.size, 1)

    def compare(self, values: Sequence[float]) -> tuple[float, float, float]:
        """(PSI, KS statistic, KS p-value) of ``values`` against this reference."""
        index = psi(self.proportions, self.bin_proportions(values))
        statistic, p_value = ks(self.sample, values)
        return index, statistic, p_value


@dataclass(frozen=True)
class Comparison:
    """One distribution's drift figures; ``scope`` is "feature" or "prediction"."""

    scope: str
    name: str
    n_values: int
    psi: float | None
    ks_statistic: float | None
    ks_pvalue: float | None
    drifted: bool
    note: str = ""


def is_drift(index: float, statistic: float, p_value: float) -> bool:
    return index > PSI_DRIFT_THRESHOLD or (
        statistic > KS_DRIFT_THRESHOLD and p_value < KS_MAX_P_VALUE
    )


def _compare(scope: str, name: str, reference: Distribution | None, values: list[float]):
    if reference is None:
        return Comparison(scope, name, len(values), None, None, None, False, "no reference")
    if not values:
        return Comparison(scope, name, 0, None, None, None, False, "no values")
    index, statistic, p_value = reference.compare(values)
    return Comparison(
        scope, name, len(values), index, statistic, p_value, is_drift(index, statistic, p_value)
    )


# -- reference ------------------------------------------------------------------------------------
def served_scores(recommender, train, k: int = REFERENCE_TOP_K) -> np.ndarray:
    """The top-k unseen scores of every training user: what the served model returns."""
    import torch

    from training.metrics.ranking import top_k

    with torch.no_grad():
        scores = recommender.predict(train).float().cpu()
    rated = train.cpu() > 0
    indices = top_k(scores, rated, k)
    return scores.gather(1, indices).flatten().numpy()


def build_reference(
    prepared,
    scores: Mapping[str, Sequence[float] | np.ndarray] | None = None,
    sample_size: int = REFERENCE_SAMPLE_SIZE,
    seed: int = REFERENCE_SEED,
) -> dict[str, Any]:
    """Reference distributions of the training data (``PreparedData``) and, per model name, of
    the served scores (see ``served_scores``)."""
    train = prepared.train.cpu()
    rated = train > 0
    popularity = rated.sum(dim=0).numpy()
    rows, cols = rated.nonzero(as_tuple=True)
    if rows.numel() == 0:
        raise ValueError("the training matrix holds no ratings")
    item_ids = prepared.metadata["item_ids"]
    profile_sizes = rated.sum(dim=1).numpy()
    values = {
        "rating_value": train[rows, cols].numpy(),
        "item_popularity": popularity[cols.numpy()],
        "profile_size": profile_sizes[profile_sizes > 0],
    }
    features = {
        name: asdict(
            Distribution.from_values(values[name], name in DISCRETE_FEATURES, sample_size, seed)
        )
        for name in FEATURES
    }
    served = {
        model: asdict(Distribution.from_values(np.asarray(sample, float), False, sample_size, seed))
        for model, sample in (scores or {}).items()
    }
    return {
        "format": REFERENCE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "dataset": prepared.metadata.get("dataset"),
        "split": prepared.metadata.get("split"),
        "top_k": REFERENCE_TOP_K,
        "item_popularity": {str(i): int(p) for i, p in zip(item_ids, popularity, strict=True)},
        "features": features,
        "scores": served,
    }


def reference_for_checkpoints(paths: Paths, dataset: str, models: Sequence[str] = ("sae", "rbm")):
    """The reference for a prepared dataset and whichever of the models' checkpoints exist."""
    from training.data.preprocess import load_prepared
    from training.models import load_checkpoint

    prepared = load_prepared(paths.prepared(dataset))
    scores = {}
    for name in models:
        checkpoint = paths.checkpoints / f"{name}.pt"
        if checkpoint.is_file():
            scores[name] = served_scores(load_checkpoint(checkpoint), prepared.train)
        else:
            log.warning(
                "no %s checkpoint at %s: its predictions get no drift reference", name, checkpoint
            )
    return build_reference(prepared, scores)


def save_reference(reference: Mapping[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(reference) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


@dataclass(frozen=True)
class Reference:
    features: dict[str, Distribution]
    scores: dict[str, Distribution]
    item_popularity: dict[int, int]

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> Reference:
        return cls(
            features={name: Distribution.from_dict(d) for name, d in raw["features"].items()},
            scores={name: Distribution.from_dict(d) for name, d in raw.get("scores", {}).items()},
            item_popularity={int(k): int(v) for k, v in raw["item_popularity"].items()},
        )


def load_reference(path: Path) -> Reference:
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no drift reference; build it with `movierec monitor reference` after training"
        )
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        if raw.get("format") != REFERENCE_FORMAT:
            raise ValueError(f"format {raw.get('format')!r}, expected {REFERENCE_FORMAT}")
        return Reference.from_dict(raw)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{path}: not a drift reference: {exc}") from exc


# -- requests -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LoggedRequest:
    timestamp: datetime
    model: str
    ratings: dict[int, float]
    scores: list[float]


def feature_values(requests: Sequence[LoggedRequest], popularity: Mapping[int, int]):
    """Per feature, the values a batch of requests shows (unknown items have popularity 0)."""
    values: dict[str, list[float]] = {name: [] for name in FEATURES}
    for request in requests:
        values["rating_value"].extend(request.ratings.values())
        values["item_popularity"].extend(popularity.get(item, 0) for item in request.ratings)
        values["profile_size"].append(len(request.ratings))
    return values


@dataclass(frozen=True)
class DriftReport:
    n_requests: int
    since: datetime | None
    until: datetime | None
    comparisons: list[Comparison]

    @property
    def drifted(self) -> bool:
        return any(c.drifted for c in self.comparisons)

    def to_dict(self) -> dict[str, Any]:
        return {
            "n_requests": self.n_requests,
            "since": self.since.isoformat() if self.since else None,
            "until": self.until.isoformat() if self.until else None,
            "drifted": self.drifted,
            "thresholds": {
                "psi": PSI_DRIFT_THRESHOLD,
                "ks": KS_DRIFT_THRESHOLD,
                "ks_max_p_value": KS_MAX_P_VALUE,
            },
            "comparisons": [asdict(c) for c in self.comparisons],
        }

    def to_text(self) -> str:
        def fmt(value: float | None, spec: str) -> str:
            return "-" if value is None else format(value, spec)

        span = f"{self.since or 'start'} .. {self.until or 'now'}"
        lines = [
            f"drift report: {self.n_requests} requests, {span}",
            f"thresholds: PSI > {PSI_DRIFT_THRESHOLD}, or KS > {KS_DRIFT_THRESHOLD} "
            f"with p < {KS_MAX_P_VALUE}",
            f"{'scope':<11}{'name':<17}{'values':>8}{'PSI':>9}{'KS':>8}{'p-value':>10}  drift",
        ]
        for c in self.comparisons:
            verdict = "YES" if c.drifted else ("no" if not c.note else c.note)
            lines.append(
                f"{c.scope:<11}{c.name:<17}{c.n_values:>8}{fmt(c.psi, '.4f'):>9}"
                f"{fmt(c.ks_statistic, '.4f'):>8}{fmt(c.ks_pvalue, '.2e'):>10}  {verdict}"
            )
        lines.append("DRIFT DETECTED" if self.drifted else "no drift detected")
        return "\n".join(lines)


def compare_requests(
    reference: Reference,
    requests: Sequence[LoggedRequest],
    since: datetime | None = None,
    until: datetime | None = None,
    min_requests: int = 1,
) -> DriftReport:
    """Every feature, and the scores of every model with at least ``min_requests`` requests."""
    values = feature_values(requests, reference.item_popularity)
    comparisons = [
        _compare("feature", name, reference.features.get(name), values[name]) for name in FEATURES
    ]
    by_model: dict[str, list[LoggedRequest]] = {}
    for request in requests:
        by_model.setdefault(request.model, []).append(request)
    for model in sorted(by_model):
        if len(by_model[model]) < min_requests:
            continue
        scores = [s for request in by_model[model] for s in request.scores]
        comparisons.append(_compare("prediction", model, reference.scores.get(model), scores))
    return DriftReport(len(requests), since, until, comparisons)


class DriftMonitor:
    """The sliding window of the last ``window`` requests, compared on demand (thread-safe)."""

    def __init__(
        self,
        reference: Reference,
        window: int = WINDOW_REQUESTS,
        min_requests: int = MIN_WINDOW_REQUESTS,
    ) -> None:
        self.reference = reference
        self.min_requests = min_requests
        self._requests: deque[LoggedRequest] = deque(maxlen=window)
        self._lock = threading.Lock()

    def add(self, request: LoggedRequest) -> None:
        with self._lock:
            self._requests.append(request)

    def __len__(self) -> int:
        return len(self._requests)

    def report(self) -> DriftReport | None:
        """None until the window holds ``min_requests`` requests."""
        with self._lock:
            requests = list(self._requests)
        if len(requests) < self.min_requests:
            return None
        return compare_requests(
            self.reference,
            requests,
            requests[0].timestamp,
            requests[-1].timestamp,
            self.min_requests,
        )


class RequestLog:
    """``logs/requests.jsonl``: one JSON line per recommendation request, rotated by size."""

    def __init__(
        self,
        path: Path,
        max_bytes: int = REQUEST_LOG_MAX_BYTES,
        backup_count: int = REQUEST_LOG_BACKUPS,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # The handler brings the locking (across the web workers too) and rotation; the line is
        # formatted here.
        self._handler = SharedRotatingFileHandler(self.path, max_bytes, backup_count)
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, request: LoggedRequest, request_id: str | None = None) -> None:
        line = json.dumps(
            {
                "timestamp": request.timestamp.isoformat(timespec="milliseconds"),
                "request_id": request_id,
                "model": request.model,
                "ratings": {str(item): rating for item, rating in request.ratings.items()},
                "scores": [round(float(s), ROUND_DIGITS) for s in request.scores],
            }
        )
        self._handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        self._handler.close()


def log_files(path: Path) -> list[Path]:
    """The log and its rotated copies, oldest first (``path.N`` ... ``path.1``, ``path``)."""
    rotated = [p for p in path.parent.glob(path.name + ".*") if p.suffix[1:].isdigit()]
    rotated.sort(key=lambda p: int(p.suffix[1:]), reverse=True)
    return [*rotated, *([path] if path.is_file() else [])]


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _parse_line(text: str, path: Path, number: int) -> LoggedRequest:
    from training.data.parsers import DataValidationError

    try:
        raw = json.loads(text)
        return LoggedRequest(
            timestamp=_utc(datetime.fromisoformat(raw["timestamp"])),
            model=str(raw["model"]),
            ratings={int(k): float(v) for k, v in raw["ratings"].items()},
            scores=[float(s) for s in raw["scores"]],
        )
    except json.JSONDecodeError as exc:
        raise DataValidationError(path, number, f"not JSON: {exc.msg}") from exc
    except KeyError as exc:
        raise DataValidationError(path, number, f"missing field {exc}") from exc
    except (TypeError, ValueError, AttributeError) as exc:
        raise DataValidationError(path, number, f"invalid request record: {exc}") from exc


def read_request_log(
    path: Path, since: datetime | None = None, until: datetime | None = None
) -> list[LoggedRequest]:
    """Logged requests with ``since <= timestamp < until`` (UTC), from the log and its rotations."""
    files = log_files(path)
    if not files:
        raise FileNotFoundError(
            f"{path}: no request log; the web app writes it when it serves recommendations"
        )
    since = _utc(since) if since else None
    until = _utc(until) if until else None
    requests = []
    for file in files:
        with file.open(encoding="utf-8") as lines:
            for number, text in enumerate(lines, start=1):
                if not text.strip():
                    continue
                request = _parse_line(text, file, number)
                if (since is None or request.timestamp >= since) and (
                    until is None or request.timestamp < until
                ):
                    requests.append(request)
    return requests


# -- commands -------------------------------------------------------------------------------------
def drift_command(
    since: Annotated[
        datetime | None,
        typer.Option(formats=TIME_FORMATS, help="Start of the range (UTC unless offset given)."),
    ] = None,
    until: Annotated[
        datetime | None, typer.Option(formats=TIME_FORMATS, help="End of the range (exclusive).")
    ] = None,
    log_path: Annotated[
        Path | None, typer.Option("--log", help="Request log; default logs/requests.jsonl.")
    ] = None,
    reference: Annotated[
        Path | None,
        typer.Option(help="Reference; default data/checkpoints/drift_reference.json."),
    ] = None,
    json_output: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Compare the logged requests of a time range with the training-time reference (PSI, KS)."""
    from training.data.ingest import DataUnavailableError

    if since and until and _utc(since) >= _utc(until):
        raise typer.BadParameter("--since must be before --until")
    paths = Paths()
    log_path = log_path or paths.logs / REQUEST_LOG_FILE
    loaded = load_reference(reference or paths.checkpoints / REFERENCE_FILE)
    requests = read_request_log(log_path, since, until)
    if not requests:
        raise DataUnavailableError(
            f"{log_path}: no logged requests between {since or 'the start'} and {until or 'now'}"
        )
    report = compare_requests(loaded, requests, since, until)
    typer.echo(json.dumps(report.to_dict(), indent=2) if json_output else report.to_text())


def drift_reference_command(
    params: Annotated[Path, typer.Option("--params", help="params.yaml to read.")] = Path(
        "params.yaml"
    ),
    output: Annotated[
        Path | None, typer.Option(help="Default data/checkpoints/drift_reference.json.")
    ] = None,
) -> None:
    """Save the training-time reference distributions that drift is measured against."""
    from training.config import load_params

    paths = Paths()
    dataset = load_params(params).data.dataset
    path = save_reference(
        reference_for_checkpoints(paths, dataset), output or paths.checkpoints / REFERENCE_FILE
    )
    typer.echo(str(path))
