"""Render a TorchServe config template (docker/torchserve/config.*.properties) for the image.

The templates use ``${TS_...}`` placeholders that ``movierec serve torchserve`` fills for a local
server (training.serving.torchserve_server.render_config); the image has no project code, so
this standard-library twin fills them with the container's fixed ports and paths and registers
every archive in the container's model store (copied in before this runs), then appends the
container overrides (java.util.Properties keeps the last value of a repeated key).

    python docker/render_torchserve_config.py docker/torchserve/config.prod.properties \
        --overrides docker/torchserve-container.properties > config.properties
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the checker reads the repository's modules (the fallback below)
    from training.serving.torchserve_snapshot import startup_snapshot
else:
    try:  # in the image: copied beside this file
        from torchserve_snapshot import startup_snapshot
    except ImportError:  # in the repository
        from training.serving.torchserve_snapshot import startup_snapshot

# The container's layout: fixed, because compose, Kubernetes and the healthcheck rely on it.
CONTAINER_MODEL_STORE = "/home/model-server/model-store"
CONTAINER_VALUES: dict[str, str | int] = {
    "TS_HOST": "0.0.0.0",
    "TS_INFERENCE_PORT": 8080,
    "TS_MANAGEMENT_PORT": 8081,
    "TS_METRICS_PORT": 8082,
    "TS_GRPC_INFERENCE_PORT": 7070,
    "TS_GRPC_MANAGEMENT_PORT": 7071,
    "TS_MODEL_STORE": CONTAINER_MODEL_STORE,
}


def container_values(model_store: Path | None = None) -> dict:
    """The container's values, with a snapshot of the archives in ``model_store``."""
    store = Path(model_store or CONTAINER_MODEL_STORE)
    names = sorted(path.stem for path in store.glob("*.mar"))
    return {**CONTAINER_VALUES, "TS_MODEL_SNAPSHOT": startup_snapshot(store, names)}


def render(template: str, overrides: str = "", values: dict | None = None) -> str:
    """The template with every placeholder filled (KeyError names a missing one)."""
    text = Template(template).substitute(values or container_values())
    if overrides:
        text = text.rstrip("\n") + "\n" + overrides
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("template", type=Path)
    parser.add_argument("--overrides", type=Path, help="properties appended after rendering")
    args = parser.parse_args(argv)
    try:
        overrides = args.overrides.read_text(encoding="utf-8") if args.overrides else ""
        text = render(args.template.read_text(encoding="utf-8"), overrides)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        print(f"error: {args.template}: unfilled or malformed placeholder {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
