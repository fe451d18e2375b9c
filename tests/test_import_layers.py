"""No import hidden inside a function (or an ``if TYPE_CHECKING:`` block) breaks a cycle.

A module may import another on first use for start-up cost or an optional dependency, but
never because the other module imports it back: shared types then belong in a module below
both (as zarrgeno.stats.plan is for the planner and the backends, zarrgeno.rewrite.jobs for
the rewrite planner and executor). Parsed from the sources; nothing is imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import zarrgeno

ROOT = Path(zarrgeno.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], set[str]]:
    """The zarrgeno modules ``path`` imports at top level, and those it imports nested."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    top: set[str] = set()
    nested: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found = [".".join([*base, *([node.module] if node.module else [])])]
            else:
                found = [node.module or ""]
        elif isinstance(node, ast.Import):
            found = [a.name for a in node.names]
        else:
            continue
        found = [m for m in found if m == "zarrgeno" or m.startswith("zarrgeno.")]
        (top if node.col_offset == 0 else nested).update(found)
    return top, nested


GRAPH = {_module_name(p): _imports(p) for p in sorted(ROOT.rglob("*.py"))}


def _reachable(start: str, *, nested: bool = True) -> set[str]:
    """Every module ``start`` may load, itself included: through top-level imports and,
    with ``nested``, the nested ones too (what it loads once its functions have run)."""
    seen, todo = set(), [start]
    while todo:
        name = todo.pop()
        if name in seen or name not in GRAPH:
            continue
        seen.add(name)
        top, inner = GRAPH[name]
        todo.extend(top | inner if nested else top)
    return seen


@pytest.mark.parametrize("package", ["zarrgeno.stats", "zarrgeno.rewrite", "zarrgeno.runtime"])
def test_no_nested_import_breaks_a_cycle(package: str) -> None:
    cycles = [
        f"{name} -> {target}"
        for name, (_, nested) in GRAPH.items()
        if name == package or name.startswith(package + ".")
        for target in sorted(nested)
        if name in _reachable(target)
    ]
    assert not cycles, cycles


def test_the_top_level_imports_form_no_cycle() -> None:
    for name in GRAPH:
        for target in GRAPH[name][0]:
            assert name not in _reachable(target, nested=False), f"{name} <-> {target}"
