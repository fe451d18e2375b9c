"""Benchmark the QC pass with cohorts against the counts-only pass, on the same store.

Rows, each run in a fresh child process on the default backend (threads), per-variant
results kept in memory (what ``--output`` needs), timed around the library call:

* ``counts``: ``genotype_stats(store, per_variant=True)``, the counts-only pass;
* ``qc``: the same with ``qc=True`` (allele counts, genotype counts, HWE, F);
* ``qc+cohorts``: ``qc=True`` and ``cohorts=CohortSpec(table, ("country",))``, with
  ``--cohorts`` cohorts (default 3) of the store's samples, drawn at random (seed 1);
* with ``--whole-chunks``, ``qc/whole`` and ``qc+cohorts/whole``: the same with every
  chunk decoded whole before it is counted (``zarrgeno.stats.reader.BLOCKWISE`` off),
  rather than a few Blosc blocks at a time while they are in cache.

The rows run round after round (every row once, then every row again, ``--repeat``
rounds), so that a passing load from other processes spreads over all of them; the table
gives the median wall and CPU time (user + system, every thread) of each row, their
ratios to ``counts`` (in the same run) and the largest peak RSS of its runs. The
per-cohort allele counts are checked to add up to the whole sample set's.

Usage::

    .venv/bin/python benchmarks/bench_cohorts.py --store data/bench/2L-tenth --repeat 5

A store that does not exist is simulated first (2L, ``--scale``, seed 1).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time
import numpy as np
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.cohorts import CohortSpec

store, row, table = sys.argv[1], sys.argv[2], sys.argv[3]
if row.endswith("/whole"):
    import zarrgeno.stats.reader
    zarrgeno.stats.reader.BLOCKWISE = False
    row = row.removesuffix("/whole")
kwargs = {"per_variant": True}
if row != "counts":
    kwargs["qc"] = True
if row == "qc+cohorts":
    kwargs["cohorts"] = CohortSpec(table, ("country",))
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

start, cpu0 = time.perf_counter(), cpu()
result = genotype_stats(store, **kwargs)
elapsed, used = time.perf_counter() - start, cpu() - cpu0
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
check = None
if row == "qc+cohorts":
    whole = result.qc.contigs[0].variants.allele_count.astype(np.int64)
    parts = result.qc.cohorts.contigs[0].allele_count.astype(np.int64).sum(axis=1)
    check = bool((whole == parts).all())
print(json.dumps({"seconds": elapsed, "cpu": used, "rss": rss, "check": check,
                  "variants": result.contigs[0].total_pos}))
"""

ROWS = ("counts", "qc", "qc+cohorts")
WHOLE = ("qc/whole", "qc+cohorts/whole")


def write_table(store: str, n_cohorts: int, where: Path) -> Path:
    """A samples.meta.csv of the store's samples, each in one of ``n_cohorts`` countries."""
    from zarrgeno.io.store import open_store, sample_names

    _, group = open_store(store)
    samples = sample_names(group, group["samples"].shape[0])
    rng = np.random.default_rng(1)
    countries = [f"country{c}" for c in range(n_cohorts)]
    path = where / "samples.meta.csv"
    lines = ["sample_id,country"] + [f"{s},{countries[rng.integers(n_cohorts)]}" for s in samples]
    path.write_text("\n".join(lines) + "\n")
    return path


def run(store: str, row: str, table: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, store, row, str(table)],
        check=True,
        capture_output=True,
        text=True,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", default=str(ROOT / "data" / "bench" / "2L-tenth"))
    parser.add_argument("--scale", type=float, default=0.1, help="of a simulated store")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--cohorts", type=int, default=3)
    parser.add_argument(
        "--whole-chunks", action="store_true", help="also the QC rows with chunks decoded whole"
    )
    args = parser.parse_args()
    rows = ROWS + WHOLE if args.whole_chunks else ROWS
    if not Path(args.store).exists():
        subprocess.run(
            [sys.executable, "-m", "zarrgeno", "simulate", args.store, "--contig", "2L",
             "--scale", str(args.scale), "--seed", "1"],
            check=True,
        )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        table = write_table(args.store, args.cohorts, Path(tmp))
        times: dict[str, list[float]] = {r: [] for r in rows}
        cpus: dict[str, list[float]] = {r: [] for r in rows}
        rss: dict[str, int] = dict.fromkeys(rows, 0)
        variants = 0
        for _ in range(args.repeat):
            for row in rows:
                got = run(args.store, row, table)
                times[row].append(got["seconds"])
                cpus[row].append(got["cpu"])
                rss[row] = max(rss[row], int(got["rss"]))
                variants = int(got["variants"])
                if got["check"] is False:
                    raise SystemExit("the cohorts' allele counts do not add up to the whole's")
    base = statistics.median(times["counts"])
    base_cpu = statistics.median(cpus["counts"])
    print(f"{args.store}: {variants:,} variants, {args.cohorts} cohorts, {args.repeat} rounds")
    print(f"{'row':<17} {'wall s':>7} {'x counts':>9} {'CPU s':>7} {'x counts':>9} "
          f"{'peak RSS MB':>12}  wall runs (s)")  # fmt: skip
    for row in rows:
        med, med_cpu = statistics.median(times[row]), statistics.median(cpus[row])
        runs = " ".join(f"{t:.2f}" for t in times[row])
        print(f"{row:<17} {med:7.2f} {med / base:9.2f} {med_cpu:7.2f} {med_cpu / base_cpu:9.2f} "
              f"{rss[row] / 1e6:12.0f}  {runs}")  # fmt: skip


if __name__ == "__main__":
    main()
