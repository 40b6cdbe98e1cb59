"""The package's architecture, checked on its source: no import circle among guider's modules,
the report imports no model or method code, the study is not re-derived from text, and the
workflow glue stays thin."""

from __future__ import annotations

import ast
from pathlib import Path

from snakemake_runner import ROOT

PACKAGE = ROOT / "guider"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The guider modules `path` imports (`from pkg import name` counts as pkg.name when that is
    a module); with top_level_only, only the imports run when the module is imported."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("guider")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("guider"):
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in MODULES else node.module)
    return {m for m in found if m in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(node):
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found


def test_no_import_circle_among_guiders_modules():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in MODULES.items()}
    assert cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_the_method_base_class_imports_no_method():
    used = imports(MODULES["guider.methods.base"], top_level_only=False)
    assert not {m for m in used if m.startswith("guider.methods")}


def test_the_report_imports_no_model_or_method_code():
    for name, path in MODULES.items():
        if name.startswith("guider.report"):
            bad = {m for m in imports(path, top_level_only=False) if m.startswith(("guider.models", "guider.methods"))}
            assert not bad, f"{name} imports {bad}"


def test_nothing_counts_or_labels_by_parsing_text():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "parse_dry_run" not in text and "parse_run_path" not in text, path


def test_the_workflow_glue_stays_thin():
    lines = (ROOT / "workflow" / "rules" / "common.smk").read_text().splitlines()
    assert len(lines) < 250


def test_top_level_modules_are_few_and_grouped():
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert top == ["__init__.py", "cli.py", "study.py"]
    data = sorted(p.name for p in (PACKAGE / "data").glob("*.py"))
    assert data == ["__init__.py"]
