"""The production TorchServe config: rendered values, and a real server enforcing token auth."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.serving.torchserve_client import TorchServeClient, TorchServeError, read_key_file
from training.serving.torchserve_server import Ports, render_config, start_torchserve


def properties(text: str) -> dict[str, str]:
    lines = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def test_prod_config_keeps_auth_on_and_management_local():
    rendered = properties(render_config("prod", Ports(), Path("/srv/store"), (), "0.0.0.0"))
    assert "disable_token_authorization" not in rendered
    assert rendered["enable_model_api"] == "false"
    assert rendered["inference_address"] == "http://0.0.0.0:8080"
    assert rendered["management_address"].startswith("http://127.0.0.1:")
    assert rendered["metrics_address"].startswith("http://127.0.0.1:")
    assert rendered["allowed_urls"].startswith("file:///srv/store/")
    assert rendered["metrics_mode"] == "prometheus"


def test_dev_config_is_loopback_without_auth():
    rendered = properties(render_config("dev", Ports(), Path("/tmp/s"), (), "127.0.0.1"))
    assert rendered["disable_token_authorization"] == "true"
    assert all("127.0.0.1" in rendered[k] for k in ("inference_address", "management_address"))
    with pytest.raises(ValueError, match="unknown TorchServe config"):
        render_config("staging", Ports(), Path("/tmp/s"), (), "127.0.0.1")


@pytest.mark.slow
def test_prod_server_requires_the_keys_from_key_file(torchserve_model_store, tmp_path):
    server = start_torchserve(
        torchserve_model_store,
        tmp_path / "prod",
        config="prod",
        ports=Ports.free(),
        models=("sae",),
    )
    try:
        keys = read_key_file(server.key_file)
        anonymous = TorchServeClient(server.inference_url, server.management_url)
        for call in (lambda: anonymous.recommend("sae", {"ratings": {}}),
                     lambda: anonymous.describe("sae")):  # fmt: skip
            with pytest.raises(TorchServeError, match="Token Authorization failed"):
                call()
        client = TorchServeClient(server.inference_url, server.management_url,
                                  inference_token=keys["inference"],
                                  management_token=keys["management"])  # fmt: skip
        assert client.recommend("sae", {"ratings": {}, "k": 1})["strategy"] == "popularity"
        assert client.describe("sae")[0]["workers"][0]["status"] == "READY"
        with pytest.raises(TorchServeError) as model_api:
            client.register("sae.mar", "sae_copy")
        assert model_api.value.status == 405  # model API off
        client.renew_key(keys["api"], "inference")
        renewed = read_key_file(server.key_file)["inference"]
        assert renewed != keys["inference"]
        with pytest.raises(TorchServeError):
            client.recommend("sae", {"ratings": {}})
        fresh = TorchServeClient(server.inference_url, inference_token=renewed)
        assert fresh.recommend("sae", {"ratings": {}, "k": 1})["strategy"] == "popularity"
    finally:
        server.stop()
