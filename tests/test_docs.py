"""The documentation as a reader meets it: a README short enough to read first, the commands it
gives being the ones CI and the Makefile run, every relative link (and its anchor) resolving, and
every section that code, configs and scripts cite as README "..." still findable from the README."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 250

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[([^\]\n]*)\]\(([^)\s]+)\)")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
# README "A", README's "A", the README, "A", README 'A', and lists: README "A", "B", "C".
CITATION = re.compile(r"README(?:'s)?,?\s*((?:[\"'][^\"'\n]+[\"'](?:,\s*(?=[\"']))?)+)")
QUOTED = re.compile(r"[\"']([^\"'\n]+)[\"']")


def without_fences(text: str) -> str:
    return FENCE.sub("", text)


def headings(path: Path) -> list[str]:
    return [match.group(2) for match in HEADING.finditer(without_fences(path.read_text(encoding="utf-8")))]


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (word characters, spaces and
    hyphens kept), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(path):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def links(path: Path) -> list[tuple[str, str]]:
    """(text, target) of every Markdown link outside code blocks and code spans."""
    text = INLINE_CODE.sub("", without_fences(path.read_text(encoding="utf-8")))
    return LINK.findall(text)


def shell_commands(path: Path) -> list[str]:
    """Commands of the ```bash blocks of a Markdown file, comments and continuation lines joined."""
    commands = []
    for block in re.findall(r"^```bash\n(.*?)^```", path.read_text(encoding="utf-8"), re.MULTILINE | re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split(" #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(" ".join(shlex.split(command)))
    return commands


def test_readme_is_short_enough_to_read_first():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines; move reference material into docs/"


def test_readme_test_command_is_what_ci_runs():
    """.ci/run runs exactly one command besides shell setup, and the README gives that command."""
    ci = [
        line.strip()
        for line in (ROOT / ".ci/run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.strip().startswith("#") and not re.match(r"(set|cd) ", line.strip())
    ]
    assert ci == ["make test"], ci
    assert "make test" in shell_commands(README)
    assert "`make test` is exactly what CI runs (`.ci/run`)" in README.read_text(encoding="utf-8")
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)


def test_readme_demo_command_is_a_make_target():
    assert "make demo" in shell_commands(README)
    assert re.search(r"^demo:", (ROOT / "Makefile").read_text(encoding="utf-8"), re.MULTILINE)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve_to_files_and_anchors(path):
    found = links(path)
    bad = []
    for text, target in found:
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        destination = (path.parent / file_part).resolve() if file_part else path
        if not destination.exists():
            bad.append(f"[{text}]({target}): no file {destination}")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            bad.append(f"[{text}]({target}): no heading with anchor #{anchor} in {destination.name}")
    assert not bad, "\n".join(bad)


def test_readme_links_every_docs_page():
    linked = {(README.parent / target.partition("#")[0]).resolve() for _, target in links(README)}
    assert not [p.name for p in DOCS if p.resolve() not in linked]


def cited_sections() -> dict[str, list[str]]:
    """Section names cited as README "..." in the code, configs, scripts, Makefile and docs."""
    sources = [ROOT / "Makefile", *DOCS]
    for folder in ("radllm", "configs", "scripts", "tools", "benchmarks", "ds_configs"):
        sources += [p for p in (ROOT / folder).rglob("*") if p.is_file() and p.suffix in {".py", ".yaml", ".yml", ".sh", ".sbatch", ".json"}]
    cited: dict[str, list[str]] = {}
    for path in sources:
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"\n\s*#\s*", " ", text)  # comments continued on the next line
        text = re.sub(r"[\"']\s*\n\s*[\"']", "", text)  # Python strings continued on the next line
        for match in CITATION.finditer(text):
            for name in QUOTED.findall(match.group(1)):
                cited.setdefault(name, []).append(str(path.relative_to(ROOT)))
    return cited


def test_cited_readme_sections_are_headings_linked_from_the_readme():
    """Code says README "Evaluation": the README has that section, or links a page with that heading
    under that name (its map of where each former README section now lives)."""
    cited = cited_sections()
    assert {"Demo", "Evaluation", "Training", "Is my model reading the image?"} <= set(cited), sorted(cited)
    readme_headings = {slug(h) for h in headings(README)}
    readme_links = dict(links(README))
    missing = []
    for name, where in sorted(cited.items()):
        if slug(name) in readme_headings:
            continue
        target = readme_links.get(name)
        if target is None:
            missing.append(f'README "{name}" (cited in {where[0]}): the README has no such section and no link named so')
            continue
        file_part, _, anchor = target.partition("#")
        page = README.parent / file_part
        if slug(name) not in anchors(page) or anchor not in ("", slug(name)):
            missing.append(f'README "{name}" (cited in {where[0]}): the README links it to {target}, which has no heading "{name}"')
    assert not missing, "\n".join(missing)


def test_slug_matches_github_for_the_headings_used_here():
    assert slug("`metrics.json` keys") == "metricsjson-keys"
    assert slug("LoRA / QLoRA") == "lora--qlora"
    assert slug("Is my model reading the image?") == "is-my-model-reading-the-image"
    assert slug("Throughput: radllm's trainer vs the Hugging Face `Trainer`") == "throughput-radllms-trainer-vs-the-hugging-face-trainer"
