"""Takes the README's pictures of a notebook plot and of the MLflow UI, in headless Chromium.

    .venv/bin/python docs/screenshots.py   # after `make pipeline`: reads data/ and mlflow.db

The notebook (notebooks/model_comparison.ipynb) is executed on the checkout's pipeline outputs,
rendered to HTML by nbconvert and one of its figures photographed; the MLflow UI is the
project's own tracking server (training/serving/mlflow_server.py) over the checkout's store,
on a free port, stopped afterwards. Both PNGs are reduced to a 256-colour palette to stay small.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
OUT = REPO_ROOT / "benchmarks" / "results"
NOTEBOOK = REPO_ROOT / "notebooks" / "model_comparison.ipynb"
NOTEBOOK_SHOT = OUT / "notebook_plot.png"
MLFLOW_SHOT = OUT / "mlflow_ui.png"
# The figure photographed: the hybrid's weights on the precision-vs-novelty curve, the last one.
FIGURE_INDEX = -1
VIEWPORT = {"width": 1280, "height": 720}
TIMEOUT_MS = 60_000
SETTLE_MS = 3_000  # charts and columns fill in after the run names
CHARTS = "val_"  # the charts shown: the validation figures per epoch, the learning curves
CELL_TIMEOUT_S = 120
PALETTE_COLOURS = 256


def shrink(path: Path) -> Path:
    """A 256-colour palette PNG: screenshots of plots and tables lose nothing visible."""
    from PIL import Image

    with Image.open(path) as image:
        image.convert("RGB").quantize(PALETTE_COLOURS).save(path, optimize=True)
    return path


def executed_notebook_html(folder: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT_S,
        kernel_name="python3",
        resources={"metadata": {"path": str(NOTEBOOK.parent)}},
    ).execute()
    html, _ = HTMLExporter().from_notebook_node(notebook)
    page = folder / "model_comparison.html"
    page.write_text(html, encoding="utf-8")
    return page


def main() -> int:
    from mlflow import MlflowClient
    from playwright.sync_api import sync_playwright

    from training.config import Paths, load_params
    from training.serving.mlflow_server import start_mlflow_server

    with tempfile.TemporaryDirectory() as tmp:
        page_file = executed_notebook_html(Path(tmp))
        server = start_mlflow_server(Paths())
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(
                    executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
                )
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(page_file.as_uri())
                figure = page.locator(".jp-OutputArea-output img").nth(FIGURE_INDEX)
                figure.scroll_into_view_if_needed()
                figure.screenshot(path=str(NOTEBOOK_SHOT))
                name = load_params().mlflow.experiment_name
                experiment = MlflowClient(server.url).get_experiment_by_name(name)
                if experiment is None:
                    raise SystemExit(f"no MLflow experiment {name!r}: run `make pipeline` first")
                runs = f"{server.url}/#/experiments/{experiment.experiment_id}/runs"
                page.goto(f"{runs}?compareRunsMode=CHART")  # the runs beside their charts
                page.get_by_text("train-sae").first.wait_for(timeout=TIMEOUT_MS)
                assistant = page.get_by_role("button", name="Close", exact=True)
                if assistant.count():  # MLflow's assistant panel opens on a first visit
                    assistant.first.click()
                page.get_by_placeholder("Search metric charts").fill(CHARTS)
                page.wait_for_timeout(SETTLE_MS)  # the UI polls, so it never goes network-idle
                page.screenshot(path=str(MLFLOW_SHOT))
                browser.close()
        finally:
            server.stop()
    for shot in (NOTEBOOK_SHOT, MLFLOW_SHOT):
        print(f"{shrink(shot)}: {shot.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
