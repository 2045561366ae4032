"""radllm's layers hold: no import cycle, and no import from a lower layer to a higher one.

    python -m pytest tests/test_architecture.py -q
    python tools/check_architecture.py            # the same check as a report, for a reviewer

The layers are those of docs/architecture.md ("Layers, bottom up"); `LAYERS` mirrors that table
and a test keeps the two equal. Every module of radllm/ is parsed with `ast`, nothing is imported:
a module that fails to import is still checked, and the check runs with the standard library
alone. The check lives here, next to its allow-lists; tools/check_architecture.py only prints
this module's `report()`, so there is one implementation.

Two graphs are read from the same imports:

* layering counts every import, at module level, inside functions and under `TYPE_CHECKING`: a
  lazy import still makes the lower layer depend on the higher one;
* cycles count only the imports a module runs when it is imported (module level and class
  bodies, not functions or `TYPE_CHECKING`): those are the cycles that break an import.

`from package import name` is an import of the submodule `package.name` when there is one, else of
the package's `__init__` (which is what Python runs). Importing a submodule also runs its package's
`__init__`; that implicit step is not counted, because a package whose `__init__` imports its own
submodules would otherwise always be a cycle.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "radllm"
DOCS = ROOT / "docs" / "architecture.md"

#: docs/architecture.md's table, bottom up: each layer's top-level packages and modules of radllm/.
#: A module may import its own layer and the layers below it.
LAYERS: dict[str, tuple[str, ...]] = {
    "foundations": (
        "errors", "atomic", "jsonl", "config", "labels", "clinical_efficacy", "manifest", "report_text", "vocab_spec", "devices",
        "ranks", "preemption", "launcher",
    ),
    "images and studies": ("imaging", "phantoms", "prepare", "labeler"),
    "shared training toolkit": ("recipe",),
    "image tokenizer": ("encoders", "vq"),
    "vocabulary and data": ("vocab", "data", "tasks", "packing"),
    "model side": ("modeling",),
    "generation": ("generation",),
    "LLM trainer": ("training", "config_reference"),
    "evaluation": ("evaluation",),
    "entry points": ("cli", "__main__", "train"),
}

#: Placed in `LAYERS` but not yet in the docs table (name -> layer); an entry must go once the table names it.
UNDOCUMENTED: dict[str, str] = {}

#: radllm/__init__.py runs before any radllm import, so it belongs at the bottom.
ROOT_LAYER = "foundations"

#: Upward imports known and pending, (importing module, imported module) -> why it is left for now
#: (none today). Every entry must still occur (a stale entry fails the test): the list is what is left to mend.
ALLOWED_UPWARD: dict[tuple[str, str], str] = {}

#: Import cycles known and pending, as the sorted modules of the cycle -> why it is left for now.
ALLOWED_CYCLES: dict[tuple[str, ...], str] = {}


@dataclass(frozen=True)
class Import:
    """One import statement's edge between two radllm modules."""

    source: str  # importing module, e.g. "radllm.vq.probe"
    target: str  # imported module (a package stands for its __init__)
    path: Path
    line: int
    at_import: bool  # run when `source` is imported (not in a function or under TYPE_CHECKING)

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def layer_index() -> dict[str, int]:
    """Top-level name -> position of its layer, bottom = 0."""
    return {name: i for i, names in enumerate(LAYERS.values()) for name in names}


def module_name(path: Path) -> str:
    """radllm/vq/probe.py -> radllm.vq.probe; radllm/vq/__init__.py -> radllm.vq."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def modules() -> dict[str, Path]:
    """Every module of the package by dotted name."""
    return {module_name(path): path for path in sorted((ROOT / PACKAGE).rglob("*.py")) if "__pycache__" not in path.parts}


def top_level(module: str) -> str | None:
    """radllm.vq.probe -> vq; the root package -> None."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def layer_of(module: str) -> str | None:
    """The layer of a radllm module, None when its top-level name is not placed in `LAYERS`."""
    top = top_level(module)
    if top is None:
        return ROOT_LAYER
    return next((layer for layer, names in LAYERS.items() if top in names), None)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _statements(nodes: Iterable[ast.AST], at_import: bool = True) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement in `nodes` and below, with whether it runs when the module is imported."""
    for node in nodes:
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, at_import
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield from _statements(ast.iter_child_nodes(node), False)
        elif isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from _statements(node.body, False)
            yield from _statements(node.orelse, at_import)
        else:
            yield from _statements(ast.iter_child_nodes(node), at_import)


def _resolve(module: str, path: Path, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The radllm modules one statement imports (see the module docstring for `from package import name`)."""
    known = modules()
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == PACKAGE]
    base = node.module or ""
    if node.level:  # relative: from the package that holds `module`
        package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        package = package[: len(package) - (node.level - 1)]
        base = ".".join(package + ([base] if base else []))
    if base.split(".")[0] != PACKAGE:
        return []
    return [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]


