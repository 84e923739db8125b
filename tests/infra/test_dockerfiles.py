"""The images in docker/, checked without a Docker engine.

hadolint lints every Dockerfile (failing on any finding, info included); the build context is
checked against .dockerignore the way Docker matches it (every COPY source must be admitted and
exist); the helper scripts the images run are tested for real: the requirements filter, the
TorchServe config renderer (against the project's own renderer) and the TorchServe healthcheck
(against a real TorchServe with token authorization on).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.fixtures.polling import poll
from tests.fixtures.scripts import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCKER_DIR = REPO_ROOT / "docker"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile*"))
DOCKERIGNORE = REPO_ROOT / ".dockerignore"
BIN_DIR = Path(sys.executable).parent
# Build outputs the images copy: absent in a fresh clone, present after `make up`.
BUILD_OUTPUTS = ("model_store/*.mar",)
IMAGES_WITH_HEALTHCHECK = ("Dockerfile.torchserve", "Dockerfile.web")
CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu"
TORCHSERVE_READY_TIMEOUT_S = 120
HEALTH_POLL_S = 1.0


def _tool(name: str) -> str:
    found = shutil.which(name, path=str(BIN_DIR)) or shutil.which(name)
    if found is None:
        pytest.fail(f"{name} not found: `make setup` installs it (dev extra)")
    return found


def _load(script: str):
    return load_script(DOCKER_DIR / f"{script}.py")


def _instructions(dockerfile: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _final_stage(dockerfile: Path) -> list[tuple[str, str]]:
    instructions = _instructions(dockerfile)
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from:]


# --- .dockerignore, matched as Docker's patternmatcher does -------------------------------------
def _pattern_regex(pattern: str) -> re.Pattern:
    pattern = pattern.strip("/")
    out, i = "", 0
    while i < len(pattern):
        char = pattern[i]
        if pattern.startswith("**", i):
            out += ".*"
            i += 2
            if pattern.startswith("/", i):  # "**/" also matches no folder at all
                out = out[:-2] + "(?:.*/)?"
                i += 1
            continue
        out += {"*": "[^/]*", "?": "[^/]"}.get(char, re.escape(char))
        i += 1
    return re.compile(out)


def _dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    rules = []
    for line in DOCKERIGNORE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            negated = line.startswith("!")
            rules.append((negated, _pattern_regex(line.lstrip("!"))))
    return rules


def _admitted(path: str, rules) -> bool:
    """Last matching rule wins; a rule matching a parent folder matches the path too."""
    parts = path.split("/")
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    excluded = False
    for negated, regex in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            excluded = not negated
    return not excluded


def _copy_sources(dockerfile: Path) -> list[str]:
    sources = []
    for keyword, args in _instructions(dockerfile):
        if keyword != "COPY" or "--from=" in args:
            continue
        words = [word for word in args.split() if not word.startswith("--")]
        sources.extend(words[:-1])
    return sources


# --- tests --------------------------------------------------------------------------------------
def test_every_image_is_here():
    assert {path.name for path in DOCKERFILES} >= {
        "Dockerfile.torchserve", "Dockerfile.web", "Dockerfile.training"
    }  # fmt: skip


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_hadolint_passes(dockerfile):
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", "--failure-threshold", "info", str(dockerfile)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install flask\n")
    result = subprocess.run(
        [_tool("hadolint"), "--no-color", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "DL3006" in result.stdout  # untagged base image
    assert "DL3013" in result.stdout  # unpinned pip package


def test_entrypoint_script_passes_shellcheck():
    result = subprocess.run(
        [_tool("shellcheck"), str(DOCKER_DIR / "web-entrypoint.sh")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_copy_sources_exist_and_pass_dockerignore(dockerfile):
    rules = _dockerignore_rules()
    for source in _copy_sources(dockerfile):
        if source in BUILD_OUTPUTS:
            example = source.replace("*", "example")
            assert _admitted(example, rules), f"{dockerfile.name}: .dockerignore drops {source}"
            continue
        assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such path"
        assert _admitted(source, rules), f"{dockerfile.name}: .dockerignore drops {source}"


def test_dockerignore_keeps_data_and_secrets_out():
    rules = _dockerignore_rules()
    for private in (
        "data/raw/ml-100k/u.data",
        "docker/.env",
        ".venv/bin/python",
        ".git/config",
        "mlflow.db",
        "mlruns/0/meta.yaml",
        "web/__pycache__/app.cpython-311.pyc",
    ):
        assert not _admitted(private, rules), private
    for needed in (
        "training/config.py",
        "web/templates/base.html",
        "pyproject.toml",
        "model_store/sae.mar",
        "docker/torchserve/log4j2.xml",
    ):
        assert _admitted(needed, rules), needed


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_runs_as_non_root(dockerfile):
    users = [args for keyword, args in _final_stage(dockerfile) if keyword == "USER"]
    assert users, f"{dockerfile.name}: no USER in the final stage"
    assert users[-1].split(":")[0] not in {"root", "0"}


@pytest.mark.parametrize("name", IMAGES_WITH_HEALTHCHECK)
def test_serving_images_have_a_healthcheck(name):
    assert any(keyword == "HEALTHCHECK" for keyword, _ in _final_stage(DOCKER_DIR / name))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_torch_pin_and_cpu_wheel_match_pyproject(dockerfile):
    pins = _load("requirements_from_pyproject").requirements(REPO_ROOT / "pyproject.toml")
    torch_pin = next(pin for pin in pins if pin.startswith("torch=="))
    text = dockerfile.read_text()
    assert torch_pin in text
    assert f"ARG TORCH_INDEX_URL={CPU_TORCH_INDEX}" in text


def test_torchserve_image_is_multi_stage_on_java_17():
    froms = [args for keyword, args in _instructions(DOCKER_DIR / "Dockerfile.torchserve")
             if keyword == "FROM"]  # fmt: skip
    assert len(froms) >= 2
    assert "ARG JRE_IMAGE=eclipse-temurin:17-" in (DOCKER_DIR / "Dockerfile.torchserve").read_text()


def test_requirements_filter(tmp_path):
    module = _load("requirements_from_pyproject")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        textwrap.dedent("""
        [project]
        name = "x"
        dependencies = ["torch==2.13.0", "Python_JSON.Logger==4.2.0", "psycopg[binary]==3.3.9"]
        [project.optional-dependencies]
        cpu = ["onnxruntime==1.31.1"]
    """)
    )
    assert module.requirements(pyproject, ["cpu"]) == [
        "torch==2.13.0", "Python_JSON.Logger==4.2.0", "psycopg[binary]==3.3.9",
        "onnxruntime==1.31.1",
    ]  # fmt: skip
    assert module.requirements(pyproject, only=["python-json-logger", "psycopg"]) == [
        "Python_JSON.Logger==4.2.0", "psycopg[binary]==3.3.9"
    ]  # fmt: skip
    with pytest.raises(module.RequirementsError, match="gpu"):
        module.requirements(pyproject, ["gpu"])
    with pytest.raises(module.RequirementsError, match="flask"):
        module.requirements(pyproject, only=["flask"])
    assert module.main([str(tmp_path / "missing.toml")]) == 2


def test_torchserve_image_packages_are_in_pyproject():
    """The lean server install names only real dependencies (a typo would fail the build)."""
    module = _load("requirements_from_pyproject")
    match = re.search(
        r'ARG SERVER_PACKAGES="([^"]+)"', (DOCKER_DIR / "Dockerfile.torchserve").read_text()
    )
    names = match.group(1).split()
    pins = module.requirements(REPO_ROOT / "pyproject.toml", only=names)
    assert len(pins) == len(names)


def test_rendered_config_matches_the_project_renderer(tmp_path):
    """The image's standard-library renderer and training.serving's agree on the template."""
    from training.serving.torchserve_server import Ports, render_config

    renderer = _load("render_torchserve_config")
    ports = Ports(18080, 18081, 18082, 17070, 17071)
    model_store = tmp_path / "store"
    expected = render_config("prod", ports, model_store, (), "0.0.0.0")
    values = {
        "TS_HOST": "0.0.0.0", "TS_INFERENCE_PORT": 18080, "TS_MANAGEMENT_PORT": 18081,
        "TS_METRICS_PORT": 18082, "TS_GRPC_INFERENCE_PORT": 17070,
        "TS_GRPC_MANAGEMENT_PORT": 17071, "TS_MODEL_STORE": model_store,
        "TS_MODEL_SNAPSHOT": renderer.container_values(model_store)["TS_MODEL_SNAPSHOT"],
    }  # fmt: skip
    template = (DOCKER_DIR / "torchserve" / "config.prod.properties").read_text()
    assert renderer.render(template, values=values) == expected


def _properties(text: str) -> dict[str, str]:
    """java.util.Properties semantics for these files: key=value lines, the last one wins."""
    props = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith(("#", "!")):
            key, _, value = line.partition("=")
            props[key.strip()] = value.strip()
    return props


def test_image_config_keeps_production_security():
    renderer = _load("render_torchserve_config")
    text = renderer.render(
        (DOCKER_DIR / "torchserve" / "config.prod.properties").read_text(),
        (DOCKER_DIR / "torchserve-container.properties").read_text(),
    )
    props = _properties(text)
    assert props.get("disable_token_authorization", "false") == "false"
    assert props.get("enable_model_api", "false") == "false"
    assert props["management_address"].startswith("http://127.0.0.1:")
    assert props["inference_address"] == "http://0.0.0.0:8080"
    assert props["metrics_address"] == "http://0.0.0.0:8082"
    assert props["model_store"] == "/home/model-server/model-store"
    assert props["allowed_urls"].startswith("file:///home/model-server/model-store/")
    assert "$" not in text.replace("\\\\", ""), "a placeholder was left unfilled"


def test_renderer_names_an_unfilled_placeholder(tmp_path, capsys):
    template = tmp_path / "config.properties"
    template.write_text("inference_address=http://${TS_HOST}:${TS_NOPE}\n")
    assert _load("render_torchserve_config").main([str(template)]) == 2
    assert "TS_NOPE" in capsys.readouterr().err


# --- the TorchServe healthcheck against a real server -------------------------------------------
ECHO_HANDLER = '''
def handle(data, context):
    """Answers every request with "ok": enough for a model to be registered and READY."""
    if data is None:
        return None
    return ["ok" for _ in data]
'''


@pytest.fixture(scope="module")
def secured_torchserve(tmp_path_factory):
    """A real TorchServe with the production config (token auth on) serving one tiny model."""
    from training.serving import processes
    from training.serving.torchserve_server import Ports

    home = tmp_path_factory.mktemp("ts-health")
    store = home / "store"
    for folder in (store, home / "tmp", home / "logs", home / "run"):
        folder.mkdir()
    (home / "echo_handler.py").write_text(ECHO_HANDLER)
    subprocess.run(
        [_tool("torch-model-archiver"), "--model-name", "echo", "--version", "1.0",
         "--handler", str(home / "echo_handler.py"), "--export-path", str(store)],
        check=True, timeout=120,
    )  # fmt: skip
    ports = Ports.free()
    renderer = _load("render_torchserve_config")
    values = {
        "TS_HOST": processes.LOOPBACK, "TS_INFERENCE_PORT": ports.inference,
        "TS_MANAGEMENT_PORT": ports.management, "TS_METRICS_PORT": ports.metrics,
        "TS_GRPC_INFERENCE_PORT": ports.grpc_inference,
        "TS_GRPC_MANAGEMENT_PORT": ports.grpc_management, "TS_MODEL_STORE": store,
        "TS_MODEL_SNAPSHOT": renderer.container_values(store)["TS_MODEL_SNAPSHOT"],
    }  # fmt: skip
    config = home / "config.properties"
    template = (DOCKER_DIR / "torchserve" / "config.prod.properties").read_text()
    config.write_text(renderer.render(template, values=values))
    env = dict(
        os.environ,
        TMPDIR=str(home / "tmp"),
        TEMP=str(home / "tmp"),
        LOG_LOCATION=str(home / "logs"),
        METRICS_LOCATION=str(home / "logs"),
    )
    env["PATH"] = f"{BIN_DIR}{os.pathsep}{env.get('PATH', '')}"
    with (home / "logs" / "launcher.log").open("ab") as log:
        server = subprocess.Popen(
            [_tool("torchserve"), "--start", "--foreground", "--ncs", "--ts-config", str(config),
             "--model-store", str(store),
             "--log-config", str(DOCKER_DIR / "torchserve" / "log4j2.xml")],
            cwd=home / "run", env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        yield {"home": home, "key_file": home / "run" / "key_file.json",
               "management_url": f"http://{processes.LOOPBACK}:{ports.management}",
               "process": server}  # fmt: skip
    finally:
        processes.terminate(server.pid)


def _healthcheck(key_file: Path, management_url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(DOCKER_DIR / "healthcheck_torchserve.py")],
        env=dict(os.environ, TS_KEY_FILE=str(key_file), TS_MANAGEMENT_URL=management_url),
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def _wait_healthy(server) -> subprocess.CompletedProcess:
    def healthcheck() -> subprocess.CompletedProcess:
        assert server["process"].poll() is None, "TorchServe exited; see its launcher.log"
        return _healthcheck(server["key_file"], server["management_url"])

    return poll(healthcheck, lambda result: result.returncode == 0,
                TORCHSERVE_READY_TIMEOUT_S, HEALTH_POLL_S)  # fmt: skip


@pytest.mark.slow
def test_healthcheck_against_real_torchserve(secured_torchserve):
    result = _wait_healthy(secured_torchserve)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip() == "healthy"
    # Token auth is really on: without the key the management API refuses.
    refused = _healthcheck(secured_torchserve["home"] / "no-such-key-file.json",
                           secured_torchserve["management_url"])  # fmt: skip
    assert refused.returncode == 1
    assert "unhealthy" in refused.stdout


@pytest.mark.slow
def test_healthcheck_renews_a_rejected_management_key(secured_torchserve):
    assert _wait_healthy(secured_torchserve).returncode == 0
    key_file = secured_torchserve["key_file"]
    keys = json.loads(key_file.read_text())
    keys["management"]["key"] = "expired-key"
    key_file.write_text(json.dumps(keys))
    result = _healthcheck(key_file, secured_torchserve["management_url"])
    assert result.returncode == 0, result.stdout
    assert json.loads(key_file.read_text())["management"]["key"] != "expired-key"


@pytest.mark.slow
def test_healthcheck_fails_when_server_is_unreachable(secured_torchserve):
    from training.serving import processes

    closed = f"http://{processes.LOOPBACK}:{processes.free_port()}"
    result = _healthcheck(secured_torchserve["key_file"], closed)
    assert result.returncode == 1
    assert "unhealthy" in result.stdout


def _entrypoint(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    command = ["/bin/sh", str(DOCKER_DIR / "web-entrypoint.sh")]
    environment = {"PATH": f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}", **env}
    return subprocess.run(
        [*command, "sh", "-c", 'printf %s "$TORCHSERVE_TOKEN"'],
        env=environment, capture_output=True, text=True, timeout=30,
    )  # fmt: skip


def test_web_entrypoint_checks_the_key_file_and_leaves_the_key_to_the_app(tmp_path):
    key_file = tmp_path / "key_file.json"
    key_file.write_text(json.dumps({"inference": {"key": "inf-key"}, "API": {"key": "api"}}))
    # Keys expire: the app reads TORCHSERVE_KEY_FILE (again when a key is refused), so the
    # entrypoint must not pin the key of the moment into TORCHSERVE_TOKEN.
    started = _entrypoint(tmp_path, TORCHSERVE_KEY_FILE=str(key_file))
    assert started.returncode == 0 and started.stdout == ""
    missing = _entrypoint(tmp_path, TORCHSERVE_KEY_FILE=str(tmp_path / "absent.json"))
    assert missing.returncode != 0
    assert "absent.json" in missing.stderr
