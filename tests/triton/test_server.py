"""Against the real tritonserver (bundled 2.51, CPU configs): health, metadata, inference equal to
in-process onnxruntime, async and streaming calls, dynamic batching, errors, restart."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests
from typer.testing import CliRunner

from tests.fixtures.triton import copy_triton_configs
from tests.triton.checks import ATOL, assert_valid_top_k
from training.export.onnx import onnx_path, run_onnx
from training.models.serving import SERVED_TOLERANCE
from training.serving import triton_names as tn
from training.serving.processes import free_port, read_pid
from training.serving.triton_client import (
    AsyncTritonClient,
    TritonClient,
    TritonInvalidInputError,
    TritonModelNotFoundError,
    TritonUnavailableError,
    hybrid_weights,
)

pytestmark = pytest.mark.slow

USERS = 24
# The CPU configs serve int8 graphs whose activations are quantized per batch: a user's scores
# move a little with the rows they are batched with (the export bounds it).
ACROSS_BATCHES_ATOL = SERVED_TOLERANCE
CONCURRENT_CLIENTS = 8
REQUESTS_PER_CLIENT = 25


@pytest.fixture(scope="module")
def ratings(prepared) -> np.ndarray:
    return prepared.train[:USERS].numpy()


def local(onnx_repo, model: str, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The graph the server's CPU config serves, run in this process."""
    return run_onnx(onnx_path(onnx_repo, model).with_name(tn.cpu_onnx_filename(model)), feeds)


def local_hybrid(onnx_repo, ratings, weights) -> dict[str, np.ndarray]:
    feeds = {tn.RATINGS.name: ratings}
    return local(
        onnx_repo,
        tn.HYBRID_BLEND,
        {
            **feeds,
            tn.SAE_RANKING.name: local(onnx_repo, tn.SAE, feeds)[tn.RANKING.name],
            tn.RBM_RANKING.name: local(onnx_repo, tn.RBM, feeds)[tn.RANKING.name],
            tn.WEIGHTS.name: weights,
        },
    )


def assert_same_prediction(
    prediction, expected: dict[str, np.ndarray], ratings, item_ids, ranked_by: str
) -> None:
    np.testing.assert_allclose(prediction.scores, expected[tn.SCORES.name], atol=ATOL)
    np.testing.assert_allclose(prediction.top_scores, expected[tn.TOP_SCORES.name], atol=ATOL)
    # Tied scores may come in another order; the ids must still be a valid top-k.
    assert_valid_top_k(
        expected[ranked_by], ratings, item_ids, prediction.top_ids, prediction.top_scores
    )


def test_live_ready_and_every_model_ready(triton_server, triton_client):
    assert requests.get(f"{triton_server.http_url}/v2/health/ready", timeout=5).status_code == 200
    health = triton_client.health()
    assert health["live"] and health["ready"]
    assert health["models"] == {name: True for name in tn.SERVED_MODELS}
    metrics = requests.get(triton_server.metrics_url, timeout=5).text
    assert f'nv_inference_request_success{{model="{tn.SAE}"' in metrics


def test_metadata_and_config_are_the_committed_ones(triton_client):
    metadata = triton_client.metadata(tn.SAE)
    assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
        (tn.RATINGS.name, "FP32", ["-1", "-1"])
    ]
    outputs = [t["name"] for t in metadata["outputs"]]
    assert outputs == [spec.name for spec in tn.MODEL_OUTPUTS[tn.SAE]]
    config = triton_client.config(tn.RBM)
    assert config["backend"] == tn.CPU_BACKEND  # --model-config-name=cpu took effect
    assert config["max_batch_size"] == tn.MAX_BATCH_SIZE
    assert config["dynamic_batching"]["preferred_batch_size"] == list(tn.PREFERRED_BATCH_SIZES)
    assert triton_client.config(tn.HYBRID)["platform"] == "ensemble"


