"""What the command line imports before it does anything: properties, not timings.

`zarrgeno --version` must not load numpy, zarr, dask or even typer; `zarrgeno --help` (which
imports every command module) loads typer and the cli modules but none of the data
libraries, nor the backend registry, rich.markdown or rich.traceback; a command loads only
the module that registers it; `zarrgeno info` piped loads no rich; `zarrgeno stats` starts
its pool's workers before it imports its own libraries. Each check runs a fresh interpreter
and lists ``sys.modules``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_stats_reference import write_gt

import zarrgeno
from zarrgeno.cli import COMMAND_MODULES, _root_help_app, _runs_no_command, command_of

HEAVY = ("numpy", "zarr", "numcodecs", "dask", "distributed", "typer", "rich", "pydantic")
#: The libraries behind the commands: a cli module imports them inside the command that
#: needs them, never at its top (the defaults --help shows come from zarrgeno.defaults).
DATA_LIBRARIES = (
    "numpy",
    "zarr",
    "numcodecs",
    "dask",
    "distributed",
    "rechunker",
    "fsspec",
    "aiohttp",
    "matplotlib",
    "psutil",
)
#: What typer's rich help imports but never uses here (see zarrgeno.cli.richhelp), and what
#: typer 0.29 would import on every run (pyproject.toml keeps typer below 0.29).
HELP_UNUSED = ("rich.markdown", "rich.traceback", "markdown_it", "pygments", "pydantic")

#: Runs the console script's entry point, then prints the modules it had imported.
PROBE = """
import atexit, json, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted(sys.modules)), file=sys.stderr))
sys.argv = ["zarrgeno", *sys.argv[1:]]
from zarrgeno.cli import main
if __name__ == "__main__":
    main()
"""


def _modules(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    # Output is piped: unset what would make rich treat it as a terminal anyway.
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    result = subprocess.run(
        [sys.executable, str(probe), *args], capture_output=True, text=True, timeout=120, env=env
    )
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("MODULES ")][-1]
    return result, set(json.loads(line.removeprefix("MODULES ")))


def _top(modules: set[str]) -> set[str]:
    return {m.split(".")[0] for m in modules}


def test_version_imports_nothing_heavy(tmp_path: Path) -> None:
    result, modules = _modules(tmp_path, "--version")
    assert result.returncode == 0
    assert result.stdout == f"zarrgeno {zarrgeno.__version__}\n"
    assert not _top(modules) & set(HEAVY), sorted(_top(modules) & set(HEAVY))


@pytest.mark.parametrize("args", [["--help"], ["stats", "--help"], ["download", "--help"]])
def test_help_imports_no_data_library(tmp_path: Path, args: list[str]) -> None:
    """`--help` imports every command module (see COMMAND_MODULES): a data library
    imported at the top of any of them shows up here."""
    result, modules = _modules(tmp_path, *args)
    assert result.returncode == 0, result.stderr
    assert "Usage" in result.stdout
    if args == ["--help"]:
        cli = {m.removeprefix("zarrgeno.cli.") for m in modules if m.startswith("zarrgeno.cli.")}
        assert set(COMMAND_MODULES.values()) <= cli
        # The root help builds no command's options, so it reads no backend registry.
        assert not {m for m in modules if m.startswith("zarrgeno.stats")}, sorted(modules)
        assert "importlib.metadata" not in modules
    assert not _top(modules) & set(DATA_LIBRARIES), sorted(_top(modules) & set(DATA_LIBRARIES))
    unused = {m for m in HELP_UNUSED if m in modules or m in _top(modules)}
    assert not unused, sorted(unused)


@pytest.mark.parametrize("columns", ["80", "200"])
def test_the_root_help_app_prints_the_full_apps_help(columns: str) -> None:
    """`zarrgeno --help` runs an app whose commands have no options (_root_help_app): its
    help is the full app's, byte for byte."""
    from typer.testing import CliRunner

    from zarrgeno.cli import app

    env = {"COLUMNS": columns}
    full = CliRunner().invoke(app, ["--help"], env=env, prog_name="zarrgeno")
    root = CliRunner().invoke(_root_help_app(), ["--help"], env=env, prog_name="zarrgeno")
    assert full.exit_code == root.exit_code == 0
    assert "Commands" in full.stdout and "stats" in full.stdout
    assert root.stdout == full.stdout


