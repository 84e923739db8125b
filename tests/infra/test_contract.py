"""The serving contract has one definition: ``handlers/contract.py``.

Any other module may name a contract value (``MAX_K = contract.MAX_K``) but never spell it out
again as a literal, so a changed limit or a new model changes every server and client at once.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import get_args

from handlers import contract
from training.serving import triton_names as tn
from web import config, profiles, validation

REPO_ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("training", "handlers", "web", "benchmarks", "docker")
CONTRACT_FILE = REPO_ROOT / "handlers" / "contract.py"
# Names under which modules keep contract values.
WATCHED = {
    "SAE",
    "RBM",
    "HYBRID",
    "SCORING_MODELS",
    "HYBRID_PARTS",
    "SERVED_MODELS",
    "MODEL_NAMES",
    "MODELS",
    "MIN_RATING",
    "MAX_RATING",
    "LIKED_RATING",
    "DEFAULT_K",
    "MAX_K",
    "MAX_USERS",
    "MAX_BODY_BYTES",
    "FEEDBACK_KINDS",
    "CLICK_KINDS",
    "ERRORS",
    "TOP_K",
}


def _is_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return all(_is_literal(element) for element in node.elts)
    if isinstance(node, ast.Dict):
        return True
    return isinstance(node, ast.BinOp) and _is_literal(node.left) and _is_literal(node.right)


def literal_definitions() -> list[str]:
    """``file:line name`` of every module-level assignment of a watched name to a literal."""
    found = []
    for folder in SCANNED:
        for path in sorted((REPO_ROOT / folder).rglob("*.py")):
            if path == CONTRACT_FILE or ".venv" in path.parts:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in tree.body:
                if isinstance(node, ast.Assign):
                    targets = [t for t in node.targets]
                elif isinstance(node, ast.AnnAssign) and node.value is not None:
                    targets = [node.target]
                else:
                    continue
                names = []
                for target in targets:
                    elements = target.elts if isinstance(target, ast.Tuple) else [target]
                    names += [e.id for e in elements if isinstance(e, ast.Name)]
                values = node.value.elts if isinstance(node.value, ast.Tuple) else [node.value]
                if any(n in WATCHED for n in names) and any(_is_literal(v) for v in values):
                    found.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {', '.join(names)}")
    return found


def test_no_module_spells_out_a_contract_value_again():
    assert literal_definitions() == []


def test_the_scan_finds_a_literal_redefinition(tmp_path, monkeypatch):
    """The check above can fail: a module that writes MAX_K = 100 is reported."""
    module = REPO_ROOT / "web" / "_contract_probe.py"
    module.write_text("MAX_K = 100\nDEFAULT_K = contract.DEFAULT_K\n", encoding="utf-8")
    try:
        assert literal_definitions() == ["web/_contract_probe.py:1 MAX_K"]
    finally:
        module.unlink()


def test_clients_and_servers_read_the_contract():
    assert validation.MAX_K == contract.MAX_K and validation.DEFAULT_K == contract.DEFAULT_K
    assert validation.FEEDBACK_KINDS == contract.FEEDBACK_KINDS
    assert config.MODEL_NAMES == contract.SERVED_MODELS
    # The API's model-name type (and with it CompareBody's default) names the served models.
    assert get_args(validation.ModelName) == contract.SERVED_MODELS
    assert (profiles.MIN_RATING, profiles.MAX_RATING) == (contract.MIN_RATING, contract.MAX_RATING)
    assert tn.SERVED_MODELS == contract.SERVED_MODELS and tn.TOP_K == contract.GRAPH_TOP_K
    assert tn.N_HYBRID_WEIGHTS == len(contract.HYBRID_PARTS)
    names = {spec.name for specs in tn.MODEL_OUTPUTS.values() for spec in specs}
    names |= {spec.name for specs in tn.MODEL_INPUTS.values() for spec in specs}
    contract_tensors = {
        contract.RATINGS,
        contract.WEIGHTS,
        contract.SCORES,
        contract.RANKING,
        contract.TOP_IDS,
        contract.TOP_SCORES,
        contract.SAE_RANKING,
        contract.RBM_RANKING,
        contract.SAE_SCORES,
    }
    assert names == contract_tensors


def test_every_error_type_has_a_client_error_or_server_error_status():
    for code, (status, when) in contract.ERRORS.items():
        assert 400 <= status < 600 and when, code