@pytest.mark.parametrize("model", tn.SCORING_MODELS)
def test_inference_equals_in_process_onnxruntime(
    triton_client, onnx_repo, prepared, ratings, model
):
    every = tuple(spec.name for spec in tn.MODEL_OUTPUTS[model])
    prediction = triton_client.infer(model, ratings, outputs=every)
    expected = local(onnx_repo, model, {tn.RATINGS.name: ratings})
    np.testing.assert_allclose(prediction.ranking, expected[tn.RANKING.name], atol=ATOL)
    assert_same_prediction(
        prediction, expected, ratings, prepared.metadata["item_ids"], tn.RANKING.name
    )


def test_hybrid_ensemble_equals_in_process_onnxruntime(triton_client, onnx_repo, prepared, ratings):
    weights = np.random.default_rng(0).uniform(0.1, 1.0, (len(ratings), 2)).astype(np.float32)
    every = tuple(spec.name for spec in tn.MODEL_OUTPUTS[tn.HYBRID])
    prediction = triton_client.infer(tn.HYBRID, ratings, weights, every)
    expected = local_hybrid(onnx_repo, ratings, weights)
    assert_same_prediction(
        prediction, expected, ratings, prepared.metadata["item_ids"], tn.SCORES.name
    )
    # The ensemble hands back the SAE's predicted ratings beside the mix.
    sae_outputs = local(onnx_repo, tn.SAE, {tn.RATINGS.name: ratings})
    np.testing.assert_allclose(prediction.sae_scores, sae_outputs[tn.SCORES.name], atol=ATOL)
    only_sae = triton_client.scores(tn.HYBRID, ratings, hybrid_weights(1.0, 0.0, len(ratings)))
    sae = triton_client.infer(tn.SAE, ratings, outputs=(tn.RANKING.name,)).ranking
    unrated = ratings == 0
    low = np.where(unrated, sae, np.inf).min(axis=1, keepdims=True)
    high = np.where(unrated, sae, -np.inf).max(axis=1, keepdims=True)
    np.testing.assert_allclose(only_sae, np.clip((sae - low) / (high - low), 0, 1), atol=ATOL)


def test_top_k_only_skips_the_scores(triton_client, ratings):
    prediction = triton_client.infer(tn.RBM, ratings, outputs=(tn.TOP_IDS.name,))
    assert prediction.scores is None and prediction.top_scores is None
    assert prediction.top_ids.shape == (len(ratings), tn.TOP_K)
    ids, scores = triton_client.top_k(tn.RBM, ratings)
    np.testing.assert_array_equal(ids, prediction.top_ids)


def test_async_inference(triton_server, triton_client, ratings):
    async def run():
        async with AsyncTritonClient(triton_server.grpc_url) as client:
            assert await client.is_ready()
            return await asyncio.gather(
                *(client.scores(tn.SAE, ratings[i : i + 1]) for i in range(len(ratings)))
            )

    rows = asyncio.run(run())
    np.testing.assert_allclose(
        np.concatenate(rows), triton_client.scores(tn.SAE, ratings), atol=ACROSS_BATCHES_ATOL
    )


def test_streaming_inference(triton_server, triton_client, ratings):
    batches = [ratings[i : i + 4] for i in range(0, len(ratings), 4)]
    expected = triton_client.scores(tn.RBM, ratings)
    streamed = triton_client.stream_infer(tn.RBM, batches, outputs=(tn.SCORES.name,))
    streamed_scores = np.concatenate([p.scores for p in streamed])
    np.testing.assert_allclose(streamed_scores, expected, atol=ACROSS_BATCHES_ATOL)

    async def run():
        async with AsyncTritonClient(triton_server.grpc_url) as client:
            return {i: p async for i, p in client.stream_infer(tn.RBM, batches, (tn.SCORES.name,))}

    answers = asyncio.run(run())
    assert sorted(answers) == list(range(len(batches)))
    np.testing.assert_allclose(
        np.concatenate([answers[i].scores for i in sorted(answers)]),
        expected,
        atol=ACROSS_BATCHES_ATOL,
    )