def test_rich_utils_stand_ins_load_the_real_classes_when_used() -> None:
    """After import_rich_utils, rich.markdown and rich.traceback are not imported until typer
    uses them; then typer gets the real objects, and a later import gets the real modules."""
    code = """
import sys
from zarrgeno.cli.richhelp import import_rich_utils
import_rich_utils()
import typer.rich_utils as ru
assert "rich.markdown" not in sys.modules and "rich.traceback" not in sys.modules
md = ru.Markdown("*x*")
import rich.markdown
assert type(md) is rich.markdown.Markdown, type(md)
try:
    1 / 0
except ZeroDivisionError as exc:
    tb = ru.Traceback.from_exception(type(exc), exc, exc.__traceback__)
import rich.traceback
assert type(tb) is rich.traceback.Traceback
print("ok")
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "ok\n", result.stderr


def test_info_loads_no_compute_library(tmp_path: Path) -> None:
    """`zarrgeno info` reads metadata: zarr, not dask, rechunker or a plotting library."""
    store = tmp_path / "s.zarr"
    write_gt(str(store), {"2L": np.zeros((10, 2, 2), "i1")}, (5, 2))
    result, modules = _modules(tmp_path, "info", str(store), "--summary")
    assert result.returncode == 0, result.stderr
    assert "zarr" in _top(modules)
    compute = {"dask", "distributed", "rechunker", "matplotlib"}
    assert not _top(modules) & compute, sorted(_top(modules) & compute)
    cli = {m for m in modules if m.startswith("zarrgeno.cli.")}
    assert cli == {"zarrgeno.cli.common", "zarrgeno.cli.exits", "zarrgeno.cli.info"}
    # Piped output is plain text: rich is imported only to draw on a terminal.
    assert not _top(modules) & {"rich", "pydantic"}, sorted(_top(modules) & {"rich", "pydantic"})


def test_a_command_imports_only_its_own_module(tmp_path: Path) -> None:
    """`zarrgeno backends` imports its own module (and the shared ones), no other command."""
    result, modules = _modules(tmp_path, "backends", "--json")
    assert result.returncode == 0, result.stderr
    assert {i["name"] for i in json.loads(result.stdout)} >= {"sequential", "multiprocessing"}
    cli = {m for m in modules if m.startswith("zarrgeno.cli.")}
    assert cli == {"zarrgeno.cli.common", "zarrgeno.cli.exits", "zarrgeno.cli.backends"}
    assert "dask" not in _top(modules) and "distributed" not in _top(modules)


def test_the_command_table_matches_the_registered_commands() -> None:
    """Every command a module registers is in COMMAND_MODULES under that module, and
    `--help` lists them in the table's order."""
    from zarrgeno.cli import app

    found = {}
    for info in app.registered_commands:
        name = info.name or info.callback.__name__.replace("_", "-")
        found[name] = info.callback.__module__.removeprefix("zarrgeno.cli.")
    assert found == COMMAND_MODULES
    assert list(found) == list(COMMAND_MODULES)


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["stats", "x", "-b", "dask"], "stats"),
        (["--cache", "stats", "info", "x"], "info"),
        (["--cache=d", "stats"], "stats"),
        (["--help"], None),
        ([], None),
        (["--version"], None),
    ],
)
def test_command_of(argv: list[str], command: str | None) -> None:
    assert command_of(argv) == command


@pytest.mark.parametrize(
    ("argv", "root_only"),
    [
        ([], True),
        (["--help"], True),
        (["-h", "stats"], True),  # the root help, listing every command
        (["--cache", "d"], True),  # (typer: missing command)
        (["--cache", "--help", "stats"], False),  # --help is the value of --cache
        (["stats", "--help"], False),
        (["--cache=d", "info", "x"], False),
    ],
)
def test_which_command_lines_run_the_root_help_app(argv: list[str], root_only: bool) -> None:
    """The app of _root_help_app, whose commands do nothing, runs only where no command can."""
    assert _runs_no_command(argv) == root_only


def test_the_root_help_before_a_command_lists_every_command(tmp_path: Path) -> None:
    result, _ = _modules(tmp_path, "--help", "info")
    assert result.returncode == 0, result.stderr
    for name in COMMAND_MODULES:
        assert f" {name} " in result.stdout, name


def test_stats_starts_its_workers_first_and_counts_the_same(tmp_path: Path) -> None:
    """The multiprocessing backend's workers are started before numpy is imported here (the
    warm pool), the default (threads) starts none, and their counts are the sequential
    backend's."""
    gt = np.random.default_rng(4).choice(np.array([0, 1, -1], "i1"), size=(900, 5, 2))
    store = tmp_path / "s.zarr"
    write_gt(str(store), {"2L": gt}, (100, 3))
    probe = tmp_path / "probe.py"
    probe.write_text(
        PROBE.replace(
            "from zarrgeno.cli import main",
            "import zarrgeno.stats.backends.processes as p\n"
            "warm = p.warm_up\n"
            "def spy(*a):\n"
            "    print('NUMPY ' + str('numpy' in sys.modules), file=sys.stderr)\n"
            "    warm(*a)\n"
            "p.warm_up = spy\n"
            "from zarrgeno.cli import main",
        )
    )
    results = {}
    for backend in ("multiprocessing", "default", "sequential"):
        extra = [] if backend == "default" else ["--backend", backend]
        run = subprocess.run(
            [sys.executable, str(probe), "stats", str(store), "--json", *extra],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 0, run.stderr
        assert ("NUMPY False" in run.stderr) == (backend == "multiprocessing"), run.stderr
        assert ("NUMPY" in run.stderr) == (backend == "multiprocessing"), run.stderr
        data = json.loads(run.stdout)
        results[backend] = data
    assert results["multiprocessing"]["backend"].startswith("multiprocessing")
    assert results["default"]["backend"].startswith("threads")
    for key in ("contigs", "totals", "samples"):
        if key in results["sequential"]:
            assert results["default"][key] == results["sequential"][key]
            assert results["multiprocessing"][key] == results["sequential"][key]


@pytest.mark.parametrize("user", [None, "3"])
def test_openblas_starts_one_thread_unless_the_user_says(tmp_path: Path, user: str | None):
    """No command uses BLAS: the console script asks numpy's OpenBLAS for one thread (its
    threads spin at import), before numpy loads; a user's own setting stands."""
    probe = tmp_path / "probe.py"
    probe.write_text(
        "import atexit, os, sys\n"
        "atexit.register(lambda: print('BLAS', os.environ.get('OPENBLAS_NUM_THREADS'),\n"
        "                              'numpy' in sys.modules, file=sys.stderr))\n"
        f"sys.argv = ['zarrgeno', 'codecs', {str(tmp_path / 'none')!r}]\n"
        "from zarrgeno.cli import main\n"
        "main()\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    if user is not None:
        env["OPENBLAS_NUM_THREADS"] = user
    result = subprocess.run(
        [sys.executable, str(probe)], capture_output=True, text=True, timeout=120, env=env
    )
    line = [ln for ln in result.stderr.splitlines() if ln.startswith("BLAS ")][-1]
    assert line == f"BLAS {user or '1'} True"
