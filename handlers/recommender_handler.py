"""The TorchServe life cycle shared by the SAE, RBM and hybrid handlers.

``preprocess`` validates each request of the batch on its own (a bad one keeps its 4xx error,
the rest go on), ``inference`` is one forward pass per model over every valid user of the batch,
``postprocess`` builds one JSON answer per request and sets its HTTP status. The domain logic
lives in ``recommendation`` (shipped beside this file in the .mar).
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from ts.torch_handler.base_handler import BaseHandler

if TYPE_CHECKING:  # the checker reads the repository's modules (the fallback below)
    from ts.context import Context

    from handlers import recommendation as rec
    from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
    from handlers.worker_metrics import WorkerMetrics
else:
    try:  # inside a .mar the extra files sit beside the handler, as top-level modules
        import recommendation as rec
        from serving_artifact import ARTIFACT_FILE, ServingArtifact
        from worker_metrics import WorkerMetrics
    except ImportError:  # in the repository (unit tests, in-process use)
        from handlers import recommendation as rec
        from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact
        from handlers.worker_metrics import WorkerMetrics

log = logging.getLogger(__name__)

DEFAULT_TORCH_THREADS = 1  # one intra-op thread per worker: workers, not threads, use the cores
BATCH_SIZE_HEADER = "X-Batch-Size"  # how many requests shared the forward pass (observability)
MODEL_FILE_SUFFIX = ".pt"
# Where TorchServe puts a raw request body ("body"; "data" for some clients and gRPC inputs).
BODY_PARAMETERS = ("body", "data")
# TorchServe's worker logs "Backend received inference at: <epoch>" at INFO for every request;
# the frontend reads each line off the worker's stdout into model_log.log, where it buries the
# lines that matter. Above INFO, that line goes; model metrics (PredictionTime) travel the same
# way and stay.
DEFAULT_WORKER_LOG_LEVEL = "WARNING"
METRICS_LOGGER = "ts.metrics"


@dataclass
class Batch:
    """A TorchServe batch on its way through preprocess -> inference -> postprocess."""

    requests: list[rec.ParsedRequest | rec.RequestError]
    users: list[rec.UserQuery] = field(default_factory=list)  # those the model answers
    inputs: torch.Tensor | None = None
    # Per part: the model's own scores (the SAE's predicted ratings) and what it ranks by.
    scores: dict[str, torch.Tensor] = field(default_factory=dict)
    ranking: dict[str, torch.Tensor] = field(default_factory=dict)


class RecommenderHandler(BaseHandler):
    """Subclasses name the TorchScript models they load (``parts``) and how to rank."""

    name: ClassVar[str]
    parts: ClassVar[tuple[str, ...]]

    def initialize(self, context: Context) -> None:
        model_dir = Path(context.system_properties["model_dir"])
        self.manifest = context.manifest
        config = (getattr(context, "model_yaml_config", None) or {}).get("handler", {})
        torch.set_num_threads(int(config.get("torch_threads", DEFAULT_TORCH_THREADS)))
        quiet_worker_log(config.get("worker_log_level", DEFAULT_WORKER_LOG_LEVEL))
        artifact = ServingArtifact.load(model_dir / ARTIFACT_FILE)
        self.metadata = artifact.metadata
        self.version = artifact.version
        self.catalogue = rec.Catalogue.from_artifact(artifact)
        self.vectors = artifact.vectors
        self.models = {
            part: torch.jit.load(str(model_dir / f"{part}{MODEL_FILE_SUFFIX}"), map_location="cpu")
            for part in self.parts
        }
        for model in self.models.values():
            model.eval()
        self.worker_metrics = WorkerMetrics()
        self.initialized = True
        # torch, the models and the catalogue live as long as the worker: a full cyclic-GC pass
        # over them would stop it mid-request for tens of ms; frozen objects are never scanned.
        gc.freeze()
        log.info("%s %s ready: %d items", self.name, self.version, self.catalogue.n_items)

    # -- life cycle ------------------------------------------------------------------------------
    def handle(self, data: list[dict], context: Context) -> list[str]:
        # No HandlerTime metric: TorchServe already times the call (PredictionTime), and each
        # metric is one more line the worker writes and the frontend parses per batch.
        self.context = context
        self.worker_metrics.batch(getattr(context, "metrics", None), len(data))
        return self.postprocess(self.inference(self.preprocess(data)))

    def preprocess(self, data: list[dict]) -> Batch:
        batch = Batch(requests=[])
        for idx, row in enumerate(data):
            try:
                payload = rec.decode_body(*self._body(idx, row))
                parsed = rec.parse_request(payload, self.catalogue, self.weight_names())
            except rec.RequestError as error:
                batch.requests.append(error)
                continue
            except Exception:  # a bug must cost this request only, never the batch or worker
                log.exception("request %d of the batch failed in preprocess", idx)
                batch.requests.append(internal_error())
                continue
            batch.requests.append(parsed)
            batch.users.extend(user for user in parsed.users if user.ratings)
        if batch.users:
            batch.inputs = rec.ratings_matrix(batch.users, self.catalogue.n_items)
        return batch

    def inference(self, batch: Batch, *args: Any, **kwargs: Any) -> Batch:
        if batch.inputs is not None:
            with torch.inference_mode():
                for part, model in self.models.items():
                    batch.scores[part], batch.ranking[part] = model(batch.inputs)
        return batch

    def postprocess(self, batch: Batch) -> list[str]:
        ranked = iter(self.rank(batch)) if batch.users else iter(())
        answers = []
        for idx, request in enumerate(batch.requests):
            status, body = 200, None
            if isinstance(request, rec.RequestError):
                status, body = request.status, request.to_dict()
            else:
                # Consume this request's ranked answers first, so one failure cannot shift
                # the answers of the requests after it.
                ranked_here = [next(ranked) for user in request.users if user.ratings]
                try:
                    body = self.answer(request, iter(ranked_here))
                except Exception:
                    log.exception("request %d of the batch failed in postprocess", idx)
                    error = internal_error()
                    status, body = error.status, error.to_dict()
            self.context.set_response_status(status, "", idx)
            self.context.set_response_content_type(idx, rec.JSON_CONTENT_TYPE)
            self.context.set_response_header(idx, BATCH_SIZE_HEADER, str(len(batch.requests)))
            answers.append(rec.to_json(body))
        return answers

    def answer(self, request: rec.ParsedRequest, ranked: Iterator[dict]) -> dict:
        users = [
            next(ranked) if user.ratings else rec.popular_answer(self.catalogue, user)
            for user in request.users
        ]
        return rec.envelope(self.name, self.version, request, users)

    # -- what differs per model ------------------------------------------------------------------
    def weight_names(self) -> tuple[str, ...]:
        """Models a request may weigh (only the hybrid has more than one)."""
        return ()

    def rank(self, batch: Batch) -> list[dict]:
        """One answer per user of ``batch.users``, by the one ranking path."""
        inputs = batch.inputs
        if inputs is None:  # no user of the batch rated anything: nothing to rank
            return []
        mask = rec.candidate_mask(batch.users, self.catalogue.n_items, inputs)
        ranking, predicted = rec.served_ranking(
            self.name, batch.users, batch.ranking, batch.scores, mask
        )
        return rec.ranked_answers(
            self.catalogue, batch.users, ranking, predicted, self.vectors, mask
        )

    # -- transport -------------------------------------------------------------------------------
    def _body(self, idx: int, row: dict) -> tuple[Any, str | None]:
        """The raw body and its content type (None when the transport has none: gRPC)."""
        for name in BODY_PARAMETERS:
            if name in row:
                header = self.context.get_request_header(idx, name)
                content_type = header.get("content-type") if isinstance(header, dict) else header
                return row[name], content_type or None
        # No raw body: a form post (e.g. curl -d without a Content-Type) arrives as fields.
        raise rec.RequestError(
            "unsupported_media_type",
            f"send the JSON as the request body with Content-Type: {rec.JSON_CONTENT_TYPE}",
        )


def quiet_worker_log(level: str) -> None:
    """Raise the worker's root logger to ``level``; metrics and this module keep INFO."""
    logging.getLogger().setLevel(level)
    for name in (METRICS_LOGGER, log.name):
        logging.getLogger(name).setLevel(logging.INFO)


def internal_error() -> rec.RequestError:
    return rec.RequestError("internal_error", "the server failed on this request; see its logs")
