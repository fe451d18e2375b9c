"""Counting in cache: `zarrgeno stats` with chunks decoded whole vs a few Blosc blocks at a time.

Each row is a fresh process, round after round (every row once, then every row again), on a
store with a warm page cache: the decode limit (`bench_stats.py`'s `limit-all`: every
chunk of every contig decoded by one warm process per core), and `zarrgeno stats STORE -b
BACKEND --json` with chunks decoded whole into memory and then counted (`whole`) or
decoded a few Blosc blocks at a time and counted while in cache (`blockwise`, what
zarrgeno does). Both run the same code but for that switch
(``zarrgeno.stats.reader.BLOCKWISE``). It prints each row's median wall time of the whole
process, its in-process time (the JSON's ``elapsed_seconds``), CPU seconds (the limit's:
its processes', start-up included) and peak RSS, their ratios to the limit, and the median
of the per-round ratios blockwise / whole; the counts of every run must agree.

    .venv/bin/python benchmarks/bench_incache.py --store data/bench/2L-quarter --repeat 7
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from bench_stats import run_child, run_command, warm_page_cache

#: Runs the console script's main with the switch set: argv is STORE BACKEND 0|1.
CHILD = (
    "import sys\n"
    "import zarrgeno.stats.reader as reader\n"
    "reader.BLOCKWISE = sys.argv[3] == '1'\n"
    "from zarrgeno.cli import main\n"
    "sys.argv = ['zarrgeno', 'stats', sys.argv[1], '-b', sys.argv[2], '--json']\n"
    "main()\n"
)


def stats_row(store: str, backend: str, blockwise: bool) -> dict[str, Any]:
    cmd = [sys.executable, "-c", CHILD, store, backend, "1" if blockwise else "0"]
    result = run_command(cmd)
    out = json.loads(result["stdout"])
    result["inside"] = out["elapsed_seconds"]
    result["counts"] = [
        {k: v for k, v in contig.items() if k.startswith("n_") or k == "samples"}
        for contig in out["contigs"]
    ]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="data/bench/2L-quarter")
    parser.add_argument("--repeat", type=int, default=5, help="rounds")
    parser.add_argument("--backends", default="threads,sequential")
    args = parser.parse_args()
    store = args.store
    warm_page_cache(Path(store))
    backends = args.backends.split(",")
    rows = ["limit"] + [f"{b} {m}" for b in backends for m in ("whole", "blockwise")]
    runs: dict[str, list[dict[str, Any]]] = {row: [] for row in rows}
    load = os.getloadavg()[0]
    for _ in range(args.repeat):
        runs["limit"].append(run_child("limit-all", store))
        for backend in backends:
            for mode in ("whole", "blockwise"):
                runs[f"{backend} {mode}"].append(stats_row(store, backend, mode == "blockwise"))
    counts = [r["counts"] for row in rows[1:] for r in runs[row]]
    assert all(c == counts[0] for c in counts), "the counts differ between runs"
    limit = statistics.median(r["wall"] for r in runs["limit"])
    print(f"store {store}, {args.repeat} rounds, load average {load:.2f} before", end="")
    print(f", {os.getloadavg()[0]:.2f} after")
    limit_cpu = statistics.median(r["cpu"] for r in runs["limit"])
    print("| row | wall s | / limit | in-process s | / limit | CPU s | / limit | peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        r = runs[row]
        wall = statistics.median(x["wall"] for x in r)
        if row == "limit":
            print(f"| limit | {wall:.3f} | 1.00 | | | {limit_cpu:.2f} | 1.00 | |")
            continue
        inside = statistics.median(x["inside"] for x in r)
        cpu = statistics.median(x["cpu"] for x in r)
        rss = statistics.median(x["peak_rss"] for x in r) / 2**20
        print(
            f"| {row} | {wall:.3f} | {wall / limit:.2f} | {inside:.3f} | {inside / limit:.2f} "
            f"| {cpu:.2f} | {cpu / limit_cpu:.2f} | {rss:.0f} |"
        )
    for backend in backends:
        pairs = zip(runs[f"{backend} blockwise"], runs[f"{backend} whole"], strict=True)
        ratios = [
            (b["wall"] / w["wall"], b["inside"] / w["inside"], b["cpu"] / w["cpu"])
            for b, w in pairs
        ]
        wall, inside, cpu = (statistics.median(x[k] for x in ratios) for k in range(3))
        print(
            f"{backend}: blockwise / whole, median of rounds: wall {wall:.3f}, "
            f"in-process {inside:.3f}, CPU {cpu:.3f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
