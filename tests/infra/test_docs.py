"""The docs: the generated reference matches the code, every relative link lands, the README stays
a front door, and MkDocs builds the site in strict mode.

docs/api.md and docs/configuration.md are regenerated in memory (docs/generate.py) and compared
with the committed files, so a new route, error answer, request field or variable that nobody
documented fails here; `make docs` rewrites them.
"""

from __future__ import annotations

import difflib
import re
import subprocess
import sys
from functools import cache
from pathlib import Path

import pytest
import yaml
from markdown_it import MarkdownIt

from tests.fixtures.scripts import load_script

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"
README = REPO_ROOT / "README.md"
MAX_README_LINES = 300
# The Markdown files whose links must land: the README, everything under docs/, and the
# benchmark history the docs point to.
MARKDOWN = sorted(
    [README, REPO_ROOT / "benchmarks" / "results" / "history.md", *DOCS.rglob("*.md")]
)
EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.IGNORECASE)  # http:, https:, mailto:, ...
MOVIEREC_COMMAND = re.compile(r"`(movierec [^`]+)`")
STAGE_NAME = re.compile(r"`([a-z_]+)`")


@cache
def generator():
    return load_script(DOCS / "generate.py")


@cache
def parser() -> MarkdownIt:
    return MarkdownIt("commonmark").enable("table")


def _relative(path: Path) -> str:
    return str(path.relative_to(REPO_ROOT))


# --- generated reference ---------------------------------------------------------------------
@pytest.mark.parametrize("name", ["api.md", "configuration.md"])
def test_generated_reference_matches_the_code(name):
    render = generator().OUTPUTS[name]
    expected = render()
    committed = (DOCS / name).read_text(encoding="utf-8")
    if committed != expected:
        diff = "".join(
            list(
                difflib.unified_diff(
                    committed.splitlines(keepends=True),
                    expected.splitlines(keepends=True),
                    f"docs/{name} (committed)",
                    f"docs/{name} (from the code)",
                )
            )[:60]
        )
        pytest.fail(f"docs/{name} is stale: run `make docs`\n{diff}")


def test_generator_refuses_an_undocumented_variable(monkeypatch):
    from web import config

    monkeypatch.setitem(config.ENV_VARS, "NEW_SETTING", "rate_limit")
    with pytest.raises(SystemExit, match="NEW_SETTING"):
        generator().render_configuration()


def test_generator_refuses_an_undocumented_route(monkeypatch):
    notes = dict(generator().ROUTE_NOTES)
    del notes["api.recommend"]
    monkeypatch.setattr(generator(), "ROUTE_NOTES", notes)
    with pytest.raises(SystemExit, match="api.recommend"):
        generator().render_api()


# --- links -----------------------------------------------------------------------------------
def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def _inline_text(token) -> str:
    return "".join(child.content for child in token.children or [] if child.type != "softbreak")


@cache
def anchors(path: Path) -> frozenset[str]:
    tokens = parser().parse(path.read_text(encoding="utf-8"))
    seen: dict[str, int] = {}
    found = set()
    for index, token in enumerate(tokens):
        if token.type != "heading_open":
            continue
        slug = github_slug(_inline_text(tokens[index + 1]))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return frozenset(found)


def links(path: Path) -> list[str]:
    """Every link and image target outside code."""
    found = []

    def walk(tokens):
        for token in tokens:
            if token.type == "link_open":
                found.append(token.attrGet("href"))
            elif token.type == "image":
                found.append(token.attrGet("src"))
            if token.children:
                walk(token.children)

    walk(parser().parse(path.read_text(encoding="utf-8")))
    return found


@pytest.mark.parametrize("path", MARKDOWN, ids=_relative)
def test_relative_links_land(path):
    broken = []
    for target in links(path):
        if not target or EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading #{anchor} in {_relative(destination)}")
    assert not broken, f"{_relative(path)}: " + "; ".join(broken)


def test_every_docs_page_is_reachable_from_the_readme_or_the_index():
    linked = set()
    for page in (README, DOCS / "index.md", DOCS / "decisions" / "index.md"):
        for target in links(page):
            if not EXTERNAL.match(target) and target.split("#")[0]:
                linked.add((page.parent / target.split("#")[0]).resolve())
    pages = {path.resolve() for path in DOCS.rglob("*.md")} - {(DOCS / "index.md").resolve()}
    assert not sorted(map(str, pages - linked))


# --- the README ------------------------------------------------------------------------------
def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, f"README.md has {len(lines)} lines"
    # The two commands open the README; CI runs the README's test command (.ci/run).
    fence = lines.index("```bash")
    assert fence <= 3
    commands = [line.split("#")[0].strip() for line in lines[fence + 1 : fence + 3]]
    assert commands == ["make up", "make test"]
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "```mermaid" in lines


def test_readme_stage_table_matches_dvc_yaml():
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text(encoding="utf-8"))["stages"]
    documented = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 2 or not (command := MOVIEREC_COMMAND.search(cells[1])):
            continue
        for name in STAGE_NAME.findall(cells[0]):
            documented[name] = command.group(1)
    assert sorted(documented) == sorted(stages), "the README's stage table and dvc.yaml differ"
    for name, stage in stages.items():
        assert stage["cmd"].startswith(documented[name]), (name, stage["cmd"], documented[name])


# --- the site --------------------------------------------------------------------------------
def test_mkdocs_builds_the_site_in_strict_mode(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "api" / "index.html").is_file()
