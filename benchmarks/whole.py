"""Whole-process rows of bench_stats.py: commands timed as a user runs them, beside the limit.

Each row runs one command as a fresh process (the ``zarrgeno`` console script, a tutorial
function, a peer's script in its own virtual environment), interpreter start included, and
is compared with the decode limit of the same store measured in the same run.
"""

from __future__ import annotations

import compileall
import json
import os
import subprocess
import sys
import venv
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ZARRGENO = str(Path(sys.executable).with_name("zarrgeno"))
QUARTER = ROOT / "data" / "bench" / "2L-quarter"
GENOME = ROOT / "data" / "bench" / "AG1000G-AO-full"
PEERS_VENV = ROOT / "data" / "peers-venv"
#: The peers, pinned: the versions compared in docs/performance.md, on the zarr 2 this store is
#: written in.
PEERS_REQUIREMENTS = (
    "scikit-allel==1.3.13",
    "sgkit==0.10.0",
    "zarr>=2.18,<3",
    "numcodecs>=0.15.2,<0.16",
)
#: Rows that run once whatever --repeat says: each takes tens of seconds or minutes.
SLOW = ("tutorial", "scikit-allel", "sgkit")
COUNTS = ("n_missing", "n_hom_ref", "n_het", "complete_data", "more_anc_hom")

#: run(cmd) -> {"wall", "cpu", "peak_rss", "other_load", "stdout"}: bench_stats.run_command.
Runner = Callable[[list[str]], dict[str, Any]]


def ensure_stores() -> None:
    """The quarter-size 2L and the full five-contig store, simulated if absent (seed 1)."""
    from zarrgeno.simulate.genotypes import simulate_store

    for store, contigs, scale in ((QUARTER, ("2L",), 0.25), (GENOME, None, 1.0)):
        if not store.exists():
            print(f"simulating {store} (scale {scale}, seed 1) ...", file=sys.stderr)
            kwargs = {"contigs": contigs} if contigs else {}
            simulate_store(str(store), scale=scale, seed=1, **kwargs)


def ensure_peers() -> Path:
    """The peers' virtual environment (made on first use, with pip): its python."""
    python = PEERS_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {PEERS_VENV} with {', '.join(PEERS_REQUIREMENTS)} ...", file=sys.stderr)
        venv.create(PEERS_VENV, with_pip=True)
    check = subprocess.run(
        [str(python), "-c", "import allel, sgkit"], capture_output=True, text=True
    )
    if check.returncode != 0:
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS_REQUIREMENTS], check=True)
    return python


def describe(store: Path) -> tuple[str, int]:
    """``2L 12,131,437 x 81 x 2, ...`` and the raw bytes of every genotype array."""
    from zarrgeno.io.store import find_genotypes, open_store

    _, group = open_store(str(store))
    arrays = find_genotypes(group)
    raw = 0
    parts = []
    for a in arrays:
        arr = group[a.path]
        raw += arr.nbytes
        parts.append(f"{a.contig} {a.n_variants:,}")
    chunks = " x ".join(str(c) for c in group[arrays[0].path].chunks)
    shape = f"x {arrays[0].n_samples} x {arrays[0].ploidy}"
    return f"{', '.join(parts)} variants {shape}, chunks {chunks}", raw


def stats_totals(stdout: str) -> dict[str, int]:
    """The counts of a ``zarrgeno stats --json`` output, summed over its contigs."""
    data = json.loads(stdout)
    return {k: sum(int(c[k]) for c in data["contigs"]) for k in COUNTS}


def rows_for(
    store: Path,
    *,
    contig: str | None,
    backends: list[str],
    run: Runner,
    repeat: int,
    limit: Callable[[], dict[str, Any]],
    limit_one: Callable[[], dict[str, Any]],
    extra: list[tuple[str, list[str]]],
    scheduler: Callable[[], Any] | None,
) -> tuple[dict[str, dict[str, Any]], dict[str, int]]:
    """Time every command on ``store``; returns rows by label and the zarrgeno counts."""
    select = ["--contig", contig] if contig else []
    commands: list[tuple[str, list[str]]] = [
        (f"zarrgeno stats -b {b}", [ZARRGENO, "stats", str(store), *select, "-b", b, "--json"])
        for b in backends
    ]
    commands.insert(
        0, ("zarrgeno stats (default)", [ZARRGENO, "stats", str(store), *select, "--json"])
    )
    commands += extra
    # Round after round over every row, so that a passing load spreads over the rows
    # instead of landing on the ones that happened to run then.
    runs: dict[str, list[dict[str, Any]]] = {"limit": [], "limit, one process": []}
    for round_ in range(repeat):
        runs["limit"].append(limit())
        runs["limit, one process"].append(limit_one())
        for label, cmd in commands:
            if round_ == 0 or not label.startswith(SLOW):
                runs.setdefault(label, []).append(run(cmd))
    rows = {label: _median(label, done) for label, done in runs.items()}
    reference: dict[str, int] = {}
    for label in runs:
        if label.startswith("zarrgeno stats"):
            counts = stats_totals(rows[label]["stdout"])
            reference = reference or counts
            if counts != reference:
                raise SystemExit(f"{label} disagrees with the first zarrgeno row: {counts}")
    if scheduler is not None:
        with scheduler() as address:
            label = "zarrgeno stats -b distributed --scheduler (running)"
            cmd = [ZARRGENO, "stats", str(store), *select, "-b", "distributed", "--json"]
            rows[label] = _median(
                label, [run([*cmd, "--scheduler", address]) for _ in range(repeat)]
            )
            if stats_totals(rows[label]["stdout"]) != reference:
                raise SystemExit(f"{label} disagrees with the other zarrgeno rows")
    return rows, reference