@cache
def imports() -> tuple[Import, ...]:
    """Every import of a radllm module by a radllm module, in file and line order."""
    found = []
    for module, path in modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, at_import in _statements(tree.body):
            for target in dict.fromkeys(_resolve(module, path, node)):
                if target != module:
                    found.append(Import(module, target, path, node.lineno, at_import))
    return tuple(found)


def unplaced() -> list[str]:
    """Top-level packages and modules of radllm/ that `LAYERS` does not place."""
    placed = set(layer_index())
    return sorted({top for module in modules() if (top := top_level(module)) is not None and top not in placed})


def docs_layers() -> dict[str, tuple[str, ...]]:
    """The first two columns of the docs' layer table: layer -> backticked names (`x.py` as `x`).

    Parenthetical remarks (`cli` "(the `radllm` command)") are dropped, and so are folders outside
    the package (`tools/`).
    """
    lines = DOCS.read_text(encoding="utf-8").split("## Layers", 1)[1].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    rows = lines[start + 2 : end]  # the section's first table, after its header and rule
    table = {}
    for row in rows:
        layer, names = (cell.strip() for cell in row.strip("|").split("|")[:2])
        named = re.findall(r"`([^`]+)`", re.sub(r"\([^)]*\)", "", names))
        table[layer] = tuple(name.removesuffix(".py") for name in named if not name.endswith("/"))
    return table


def upward_imports() -> list[Import]:
    """Imports from a lower layer to a higher one (unplaced modules are reported by `unplaced`)."""
    order = list(LAYERS)
    upward = []
    for edge in imports():
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source is not None and target is not None and order.index(target) > order.index(source):
            upward.append(edge)
    return upward


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of `graph`, iteratively (no recursion limit)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(graph.get(succ, []))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def cycles() -> list[list[Import]]:
    """One shortest cycle through each group of modules that import each other when imported."""
    edges: dict[str, dict[str, Import]] = {}
    for edge in imports():
        if edge.at_import:
            edges.setdefault(edge.source, {}).setdefault(edge.target, edge)
    graph = {source: list(targets) for source, targets in edges.items()}
    found = []
    for component in _strongly_connected(graph):
        if len(component) < 2:
            continue
        members, start = set(component), component[0]
        previous: dict[str, Import] = {}
        frontier = [start]
        while frontier and start not in previous:  # breadth first: the shortest way back to `start`
            following = []
            for node in frontier:
                for target, edge in edges.get(node, {}).items():
                    if target in members and target not in previous:
                        previous[target] = edge
                        following.append(target)
            frontier = following
        chain, node = [], start
        while True:
            chain.append(previous[node])
            node = previous[node].source
            if node == start:
                break
        found.append(chain[::-1])
    return found


def describe_cycle(chain: list[Import]) -> str:
    """radllm.a → radllm.b → radllm.a (radllm/a.py:3, radllm/b.py:7)."""
    names = " → ".join([chain[0].source] + [edge.target for edge in chain])
    return f"{names} ({', '.join(edge.where() for edge in chain)})"


def describe_upward(edge: Import) -> str:
    return f"{edge.where()}: {edge.source} ({layer_of(edge.source)}) → {edge.target} ({layer_of(edge.target)})"


def cycle_key(chain: list[Import]) -> tuple[str, ...]:
    return tuple(sorted(edge.source for edge in chain))


@dataclass
class Findings:
    """What the check found; every list but `allowed` must be empty."""

    unplaced: list[str]  # top-level names of radllm/ that LAYERS does not place
    docs: list[str]  # differences between LAYERS and the docs table
    cycles: list[str]
    upward: list[str]
    allowed: list[str]  # allow-listed cycles and upward imports: what is left to mend
    stale: list[str]  # allow-list entries that no longer occur


def check() -> Findings:
    """Run every check of this module."""
    found = Findings(unplaced(), [], [], [], [], [])
    documented = {layer: tuple(n for n in names if n not in UNDOCUMENTED) for layer, names in LAYERS.items()}
    table = docs_layers()
    if list(table) != list(documented):
        found.docs.append(f"layers bottom up: docs {list(table)} vs LAYERS {list(documented)}")
    for layer in dict.fromkeys([*documented, *table]):
        if sorted(documented.get(layer, ())) != sorted(table.get(layer, ())):
            found.docs.append(f"layer {layer!r}: docs {table.get(layer)} vs LAYERS {documented.get(layer)}")
    for name, layer in UNDOCUMENTED.items():
        if name not in LAYERS[layer] or name in table.get(layer, ()):
            found.stale.append(f"UNDOCUMENTED {name!r} ({layer}): not under that layer in LAYERS, or in the docs table now")
    chains = cycles()
    for chain in chains:
        (found.allowed if cycle_key(chain) in ALLOWED_CYCLES else found.cycles).append(f"cycle: {describe_cycle(chain)}")
    found.stale += [f"ALLOWED_CYCLES {key}" for key in sorted(set(ALLOWED_CYCLES) - {cycle_key(c) for c in chains})]
    upward = upward_imports()
    for edge in upward:
        (found.allowed if (edge.source, edge.target) in ALLOWED_UPWARD else found.upward).append(f"upward: {describe_upward(edge)}")
    found.stale += [f"ALLOWED_UPWARD {key}" for key in sorted(set(ALLOWED_UPWARD) - {(e.source, e.target) for e in upward})]
    return found


