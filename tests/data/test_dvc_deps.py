"""Every DVC stage that runs a ``movierec`` command depends on the code that command runs.

For each stage of dvc.yaml whose cmd is ``movierec ...``, the command is found the way
training/cli.py finds it: ``data fetch``, ``data prepare`` and ``train`` are functions of
training/cli.py, whose roots are the project modules imported in the function's body; the other
commands come from the lazy tables (``_TOP_LEVEL``, ``_EXPORT``, ``_SERVE``, ``_MONITOR``), whose
root is the module that implements the command. From the roots, the project modules (packages
training, handlers and web) imported transitively are found by walking each module's AST: every
import statement counts, at the top of a module or inside a function (lazy imports run too),
except those under ``if TYPE_CHECKING:``; importing a module imports its parent packages, so their
``__init__`` counts as well. Each module file found must be covered by a dep of the stage: the
file itself or a folder above it.

Left out on purpose (editing them cannot change what a stage computes):
- training/cli.py, the CLI plumbing every command goes through (argument parsing, the lazy
  tables, ``cli_errors``' exit codes); its own top-level imports are not followed either.
- training/__init__.py (the package's docstring and ``__version__``) and the logging setup
  every module reaches through ``training.config.get_logger`` (logging_config.py and its
  shared_log_file.py): where log lines go is no stage's output.
- Modules with no code, only a docstring (most package markers).
- What is not an import: files a stage reads by path (data, handler sources it archives) are the
  stage's business in dvc.yaml, as are modules imported by name at run time (importlib).
"""

from __future__ import annotations

import ast
import inspect
import shlex
import textwrap
from functools import cache
from pathlib import Path

import pytest
import yaml

from training import cli
from training.config import REPO_ROOT

PACKAGES = ("training", "handlers", "web")
CLI_MODULE = "training.cli"
PLUMBING = {
    "training",
    "training.monitoring.logging_config",
    "training.monitoring.shared_log_file",
}
LAZY_GROUPS = {"export": cli._EXPORT, "serve": cli._SERVE, "monitor": cli._MONITOR}


def module_file(module: str) -> Path | None:
    """The file of a project module (``a.b`` -> a/b.py or a/b/__init__.py), None if not one."""
    if module.split(".")[0] not in PACKAGES:
        return None
    base = REPO_ROOT.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            yield from (n for child in node.orelse for n in _import_nodes_of(child))
            continue
        yield from _import_nodes_of(node)


def _import_nodes_of(node: ast.AST):
    if isinstance(node, ast.Import | ast.ImportFrom):
        yield node
    yield from _import_nodes(node)


def imported_modules(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """The project modules the import statements of ``tree`` (in ``module``) name."""
    found: set[str] = set()
    for node in _import_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            if node.level:
                parts = module.split(".")
                keep = len(parts) - node.level + (1 if is_package else 0)
                base = ".".join(parts[:keep] + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from a import b`: b is a submodule or a name defined in a.
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        found.update(name for name in names if module_file(name) is not None)
    return found


@cache
def module_imports(module: str) -> frozenset[str]:
    path = module_file(module)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return frozenset(imported_modules(tree, module, path.name == "__init__.py"))


def with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def closure(roots: set[str]) -> set[str]:
    """The roots, what they import transitively, and every parent package on the way."""
    seen: set[str] = set()
    todo = [parent for root in roots for parent in with_parents(root)]
    while todo:
        module = todo.pop()
        if module in seen or module == CLI_MODULE:
            continue
        seen.add(module)
        for imported in module_imports(module):
            todo.extend(with_parents(imported))
    return seen


def has_code(module: str) -> bool:
    body = ast.parse(module_file(module).read_text(encoding="utf-8")).body
    docstring = (
        body[:1] and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
    )
    return len(body) > (1 if docstring else 0)


def _cli_function(typer_app, name: str):
    for info in typer_app.registered_commands:
        if (info.name or info.callback.__name__) == name:
            return inspect.unwrap(info.callback)
    raise LookupError(name)


def command_roots(argv: list[str]) -> set[str]:
    """The project modules a ``movierec`` command line starts from."""
    group, rest = argv[0], argv[1:]
    if group in ("data", "train"):
        function = _cli_function(cli.data_app, rest[0]) if group == "data" else cli.train
        function = inspect.unwrap(function)
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
        return imported_modules(tree, CLI_MODULE, is_package=False)
    if group in LAZY_GROUPS:
        return {LAZY_GROUPS[group][rest[0]][0]}
    return {cli._TOP_LEVEL[group][0]}


def movierec_stages() -> dict[str, dict]:
    pipeline = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))
    return {
        name: stage
        for name, stage in pipeline["stages"].items()
        if shlex.split(stage["cmd"])[0] == "movierec"
    }


def covered(path: str, deps: list[str]) -> bool:
    return any(path == dep or path.startswith(dep + "/") for dep in deps)


def uncovered_modules(stage: dict) -> list[str]:
    argv = shlex.split(stage["cmd"])[1:]
    deps = [str(dep).rstrip("/") for dep in stage.get("deps", [])]
    files = {
        module_file(module).relative_to(REPO_ROOT).as_posix()
        for module in closure(command_roots(argv))
        if module not in PLUMBING and has_code(module)
    }
    return sorted(path for path in files if not covered(path, deps))


def test_the_pipeline_stages_are_checked():
    assert {"prepare", "train_sae", "evaluate", "export_torchserve"} <= set(movierec_stages())


@pytest.mark.parametrize("stage", sorted(movierec_stages()))
def test_stage_deps_cover_the_code_its_command_imports(stage):
    missing = uncovered_modules(movierec_stages()[stage])
    assert not missing, f"dvc.yaml stage {stage!r} lacks deps on {missing}"


def test_the_walk_sees_lazy_and_relative_imports():
    """The checks above find something: the train command's roots are its lazy import, and
    what training.train imports is followed (training.models, its parent package included)."""
    assert command_roots(["train", "--model", "sae"]) == {"training.train"}
    assert {"training.models", "training.models.base", "training.config"} <= closure(
        {"training.train"}
    )
    assert command_roots(["export", "torchserve"]) == {"training.export.torchserve"}
    assert command_roots(["evaluate"]) == {"training.evaluate"}
    tree = ast.parse("from . import base\nfrom .sae import SAE\n")
    assert imported_modules(tree, "training.models", is_package=True) == {
        "training.models",
        "training.models.base",
        "training.models.sae",
    }
