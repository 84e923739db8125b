"""`movierec release triton` on a real tritonserver (explicit model control) while the SAE and the
hybrid ensemble keep answering: the SAE's next version folder takes over with no failed request,
the ensemble uses it without a restart, and a rollback brings the old version back; the web app's
Triton backend names the version that answered throughout."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import numpy as np
import pytest

from tests.lifecycle.request_stream import RequestStream, switches_once

pytestmark = pytest.mark.slow

OLD, NEW = "1", "2"
BEFORE, AFTER = 200, 200
ENSEMBLE_CALLS = 20


@pytest.fixture(scope="module")
def release_triton(onnx_repo, tmp_path_factory) -> Iterator:
    """A tritonserver of its own over a copy of the session's repository (releases change it)."""
    from training.serving.triton_server import start_triton

    repo = shutil.copytree(onnx_repo, tmp_path_factory.mktemp("release-triton") / "triton_repo")
    server = start_triton(repo, tmp_path_factory.mktemp("release-triton-run"))
    try:
        yield server, repo
    finally:
        server.stop()


@pytest.fixture(scope="module")
def ratings(onnx_repo) -> np.ndarray:
    from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact

    artifact = ServingArtifact.load(onnx_repo / "sae" / OLD / ARTIFACT_FILE)
    row = np.zeros((1, len(artifact.item_ids)), dtype=np.float32)
    row[0, :5] = 5.0
    return row


def sae_stream(url: str, ratings: np.ndarray) -> RequestStream:
    """The SAE asked directly: its answers name the version that made them."""
    import tritonclient.grpc as grpcclient

    from training.serving.triton_client import build_request

    client = grpcclient.InferenceServerClient(url)
    inputs, outputs = build_request(grpcclient, "sae", ratings, None, ("top_ids",))
    return RequestStream(
        lambda: client.infer("sae", inputs, outputs=outputs).get_response().model_version
    )


def hybrid_stream(url: str, ratings: np.ndarray) -> RequestStream:
    """The ensemble (SAE and RBM in parallel, then the blend): it must never fail."""
    from training.serving.triton_client import TritonClient, hybrid_weights

    client = TritonClient(url)
    weights = hybrid_weights(0.5, 0.5, 1)
    return RequestStream(
        lambda: str(client.infer("hybrid", ratings, weights).top_k()[0].shape[1]), threads=2
    )


def swap_under_load(url, ratings, action):
    with sae_stream(url, ratings) as sae, hybrid_stream(url, ratings) as hybrid:
        sae.wait_for(BEFORE)
        result = action()
        sae.wait_for(AFTER)
    return sae, hybrid, result


def ensemble_uses(server, version: str, ratings: np.ndarray) -> int:
    """How many of ENSEMBLE_CALLS hybrid requests reached the SAE's ``version``."""
    import tritonclient.grpc as grpcclient

    from training.serving.triton_client import TritonClient, hybrid_weights

    stats_client = grpcclient.InferenceServerClient(server.grpc_url)

    def count() -> int:
        stats = stats_client.get_inference_statistics("sae", version, as_json=True)
        return int(stats["model_stats"][0].get("inference_count", 0))

    before = count()
    with TritonClient(server.grpc_url) as client:
        for _ in range(ENSEMBLE_CALLS):
            client.infer("hybrid", ratings, hybrid_weights(0.5, 0.5, 1))
    used = count() - before
    stats_client.close()
    return used


def test_release_then_rollback_under_load(release_triton, ratings, onnx_repo, tmp_path):
    from training.serving.release import triton as triton_release
    from training.serving.release.state import Release

    server, repo = release_triton
    control = triton_release.TritonModelControl(server.http_url)
    state_dir = tmp_path / "release"
    assert control.ready_versions("sae") == [OLD]

    sae, hybrid, released = swap_under_load(
        server.grpc_url,
        ratings,
        lambda: triton_release.release(control, repo, "sae", onnx_repo / "sae" / OLD, state_dir),
    )
    assert sae.errors == [] and hybrid.errors == []
    assert len(sae.answers) >= BEFORE + AFTER and hybrid.answers
    for thread, versions in sae.versions_by_thread().items():
        assert switches_once(versions, OLD, NEW), (thread, versions[:3], versions[-3:])
    assert control.ready_versions("sae") == [NEW]
    assert (repo / "sae" / NEW / "model.int8.onnx").is_file()
    assert Release.load(state_dir, "triton") == released
    assert ensemble_uses(server, NEW, ratings) == ENSEMBLE_CALLS  # no restart needed

    sae, hybrid, rolled_back = swap_under_load(
        server.grpc_url,
        ratings,
        lambda: triton_release.rollback(control, repo, released, state_dir),
    )
    assert sae.errors == [] and hybrid.errors == []
    for thread, versions in sae.versions_by_thread().items():
        assert switches_once(versions, NEW, OLD), (thread, versions[:3], versions[-3:])
    assert control.ready_versions("sae") == [OLD]
    assert not (repo / "sae" / NEW).exists() and (repo / "sae" / f"rolled-back-{NEW}").is_dir()
    assert rolled_back.phase == "rolled_back"
    assert ensemble_uses(server, OLD, ratings) == ENSEMBLE_CALLS
    control.close()


