"""The package layout keeps its arrows: one table of the parts each part may import, checked by an
AST walk over every module (imports inside functions included), and no import circle anywhere."""

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "workbench"
PARTS = ("base", "config", "data", "tasks", "train", "laws", "runs", "execute", "front")
# part -> the parts it may import (itself included); `front` may import every part, nothing imports it
ALLOWED = {
    "base": {"base"},
    "config": {"base", "config", "tasks"},  # task names are validated against the catalogue
    "data": {"base", "config", "data"},
    "tasks": {"base", "config", "tasks"},
    "train": {"base", "config", "data", "train"},  # never the run store
    "laws": {"base", "config", "laws"},  # torch-free and matplotlib-free
    "runs": {"base", "config", "data", "tasks", "train", "laws", "runs"},
    "execute": {"base", "config", "data", "tasks", "train", "laws", "runs", "execute"},
    "front": set(PARTS),
    "": set(),  # workbench/__init__.py: the public names load lazily, by name
}
LAWS_EXTERNAL = {"numpy", "scipy", "pandas"}  # besides the standard library


def module_name(path: Path, root: Path = ROOT) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def part_of(module: str) -> str:
    bits = module.split(".")
    return bits[1] if len(bits) > 1 else ""


def imports(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(imported module, line) of every import in the file, relative ones resolved; `from
    workbench.part import module` counts as importing that module."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module_name(path, root).split(".")
                pkg = pkg[: len(pkg) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            out.append((base, node.lineno))
            if base == "workbench" or (base.startswith("workbench.") and base.count(".") == 1):
                out += [(f"{base}.{a.name}", node.lineno) for a in node.names
                        if (root.parent / base.replace(".", "/") / f"{a.name}.py").exists()
                        or (root.parent / base.replace(".", "/") / a.name).is_dir()]
    return out


def graph(root: Path = ROOT) -> dict[str, list[tuple[str, int]]]:
    return {module_name(p, root): imports(p, root) for p in sorted(root.rglob("*.py"))}


def violations(edges: dict[str, list[tuple[str, int]]]) -> list[str]:
    bad = []
    for mod, imps in edges.items():
        part = part_of(mod)
        for target, line in imps:
            if target.startswith("workbench"):
                other = part_of(target)
                if other and other not in ALLOWED.get(part, set()) and target != "workbench":
                    bad.append(f"{mod}:{line} imports {target} ({part or 'workbench'} may not import {other})")
            elif part == "laws":
                top = target.split(".")[0]
                if top not in sys.stdlib_module_names and top not in LAWS_EXTERNAL and top != "__future__":
                    bad.append(f"{mod}:{line} imports {target} (laws/ takes only numpy, scipy and pandas)")
    return bad


def cycles(edges: dict[str, list[tuple[str, int]]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (import circles), by Tarjan's algorithm."""
    nodes = set(edges)
    adj = {m: sorted({t for t, _ in imps if t in nodes and t != m}) for m, imps in edges.items()}
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in adj[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    for v in sorted(nodes):
        if v not in index:
            visit(v)
    return out


def test_every_module_sits_in_a_part():
    for mod in graph():
        assert part_of(mod) in PARTS or mod in ("workbench", "workbench.profiles"), mod


def test_imports_follow_the_table():
    assert violations(graph()) == []


def test_no_import_circles():
    assert cycles(graph()) == []


def test_no_module_is_named_like_the_standard_library():
    clash = [module_name(p) for p in ROOT.rglob("*.py") if p.stem in sys.stdlib_module_names and p.stem != "__init__"]
    assert clash == []


@pytest.mark.parametrize("where, line, says", [
    ("laws/report.py", "import torch", "laws/ takes only numpy, scipy and pandas"),
    ("laws/report.py", "from workbench.runs.store import RunStore", "laws may not import runs"),
    ("train/loop.py", "from workbench.runs.store import RunStore", "train may not import runs"),
    ("base/files.py", "from workbench.front.plots import plot_fit", "base may not import front"),
    ("execute/sweep.py", "from workbench.front import cli", "execute may not import front"),
])
def test_a_forbidden_import_fails_the_check(tmp_path, where, line, says):
    """The same check on a copy of the package with one forbidden import added inside a function."""
    import shutil

    copy = tmp_path / "workbench"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / where
    path.write_text(path.read_text() + f"\n\ndef _added():\n    {line}\n")
    found = violations(graph(copy))
    assert found and all(says in f for f in found), found


def test_a_new_circle_fails_the_check(tmp_path):
    import shutil

    copy = tmp_path / "workbench"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns("__pycache__"))
    path = copy / "laws" / "fit.py"  # fit <- report already; report <- fit closes a circle
    path.write_text(path.read_text() + "\n\ndef _added():\n    from workbench.laws.report import law_report\n")
    found = cycles(graph(copy))
    assert any({"workbench.laws.fit", "workbench.laws.report"} <= set(c) for c in found), found