def _median(label: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2])
    best["walls"] = [r["wall"] for r in runs]
    best["peak_rss"] = max(r["peak_rss"] for r in runs)
    loads = ", ".join(f"{r['wall']:.2f} ({r['other_load']:.2f})" for r in runs)
    print(f"  {label:40s} {best['wall']:8.2f} s   runs (other load): {loads}", flush=True)
    return best


def check_peers(rows: dict[str, dict[str, Any]], sgkit_counts: dict[str, int]) -> list[str]:
    """Each peer's counts against zarrgeno's with --semantics sgkit: lines to print."""
    lines = []
    for label, row in rows.items():
        if not label.startswith(("scikit-allel", "sgkit")):
            continue
        theirs = json.loads(row["stdout"].strip().splitlines()[-1])
        bad = [k for k in COUNTS if theirs[k] != sgkit_counts[k]]
        if bad:
            raise SystemExit(f"{label} disagrees with zarrgeno --semantics sgkit on {bad}")
        lines.append(f"  {label}: {', '.join(f'{k} {theirs[k]:,}' for k in COUNTS)} (= zarrgeno)")
    return lines


def table(title: str, rows: dict[str, dict[str, Any]], raw: int, zarrgeno_row: str) -> list[str]:
    """A markdown table: wall, ratio to the limit and to zarrgeno's default, CPU, peak RSS."""
    limit = rows["limit"]["wall"]
    ours = rows[zarrgeno_row]["wall"]
    lines = [
        title,
        "",
        "| command | wall (s) | x limit | x zarrgeno default | CPU (s) | peak RSS (MB) "
        "| other load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        if label == "limit":
            lines.append(
                f"| limit: decode every chunk, one process per core, warm | {limit:.2f} "
                f"| 1.00 | {limit / ours:.2f} | - | {r['peak_rss'] / 1e6:.0f} "
                f"| {r['other_load']:.2f} |"
            )
            continue
        if label == "limit, one process":  # how much a second core helps on this machine
            lines.append(
                f"| the same with one process | {r['wall']:.2f} | {r['wall'] / limit:.2f} "
                f"| {r['wall'] / ours:.2f} | - | {r['peak_rss'] / 1e6:.0f} "
                f"| {r['other_load']:.2f} |"
            )
            continue
        name = r.get("backend") or label
        lines.append(
            f"| {label}{f' ({name})' if name != label else ''} | {r['wall']:.2f} | "
            f"{r['wall'] / limit:.2f} | {r['wall'] / ours:.2f} | {r['cpu']:.2f} | "
            f"{r['peak_rss'] / 1e6:.0f} | {r['other_load']:.2f} |"
        )
    lines.append("")
    lines.append(f"Raw genotypes: {raw / 1e9:.2f} GB.")
    return lines


def backend_of(stdout: str) -> str | None:
    """The ``backend`` field of a ``zarrgeno stats --json`` output, if it is one."""
    try:
        return str(json.loads(stdout)["backend"])
    except (ValueError, KeyError, TypeError):
        return None


def startup_commands(store: Path) -> list[tuple[str, list[str]]]:
    """The commands whose start is the point: the interpreter alone, --version, --help, info."""
    return [
        ("python -c pass", [sys.executable, "-c", "pass"]),
        ("zarrgeno --version", [ZARRGENO, "--version"]),
        ("zarrgeno --help", [ZARRGENO, "--help"]),
        ("zarrgeno info STORE", [ZARRGENO, "info", str(store)]),
    ]


def startup_rows(store: Path, run: Runner, repeat: int) -> list[str]:
    """Median wall and CPU of each start-up command, as a markdown table.

    zarrgeno's modules are byte-compiled first, as ``pip install`` leaves them: an editable
    checkout run with PYTHONDONTWRITEBYTECODE=1 would otherwise compile every module it
    imports on every run (about 30 ms of ``--help``).
    """
    compileall.compile_dir(ROOT / "zarrgeno", quiet=1)
    lines = ["| command | wall (s) | CPU (s) | other load |", "|---|---:|---:|---:|"]
    env = dict(os.environ, COLUMNS="80")
    for label, cmd in startup_commands(store):
        runs = [run(cmd, env=env) for _ in range(repeat)]  # type: ignore[call-arg]
        r = _median(label, runs)
        lines.append(f"| `{label}` | {r['wall']:.3f} | {r['cpu']:.3f} | {r['other_load']:.2f} |")
    return lines