def test_an_incomplete_version_is_refused_and_nothing_changes(release_triton, tmp_path):
    from training.serving.release import triton as triton_release

    server, repo = release_triton
    source = tmp_path / "half"
    source.mkdir()
    (source / "model.onnx").write_bytes(b"not a graph")
    control = triton_release.TritonModelControl(server.http_url)
    with pytest.raises(FileNotFoundError, match="serving_artifact.pt"):
        triton_release.release(control, repo, "sae", source, tmp_path / "release")
    assert control.ready_versions("sae") == [OLD]
    assert triton_release.version_folders(repo, "sae") == [int(OLD)]
    control.close()


RENAMED = " [next version]"  # the released artifact's titles: answers show which one was read


def renamed_copy(source, dest):
    """``source`` (a version folder) with every title in its serving artifact changed."""
    import dataclasses

    from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact

    shutil.copytree(source, dest)
    artifact = ServingArtifact.load(dest / ARTIFACT_FILE)
    movies = [{**movie, "title": movie["title"] + RENAMED} for movie in artifact.movies]
    dataclasses.replace(artifact, movies=movies).save(dest / ARTIFACT_FILE)
    return dest


def test_the_web_backend_names_the_version_served_through_release_and_rollback(
    release_triton, ratings, onnx_repo, tmp_path
):
    """MODEL_BACKEND=triton follows a release without a restart: its answers name the version
    Triton reports (the hybrid's, its parts' too) and take titles and explanations from that
    version's serving artifact."""
    from training.serving.release import triton as triton_release
    from web.backends.base import RecommendRequest
    from web.backends.triton import TritonBackend

    server, repo = release_triton
    control = triton_release.TritonModelControl(server.http_url)
    assert control.ready_versions("sae") == [OLD]
    backend = TritonBackend(server.grpc_url, 10.0, repo)
    item_ids = [int(i) for i in np.flatnonzero(ratings[0])]
    query = RecommendRequest(ratings=dict.fromkeys(_movie_ids(onnx_repo, item_ids), 5))

    def answers(model: str):
        return backend.recommend(model, query, "release-test")

    def hybrid_label(sae: str) -> str:
        return f"triton-{OLD} (sae {sae}, rbm {OLD})"  # the ensemble and the RBM stay

    before = answers("sae")
    assert before.version == f"triton-{OLD}" and before.recommendations
    assert not any(item.title.endswith(RENAMED) for item in before.recommendations)
    assert answers("hybrid").version == hybrid_label(OLD)
    assert answers("rbm").version == f"triton-{OLD}"

    source = renamed_copy(onnx_repo / "sae" / OLD, tmp_path / "next")
    with RequestStream(lambda: answers("sae").version) as stream:
        stream.wait_for(BEFORE)
        released = triton_release.release(control, repo, "sae", source, tmp_path / "release")
        stream.wait_for(AFTER)
    assert stream.errors == []
    for thread, versions in stream.versions_by_thread().items():
        assert switches_once(versions, f"triton-{OLD}", f"triton-{NEW}"), (thread, versions[-3:])
    after = answers("sae")
    assert after.version == f"triton-{NEW}"
    assert all(item.title.endswith(RENAMED) for item in after.recommendations)
    hybrid = answers("hybrid")
    assert hybrid.version == hybrid_label(NEW)
    assert all(item.title.endswith(RENAMED) for item in hybrid.recommendations)
    assert backend.recommend("sae", RecommendRequest(ratings={}), "r").version == f"triton-{NEW}"

    with RequestStream(lambda: answers("sae").version) as stream:
        stream.wait_for(BEFORE)
        triton_release.rollback(control, repo, released, tmp_path / "release")
        stream.wait_for(AFTER)
    assert stream.errors == []
    for thread, versions in stream.versions_by_thread().items():
        assert switches_once(versions, f"triton-{NEW}", f"triton-{OLD}"), (thread, versions[-3:])
    back = answers("sae")
    assert back.version == f"triton-{OLD}"
    assert not any(item.title.endswith(RENAMED) for item in back.recommendations)
    assert answers("hybrid").version == hybrid_label(OLD)
    backend.close()
    control.close()


def _movie_ids(onnx_repo, columns: list[int]) -> list[int]:
    from handlers.serving_artifact import ARTIFACT_FILE, ServingArtifact

    artifact = ServingArtifact.load(onnx_repo / "sae" / OLD / ARTIFACT_FILE)
    return [int(artifact.item_ids[column]) for column in columns]
