"""The notebooks: committed without outputs and in sync with their jupytext `.py` pairs, and each
one executed top to bottom on the pipeline's real outputs (the `tracked_home` fixture: a
tracked training run, the evaluation report, an Optuna study, a real MLflow server)."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

from tests.fixtures.mlflow_server import TUNE_TRIALS

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
NOTEBOOKS = ("eda", "model_comparison", "hyperparameter_analysis")
PAIRING = "ipynb,py:percent"
CELL_TIMEOUT_S = 120  # the whole of a notebook runs in well under two minutes on 2 cores
# Figures each notebook must draw at least (plots of the session's data, not placeholders).
MIN_FIGURES = {"eda": 3, "model_comparison": 5, "hyperparameter_analysis": 4}


def read_ipynb(name: str) -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)


def cell_contents(notebook: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_is_committed_without_outputs(name):
    notebook = read_ipynb(name)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code, f"{name}.ipynb has no code"
    dirty = [i for i, cell in enumerate(code) if cell.outputs or cell.execution_count is not None]
    assert not dirty, f"{name}.ipynb: code cells {dirty} keep outputs; `jupytext --sync` then strip"
    assert notebook.metadata["jupytext"]["formats"] == PAIRING


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_matches_its_py_pair(name):
    """The `.py` percent file is the source reviewers read: the notebook says the same."""
    import jupytext

    paired = jupytext.read(NOTEBOOKS_DIR / f"{name}.py")
    assert cell_contents(paired) == cell_contents(read_ipynb(name)), (
        f"notebooks/{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.py`"
    )


def figures(notebook: nbformat.NotebookNode) -> int:
    return sum(
        "image/png" in output.get("data", {})
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_notebook_runs_on_the_pipeline_outputs(name, tracked_home):
    from nbclient import NotebookClient

    notebook = read_ipynb(name)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOKS_DIR)}},
    )
    env = {**os.environ, **tracked_home.environment()}
    env.pop("MPLBACKEND", None)  # the kernel's inline backend, so figures become outputs
    client.execute(env=env)  # raises CellExecutionError, naming the cell, on any error
    text = "\n".join(
        output.get("text", "") + str(output.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.outputs
    )
    assert f"project root: {tracked_home.root}" in text  # it read the session's home
    drawn = figures(notebook)  # counted first: a failing assert would print the whole notebook
    assert drawn >= MIN_FIGURES[name]
    if name == "model_comparison":
        assert f"sae: learning curve from the MLflow run {tracked_home.sae_run_id[:8]}" in text
    if name == "hyperparameter_analysis":
        assert f"{tracked_home.study_name}: 1 tune run(s), {TUNE_TRIALS} trial run(s)" in text