def report() -> tuple[str, bool]:
    """The check as text for a reviewer, and whether it passes (allow-listed findings do not fail it)."""
    counts: dict[str, dict[str, int]] = {layer: {} for layer in LAYERS}
    for edge in imports():
        source, target = layer_of(edge.source), layer_of(edge.target)
        if source is not None and target is not None:
            counts[source][target] = counts[source].get(target, 0) + 1
    lines = ["imports per layer, bottom up (importing layer [its packages]: imported layer × imports):"]
    for layer, names in LAYERS.items():
        uses = ", ".join(f"{target} × {n}" for target in LAYERS if (n := counts[layer].get(target)))
        lines.append(f"  {layer} [{', '.join(names)}]: {uses or 'nothing'}")
    found = check()
    sections = (
        ("not placed in a layer (add to LAYERS here and to the docs table)", found.unplaced),
        (f"LAYERS vs the table of {DOCS.relative_to(ROOT)}", found.docs),
        ("import cycles (imports run on import)", found.cycles),
        ("upward imports (a lower layer importing a higher one)", found.upward),
        ("allow-listed, pending (ALLOWED_CYCLES, ALLOWED_UPWARD)", found.allowed),
        ("allow-list entries to remove", found.stale),
    )
    for title, items in sections:
        lines.append(f"{title}: {len(items)}")
        lines += [f"  {item}" for item in items]
    ok = not (found.unplaced or found.docs or found.cycles or found.upward or found.stale)
    return "\n".join(lines), ok


def test_every_top_level_module_is_placed_in_a_layer():
    missing = unplaced()
    assert not missing, f"place these radllm/ packages or modules in LAYERS and in {DOCS.name}'s table: {missing}"


def test_layers_agree_with_the_docs_table():
    found = check()
    assert not found.docs, "LAYERS (less UNDOCUMENTED) differs from the docs table:\n" + "\n".join(found.docs)


def test_no_import_cycle():
    found = check()
    assert not found.cycles, "import cycles among modules run on import:\n" + "\n".join(found.cycles)


def test_no_import_from_a_lower_layer_to_a_higher_one():
    found = check()
    assert not found.upward, "imports from a lower layer to a higher one:\n" + "\n".join(found.upward)


def test_allow_lists_name_only_what_still_occurs():
    found = check()
    assert not found.stale, "allow-list entries that no longer hold (remove them):\n" + "\n".join(found.stale)


def test_the_check_sees_lazy_relative_and_package_imports(tmp_path, monkeypatch):
    """The parser on a hand-made package: what it must count, and at which level."""
    package = tmp_path / PACKAGE
    (package / "low").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "low" / "__init__.py").write_text("from radllm.low import part\n")
    (package / "low" / "part.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from . import other\n"  # relative, a submodule: radllm.low.other
        "if TYPE_CHECKING:\n"
        "    from radllm.high import Thing\n"  # counts for layers only
        "def f():\n"
        "    import radllm.high.deep\n"  # lazy: counts for layers only
    )
    (package / "low" / "other.py").write_text("from radllm.low import helper\n")  # no such submodule: the package
    (package / "high").mkdir()
    (package / "high" / "__init__.py").write_text("")
    (package / "high" / "deep.py").write_text("")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    monkeypatch.setattr(sys.modules[__name__], "LAYERS", {"bottom": ("low",), "top": ("high",)})
    modules.cache_clear()
    imports.cache_clear()
    try:
        found = {(e.source, e.target, e.line, e.at_import) for e in imports()}
        assert found == {
            ("radllm.low", "radllm.low.part", 1, True),
            ("radllm.low.part", "radllm.low.other", 2, True),
            ("radllm.low.part", "radllm.high", 4, False),
            ("radllm.low.part", "radllm.high.deep", 6, False),
            ("radllm.low.other", "radllm.low", 1, True),
        }
        assert [describe_upward(e) for e in upward_imports()] == [
            "radllm/low/part.py:4: radllm.low.part (bottom) → radllm.high (top)",
            "radllm/low/part.py:6: radllm.low.part (bottom) → radllm.high.deep (top)",
        ]
        assert [describe_cycle(chain) for chain in cycles()] == [
            "radllm.low → radllm.low.part → radllm.low.other → radllm.low "
            "(radllm/low/__init__.py:1, radllm/low/part.py:2, radllm/low/other.py:1)"
        ]
    finally:
        modules.cache_clear()
        imports.cache_clear()
