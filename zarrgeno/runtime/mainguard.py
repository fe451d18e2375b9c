"""Refuse to start worker processes from a script's unguarded top-level code.

Worker processes are started with ``spawn`` (multiprocessing, a local dask cluster): each
one re-runs the main script to rebuild its functions. A script that calls
``genotype_stats(..., backend="multiprocessing")`` at its top level, outside
``if __name__ == "__main__":``, makes every worker try to start workers of its own;
Python stops them with a bootstrapping error, and the parent sees only workers that died.
:func:`check_main_guard` finds the calling line of the script before any process starts
and says what to change.
"""

from __future__ import annotations

import functools
import os
import sys
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import ast

from zarrgeno.errors import UsageError


def _is_main_test(node: ast.expr) -> bool:
    """``__name__ == "__main__"`` (either way round)."""
    import ast

    if not (
        isinstance(node, ast.Compare)
        and len(node.ops) == 1
        and isinstance(node.ops[0], ast.Eq)
        and len(node.comparators) == 1
    ):
        return False
    sides = (node.left, node.comparators[0])
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    texts = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(texts) == 1


@functools.lru_cache(maxsize=8)
def guarded_lines(path: str, mtime: float) -> tuple[tuple[int, int], ...] | None:
    """Line spans of the top-level ``if __name__ == "__main__":`` blocks of the script at
    ``path`` (``mtime`` keys the cache), or None when it cannot be read or parsed."""
    import ast  # only when a script's top level starts workers (start-up cost)

    try:
        with open(path, "rb") as f:
            tree = ast.parse(f.read(), filename=path)
    except (OSError, SyntaxError, ValueError):
        return None
    return tuple(
        (node.lineno, node.end_lineno or node.lineno)
        for node in tree.body
        if isinstance(node, ast.If) and _is_main_test(node.test)
    )


def _top_level_frame(main_globals: dict[str, object]) -> FrameType | None:
    """The frame running the main script's own top-level code, if it is on the stack."""
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_name == "<module>" and frame.f_globals is main_globals:
            return frame
        frame = frame.f_back
    return None


def check_main_guard(what: str) -> None:
    """Raise :class:`UsageError` when this call comes from the top-level code of a main
    script that spawned processes re-run, outside ``if __name__ == "__main__":``.

    Interactive sessions, notebooks, ``python -c``, ``python -m package`` and calls made
    under the guard (or from any function it calls) pass, as Python re-runs none of them.
    """
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None) or ""
    path = getattr(main, "__file__", None)
    if main is None or not isinstance(path, str) or name.endswith("__main__"):
        return  # nothing that a spawned process re-runs
    frame = _top_level_frame(vars(main))
    if frame is None:
        return
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return
    spans = guarded_lines(path, mtime)
    line = frame.f_lineno
    if spans is None or any(lo <= line <= hi for lo, hi in spans):
        return
    raise UsageError(
        f"{what} starts worker processes, and each re-runs {path}: call it from under "
        f'`if __name__ == "__main__":` (line {line} is outside it)'
    )
