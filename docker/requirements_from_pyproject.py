"""Print pip requirements taken from pyproject.toml, so images install exactly the project's pins.

The Dockerfiles install dependencies in a layer of their own (before the source is copied, so a
code change does not reinstall them) and without repeating a single version: this script is the
bridge. ``--only`` keeps a lean subset (the model server needs torch, not MLflow or Locust).

    python docker/requirements_from_pyproject.py pyproject.toml --extra cpu > requirements.txt
    python docker/requirements_from_pyproject.py pyproject.toml --only torch torchserve numpy
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from pathlib import Path

# PEP 508: the distribution name is the leading run of letters, digits, ".", "_" and "-".
NAME_PATTERN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class RequirementsError(ValueError):
    """pyproject.toml lacks what was asked for; the message names it."""


def normalize(name: str) -> str:
    """PEP 503 normalisation: ``Python_JSON.Logger`` and ``python-json-logger`` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    match = NAME_PATTERN.match(requirement)
    if not match:
        raise RequirementsError(f"not a PEP 508 requirement: {requirement!r}")
    return normalize(match.group(1))


def requirements(
    pyproject: Path, extras: list[str] | None = None, only: list[str] | None = None
) -> list[str]:
    """The project's dependencies plus the named extras, optionally restricted to ``only``."""
    try:
        project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise RequirementsError(f"{pyproject}: no readable [project] table ({exc})") from exc
    selected = list(project.get("dependencies", []))
    optional = project.get("optional-dependencies", {})
    for extra in extras or []:
        if extra not in optional:
            raise RequirementsError(
                f"{pyproject}: no optional dependency group {extra!r}; have {sorted(optional)}"
            )
        selected.extend(optional[extra])
    if only:
        wanted = {normalize(name) for name in only}
        selected = [req for req in selected if requirement_name(req) in wanted]
        missing = wanted - {requirement_name(req) for req in selected}
        if missing:
            raise RequirementsError(f"{pyproject}: no dependency named {sorted(missing)}")
    return selected


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pyproject", type=Path)
    parser.add_argument("--extra", action="append", default=[], help="optional group to add")
    parser.add_argument("--only", nargs="+", help="keep only these distribution names")
    args = parser.parse_args(argv)
    try:
        lines = requirements(args.pyproject, args.extra, args.only)
    except RequirementsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
