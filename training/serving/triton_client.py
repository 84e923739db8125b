"""gRPC client for the Triton models (sync and asyncio), shared by the web app and benchmarks.

One call scores a batch of raw rating vectors (FP32 [batch, n_items], 0 = unrated) with ``sae``,
``rbm`` or the ``hybrid`` ensemble (which also takes per-row weights [w_sae, w_rbm]). Ask only
for the outputs you need: ``top_ids``/``top_scores`` (computed in the graph, rated items
excluded) are 50 values per row instead of every score. Server errors become the exceptions
below, so callers never parse gRPC status strings.
"""

from __future__ import annotations

import queue
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as aio_grpcclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from training.serving import triton_names as tn

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_URL = "127.0.0.1:8001"
ALL_OUTPUTS = tuple(spec.name for spec in tn.OUTPUTS)
TOP_K_OUTPUTS = (tn.TOP_IDS.name, tn.TOP_SCORES.name)
STREAM_TIMEOUT_S = 30.0


class TritonClientError(Exception):
    """A Triton call failed; ``status`` is the gRPC status name (e.g. INVALID_ARGUMENT)."""

    def __init__(self, message: str, status: str = "", model: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.model = model


class TritonInvalidInputError(TritonClientError, ValueError):
    """The request does not fit the model: wrong shape, dtype, width or weights."""


class TritonModelNotFoundError(TritonClientError, LookupError):
    """No such model (or version) on the server."""


class TritonUnavailableError(TritonClientError, ConnectionError):
    """The server cannot be reached, is not ready, or the model failed while serving."""


class TritonTimeoutError(TritonClientError, TimeoutError):
    """No answer within the client timeout."""


_STATUS_ERRORS: dict[str, type[TritonClientError]] = {
    "INVALID_ARGUMENT": TritonInvalidInputError,
    "NOT_FOUND": TritonModelNotFoundError,
    "UNAVAILABLE": TritonUnavailableError,
    "DEADLINE_EXCEEDED": TritonTimeoutError,
}


def map_error(exc: InferenceServerException, model: str | None = None) -> TritonClientError:
    """Turn tritonclient's exception into the project's exception types."""
    status = (exc.status() or "").removeprefix("StatusCode.")
    kind = _STATUS_ERRORS.get(status, TritonUnavailableError if not status else TritonClientError)
    where = f"triton model {model!r}" if model else "triton"
    return kind(f"{where}: {exc.message()}" + (f" ({status})" if status else ""), status, model)


@dataclass
class Prediction:
    """What the server answered for a batch; outputs not asked for are None. ``model_version``
    is the version that answered (Triton's ModelInferResponse; for the ensemble, its own)."""

    scores: np.ndarray | None = None
    ranking: np.ndarray | None = None
    top_ids: np.ndarray | None = None
    top_scores: np.ndarray | None = None
    sae_scores: np.ndarray | None = None
    model_version: str = ""

    def served(self, model: str) -> tuple[np.ndarray, np.ndarray | None]:
        """(what ``model`` ranks by, its predicted ratings or None), from ``ranked_outputs``."""
        predicted = tn.PREDICTED_RATINGS_OUTPUT.get(model)
        ranking = getattr(self, tn.RANKING_OUTPUT[model])
        return ranking, None if predicted is None else getattr(self, predicted)

    def output(self, name: str) -> np.ndarray:
        """An output that was asked for; TritonClientError if the server left it out."""
        value: np.ndarray | None = getattr(self, name)
        if value is None:
            raise TritonClientError(f"triton answered without the output {name!r} asked for")
        return value

    def top_k(self) -> tuple[np.ndarray, np.ndarray]:
        """(MovieLens ids, scores) of the best unrated items, as asked for (TOP_K_OUTPUTS)."""
        return self.output(tn.TOP_IDS.name), self.output(tn.TOP_SCORES.name)

    @classmethod
    def from_result(cls, result: grpcclient.InferResult, outputs: Sequence[str]) -> Prediction:
        arrays = {name: result.as_numpy(name) for name in outputs}
        return cls(**arrays, model_version=result.get_response().model_version)


def ranked_outputs(model: str) -> tuple[str, ...]:
    """The outputs a client ranks and explains ``model``'s answer from."""
    names = [tn.RANKING_OUTPUT[model]]
    if model in tn.PREDICTED_RATINGS_OUTPUT:
        names.append(tn.PREDICTED_RATINGS_OUTPUT[model])
    return tuple(dict.fromkeys(names))


def check_weights(weights: np.ndarray) -> None:
    """Hybrid weights: [batch, 2], finite, non-negative, not both zero."""
    if weights.ndim != 2 or weights.shape[1] != tn.N_HYBRID_WEIGHTS:
        raise TritonInvalidInputError(
            f"hybrid weights must have shape [batch, {tn.N_HYBRID_WEIGHTS}], got "
            f"{list(weights.shape)}",
            model=tn.HYBRID,
        )
    if not np.isfinite(weights).all() or (weights < 0).any() or (weights.sum(axis=1) <= 0).any():
        raise TritonInvalidInputError(
            "hybrid weights must be finite, non-negative and not both zero", model=tn.HYBRID
        )


def hybrid_weights(sae: float, rbm: float, batch: int) -> np.ndarray:
    """The same [w_sae, w_rbm] for every row of a batch."""
    return np.tile(np.array([[sae, rbm]], dtype=tn.WEIGHTS.numpy_dtype), (batch, 1))


def _input(module: Any, name: str, array: np.ndarray) -> Any:
    tensor = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
    tensor.set_data_from_numpy(array)
    return tensor


def build_request(
    module: Any, model: str, ratings: np.ndarray, weights: np.ndarray | None, outputs: Sequence[str]
) -> tuple[list, list]:
    """InferInputs and requested outputs for ``module`` (tritonclient.grpc or its aio twin).

    Arrays go as they are: the server checks shapes and dtypes and its errors are mapped.
    """
    ratings = np.asarray(ratings)
    inputs = [_input(module, tn.RATINGS.name, ratings)]
    if model == tn.HYBRID:
        if weights is None:
            raise TritonInvalidInputError(
                "the hybrid model needs weights [w_sae, w_rbm]", model=model
            )
        weights = np.asarray(weights)
        check_weights(weights)
        inputs.append(_input(module, tn.WEIGHTS.name, weights))
    elif weights is not None:
        raise TritonInvalidInputError(f"model {model!r} takes no weights", model=model)
    return inputs, [module.InferRequestedOutput(name) for name in outputs]


class TritonClient:
    """Blocking client. ``url`` is host:port of Triton's gRPC endpoint."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = grpcclient.InferenceServerClient(url)

    def __enter__(self) -> TritonClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    def _call(self, model: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return getattr(self._client, method)(*args, client_timeout=self.timeout_s, **kwargs)
        except InferenceServerException as exc:
            raise map_error(exc, model) from None

    # -- health and metadata ------------------------------------------------------------------
    def is_live(self) -> bool:
        return self._call(None, "is_server_live")

    def is_ready(self) -> bool:
        return self._call(None, "is_server_ready")

    def is_model_ready(self, model: str) -> bool:
        return self._call(model, "is_model_ready", model)

    def health(self) -> dict[str, Any]:
        """Live/ready and each served model's readiness; never raises for a down server."""
        try:
            return {
                "live": self.is_live(),
                "ready": self.is_ready(),
                "models": {name: self.is_model_ready(name) for name in tn.SERVED_MODELS},
            }
        except TritonClientError as exc:
            return {"live": False, "ready": False, "error": str(exc)}

    def metadata(self, model: str) -> dict[str, Any]:
        return self._call(model, "get_model_metadata", model, as_json=True)

    def served_versions(self) -> dict[str, str]:
        """Each model's newest READY version (the one its ``latest`` policy sends requests to),
        from one repository-index call; models with none ready are left out."""
        index = self._call(None, "get_model_repository_index", as_json=True)
        served: dict[str, str] = {}
        for entry in index.get("models", []):
            version = entry.get("version", "")
            if entry.get("state") == tn.READY and version.isdigit():
                name = entry["name"]
                if name not in served or int(version) > int(served[name]):
                    served[name] = version
        return served

    def config(self, model: str) -> dict[str, Any]:
        return self._call(model, "get_model_config", model, as_json=True)["config"]

    def statistics(self, model: str) -> dict[str, Any]:
        """Inference statistics of ``model`` (counts, batch sizes seen, queue and compute times)."""
        stats = self._call(model, "get_inference_statistics", model, as_json=True)
        return stats["model_stats"][0]

    # -- inference -------------------------------------------------------------------------------
    def infer(
        self,
        model: str,
        ratings: np.ndarray,
        weights: np.ndarray | None = None,
        outputs: Sequence[str] = ALL_OUTPUTS,
    ) -> Prediction:
        inputs, requested = build_request(grpcclient, model, ratings, weights, outputs)
        result = self._call(model, "infer", model, inputs, outputs=requested)
        return Prediction.from_result(result, outputs)

    def scores(
        self, model: str, ratings: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        return self.infer(model, ratings, weights, (tn.SCORES.name,)).output(tn.SCORES.name)

    def top_k(
        self, model: str, ratings: np.ndarray, weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """(MovieLens ids, scores) of the best unrated items, best first."""
        return self.infer(model, ratings, weights, TOP_K_OUTPUTS).top_k()

    def stream_infer(
        self,
        model: str,
        batches: Iterable[np.ndarray],
        weights: Iterable[np.ndarray] | None = None,
        outputs: Sequence[str] = ALL_OUTPUTS,
    ) -> list[Prediction]:
        """Send every batch over one bidirectional gRPC stream; answers in request order."""
        answers: queue.Queue = queue.Queue()
        self._client.start_stream(callback=lambda result, error: answers.put((result, error)))
        try:
            weight_list = list(weights) if weights is not None else None
            sent = 0
            for index, ratings in enumerate(batches):
                batch_weights = weight_list[index] if weight_list is not None else None
                inputs, requested = build_request(
                    grpcclient, model, ratings, batch_weights, outputs
                )
                self._client.async_stream_infer(
                    model, inputs, outputs=requested, request_id=str(index)
                )
                sent += 1
            by_id: dict[int, Prediction] = {}
            for _ in range(sent):
                try:
                    result, error = answers.get(timeout=STREAM_TIMEOUT_S)
                except queue.Empty:
                    raise TritonTimeoutError(
                        f"triton model {model!r}: stream answer timed out",
                        "DEADLINE_EXCEEDED",
                        model,
                    ) from None
                if error is not None:
                    raise map_error(error, model)
                request_id = int(result.get_response().id)
                by_id[request_id] = Prediction.from_result(result, outputs)
        except InferenceServerException as exc:
            raise map_error(exc, model) from None
        finally:
            self._client.stop_stream()
        return [by_id[index] for index in range(sent)]


class AsyncTritonClient:
    """The asyncio twin of TritonClient (tritonclient.grpc.aio), for async web handlers."""

    def __init__(self, url: str = DEFAULT_URL, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._client = aio_grpcclient.InferenceServerClient(url)

    async def __aenter__(self) -> AsyncTritonClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._client.close()

    async def _call(self, model: str | None, method: str, *args: Any, **kwargs: Any) -> Any:
        try:
            return await getattr(self._client, method)(
                *args, client_timeout=self.timeout_s, **kwargs
            )
        except InferenceServerException as exc:
            raise map_error(exc, model) from None

    async def is_ready(self) -> bool:
        return await self._call(None, "is_server_ready")

    async def metadata(self, model: str) -> dict[str, Any]:
        return await self._call(model, "get_model_metadata", model, as_json=True)

    async def infer(
        self,
        model: str,
        ratings: np.ndarray,
        weights: np.ndarray | None = None,
        outputs: Sequence[str] = ALL_OUTPUTS,
    ) -> Prediction:
        inputs, requested = build_request(aio_grpcclient, model, ratings, weights, outputs)
        result = await self._call(model, "infer", model, inputs, outputs=requested)
        return Prediction.from_result(result, outputs)

    async def scores(
        self, model: str, ratings: np.ndarray, weights: np.ndarray | None = None
    ) -> np.ndarray:
        prediction = await self.infer(model, ratings, weights, (tn.SCORES.name,))
        return prediction.output(tn.SCORES.name)

    async def top_k(
        self, model: str, ratings: np.ndarray, weights: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        return (await self.infer(model, ratings, weights, TOP_K_OUTPUTS)).top_k()

    async def stream_infer(
        self, model: str, batches: Iterable[np.ndarray], outputs: Sequence[str] = ALL_OUTPUTS
    ) -> AsyncIterator[tuple[int, Prediction]]:
        """Yield (request index, prediction) as answers arrive on one gRPC stream."""

        async def requests() -> AsyncIterator[dict[str, Any]]:
            for index, ratings in enumerate(batches):
                inputs, requested = build_request(aio_grpcclient, model, ratings, None, outputs)
                yield {
                    "model_name": model,
                    "inputs": inputs,
                    "outputs": requested,
                    "request_id": str(index),
                }

        try:
            async for result, error in self._client.stream_infer(requests()):
                if error is not None:
                    raise map_error(error, model)
                yield int(result.get_response().id), Prediction.from_result(result, outputs)
        except InferenceServerException as exc:
            raise map_error(exc, model) from None