def test_dynamic_batching_under_concurrent_clients(triton_server, triton_client, ratings):
    def client_loop(seed: int) -> np.ndarray:
        with TritonClient(triton_server.grpc_url) as client:
            rows = [ratings[(seed + i) % len(ratings)][None] for i in range(REQUESTS_PER_CLIENT)]
            return np.concatenate([client.scores(tn.SAE, row) for row in rows])

    before = triton_client.statistics(tn.SAE)
    with ThreadPoolExecutor(CONCURRENT_CLIENTS) as pool:
        answers = list(pool.map(client_loop, range(CONCURRENT_CLIENTS)))
    after = triton_client.statistics(tn.SAE)
    requests_sent = CONCURRENT_CLIENTS * REQUESTS_PER_CLIENT
    assert int(after["inference_count"]) - int(before.get("inference_count", 0)) == requests_sent
    executions = int(after["execution_count"]) - int(before.get("execution_count", 0))
    assert executions < requests_sent, "every request ran alone: no dynamic batching"
    assert max(int(stat["batch_size"]) for stat in after["batch_stats"]) > 1
    expected = triton_client.scores(tn.SAE, ratings)
    np.testing.assert_allclose(
        answers[0],
        expected[np.arange(REQUESTS_PER_CLIENT) % len(ratings)],
        atol=ACROSS_BATCHES_ATOL,
    )


def test_bad_requests_get_clear_errors(triton_client, ratings):
    with pytest.raises(TritonInvalidInputError, match="expected shape") as wrong_width:
        triton_client.scores(tn.SAE, ratings[:, :10])
    assert wrong_width.value.status == "INVALID_ARGUMENT"
    with pytest.raises(TritonInvalidInputError, match="FP32"):
        triton_client.scores(tn.SAE, ratings.astype(np.float64))
    with pytest.raises(TritonInvalidInputError):
        triton_client.scores(tn.RBM, ratings[0])  # one user without the batch axis
    with pytest.raises(TritonModelNotFoundError, match="no_such_model"):
        triton_client.scores("no_such_model", ratings)
    with pytest.raises(TritonInvalidInputError, match="weights"):
        triton_client.scores(tn.HYBRID, ratings)
    with pytest.raises(TritonInvalidInputError, match="non-negative"):
        triton_client.scores(tn.HYBRID, ratings, hybrid_weights(-1.0, 1.0, len(ratings)))
    # The server still answers after all that.
    assert triton_client.scores(tn.SAE, ratings).shape == ratings.shape


def test_unreachable_server_is_a_clear_error():
    with TritonClient(f"127.0.0.1:{free_port()}", timeout_s=2.0) as client:
        with pytest.raises(TritonUnavailableError):
            client.scores(tn.SAE, np.zeros((1, 3), np.float32))
        assert client.health()["ready"] is False


def test_serve_command_stop_and_restart(onnx_repo, ratings, tmp_path, monkeypatch):
    """`movierec serve triton` in the background, `serve stop`, then the same again."""
    from training.cli import app

    home = tmp_path / "home"
    repo = copy_triton_configs(home / "triton_repo")
    for model in tn.ONNX_MODELS:
        shutil.copytree(onnx_path(onnx_repo, model).parent, onnx_path(repo, model).parent)
    monkeypatch.setenv("MOVIEREC_HOME", str(home))
    runner = CliRunner()
    expected = None
    for attempt in range(2):
        grpc_port = free_port()
        ports = ["--http-port", "0", "--grpc-port", str(grpc_port), "--metrics-port", "0"]
        result = runner.invoke(app, ["serve", "triton", *ports])
        assert result.exit_code == 0, result.output
        pid = read_pid("triton", home)
        assert pid is not None
        try:
            with TritonClient(f"127.0.0.1:{grpc_port}") as client:
                scores = client.scores(tn.RBM, ratings)
        finally:
            stopped = runner.invoke(app, ["serve", "stop", "--what", "triton"])
        assert stopped.exit_code == 0, stopped.output
        assert read_pid("triton", home) is None
        with TritonClient(f"127.0.0.1:{grpc_port}", timeout_s=2.0) as client:
            assert client.health()["live"] is False, f"attempt {attempt}: still serving"
        if expected is not None:
            np.testing.assert_array_equal(scores, expected)
        expected = scores
