"""The package's shape, read from its source with ast: the layer order of imports, no import
cycle, one home per task (tasks/) and per cell (layers/), and a small generic loop.

    cli, serve, demos -> api -> training -> tasks -> models, data, decoding, ... -> layers
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from rnnkit.layers.cells import CELLS
from rnnkit.tasks import TASKS

SRC = Path(__file__).resolve().parents[1] / "src" / "rnnkit"

# a module may import modules of its own rank or lower, never higher
RANKS = {"errors": 0, "fileio": 0, "limits": 0, "presets": 0, "version": 0, "fair_share": 0,
         "allocator": 0,
         "layers": 1,
         "models": 2, "data": 2, "decoding": 2, "ctc": 2, "metrics": 2, "images": 2, "losses": 2,
         "scheduled_sampling": 2, "plots": 2,
         "tasks": 3,
         "training": 4,
         "api": 5, "onnx_export": 5,
         "serve": 6, "demos": 6, "examples_support": 6, "cli": 6,
         "__init__": 7, "__main__": 7}


def module_name(path: Path) -> str:
    parts = ("rnnkit", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(SRC.rglob("*.py"))}


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def type_checking_only(node: ast.AST, parents: dict) -> bool:
    while node in parents:
        node = parents[node]
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def imports_of(name: str) -> set[str]:
    """The rnnkit modules ``name`` imports, anywhere in its body (a function-level import is
    a dependency too); ``from pkg import sub`` counts as importing the submodule."""
    tree = ast.parse(MODULES[name].read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    base = name if is_package(name) else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(tree):
        if type_checking_only(node, parents):
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("rnnkit")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.split(".")[:len(base.split(".")) - node.level + 1]
                target = ".".join(anchor + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("rnnkit"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & MODULES.keys()
            found |= subs if subs else {target}
    return {m for m in found if m in MODULES and m != name}


def rank_of(name: str) -> int:
    parts = name.split(".")
    return RANKS[parts[1] if len(parts) > 1 else "__init__"]


GRAPH = {name: imports_of(name) for name in MODULES}


def test_every_module_has_a_rank():
    assert {n.split(".")[1] for n in MODULES if "." in n} <= RANKS.keys()


@pytest.mark.parametrize("name", sorted(MODULES))
def test_nothing_imports_upward(name):
    upward = sorted(m for m in GRAPH[name] if rank_of(m) > rank_of(name))
    assert not upward, f"{name} imports {upward}, which sit above it"


def test_no_import_cycle():
    done, path = set(), []

    def visit(name):
        if name in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(name):] + [name]))
        if name in done:
            return
        path.append(name)
        for dep in sorted(GRAPH[name]):
            visit(dep)
        path.pop()
        done.add(name)

    for name in sorted(GRAPH):
        visit(name)


def test_training_imports_no_task_module():
    """The trainer is handed a Task: it knows the protocol and the registry, no task."""
    for name, deps in GRAPH.items():
        if name.startswith("rnnkit.training"):
            assert not {d for d in deps if d.startswith("rnnkit.tasks.")} - {
                "rnnkit.tasks.base"}, name


def string_comparisons(path: Path, names: set[str], root: Path = SRC) -> list[str]:
    """Places where code compares against one of ``names`` or dispatches on them with a
    dict literal: `x == "lm"`, `x in ("lm", ...)`, `{"lm": ..., "tag": ...}[x]`."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            sides = [node.left, *node.comparators]
            consts = [c for s in sides for c in ([s] if isinstance(s, ast.Constant) else
                                                 getattr(s, "elts", []))]
            if any(isinstance(c, ast.Constant) and c.value in names for c in consts):
                found.append(f"{path.relative_to(root)}:{node.lineno}")
        elif isinstance(node, ast.Dict):
            keys = [k.value for k in node.keys if isinstance(k, ast.Constant)]
            if sum(k in names for k in keys) >= 2:
                found.append(f"{path.relative_to(root)}:{node.lineno}")
    return found


def test_no_task_name_compared_outside_tasks():
    outside = [p for p in MODULES.values() if "tasks" not in p.relative_to(SRC).parts]
    found = [hit for p in outside for hit in string_comparisons(p, set(TASKS))]
    assert not found, f"task names compared outside tasks/: {found}"


def test_no_cell_name_compared_outside_layers():
    outside = [p for p in MODULES.values() if "layers" not in p.relative_to(SRC).parts]
    found = [hit for p in outside for hit in string_comparisons(p, set(CELLS))]
    assert not found, f"cell names compared outside layers/: {found}"


def test_the_training_loop_stays_small():
    lines = (SRC / "training" / "loop.py").read_text().count("\n")
    assert lines < 350, f"training/loop.py has {lines} lines"


def test_the_checks_can_fail(tmp_path):
    """The scanners above find what they look for."""
    bad = tmp_path / "bad.py"
    bad.write_text('if task == "lm" or cell in ("gru", "x"):\n    pass\n'
                   'X = {"seq2seq": 1, "tag": 2}[task]\n')
    assert string_comparisons(bad, set(TASKS), tmp_path) == ["bad.py:1", "bad.py:3"]
    assert string_comparisons(bad, set(CELLS), tmp_path) == ["bad.py:1"]
