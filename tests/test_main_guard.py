"""Process backends from a script: a missing ``if __name__ == "__main__":`` is named in one
line before any worker starts; with the guard (or from a function it calls) they run."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from zarrgeno.runtime.mainguard import check_main_guard, guarded_lines

SCRIPT = """\
import sys
from zarrgeno import genotype_stats


def count():
    try:
        result = genotype_stats(sys.argv[1], backend=sys.argv[2], workers=1)
    except Exception as exc:
        print(f"{{type(exc).__name__}}: {{exc}}")
        raise SystemExit(2)
    print("variants", sum(c.total_pos for c in result.contigs))


{body}
"""


def _run(tmp_path: Path, store: Path, backend: str, body: str) -> subprocess.CompletedProcess:
    script = tmp_path / "count.py"
    script.write_text(SCRIPT.format(body=textwrap.dedent(body)))
    return subprocess.run(
        [sys.executable, str(script), str(store), backend],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )


@pytest.mark.parametrize("backend", ["multiprocessing", "distributed"])
def test_an_unguarded_script_is_told_about_the_guard(
    tmp_path: Path, dir_store, backend: str
) -> None:
    store, _ = dir_store
    done = _run(tmp_path, store, backend, "count()\n")
    assert done.returncode == 2, done.stderr
    assert done.stdout.startswith("UsageError: "), done.stdout + done.stderr
    assert 'if __name__ == "__main__":' in done.stdout
    assert "count.py" in done.stdout and "line 14 is outside" in done.stdout
    assert "Traceback" not in done.stderr  # no worker ever started


@pytest.mark.parametrize("backend", ["multiprocessing", "distributed"])
def test_a_guarded_script_runs(tmp_path: Path, dir_store, backend: str) -> None:
    store, written = dir_store
    body = 'if __name__ == "__main__":\n    count()\n'
    done = _run(tmp_path, store, backend, body)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"variants {sum(len(g) for g in written.values())}" in done.stdout


def test_guarded_lines_finds_either_spelling(tmp_path: Path) -> None:
    script = tmp_path / "s.py"
    script.write_text(
        "x = 1\nif '__main__' == __name__:\n    pass\n\nif __name__ == \"__main__\":\n"
        "    a = 1\n    b = 2\nif __name__ != '__main__':\n    pass\n"
    )
    assert guarded_lines(str(script), 0.0) == ((2, 3), (5, 7))


def test_a_call_from_here_is_not_a_script_top_level() -> None:
    check_main_guard("a test")  # pytest's __main__ is not the caller's module: no error
