"""Benchmark what a site filter costs: the statistics pass with and without one.

On the simulated demo store and its simulated filter store (about 70% of sites pass, in
runs), in one process, interleaved: each repeat times the pass without the filter, then
with it, for counts only and (``--qc``) with the QC statistics; it prints each repeat's
seconds and the median of the with / without ratios (and, with ``--qc``, of the QC pass
with the filter over the counts alone without it). Per-variant counts are not kept
(``per_variant=False``, what ``zarrgeno stats`` without ``--output`` computes).

``--kernel`` times the counting kernel alone on one decoded stored chunk of 2L (300,000 x
50 x 2), interleaved: every row counted, the rows the filter passes counted in place
(``count_calls(mask=...)``), and those rows copied together then counted; with the
simulated filter and with a scattered one (70% of rows, at random). It prints the
medians of the ratios to counting every row.

Usage::

    .venv/bin/python benchmarks/bench_filters.py            # data/AG1000G-AO, made if absent
    .venv/bin/python benchmarks/bench_filters.py --repeat 7 --qc --backend threads
    .venv/bin/python benchmarks/bench_filters.py --kernel --repeat 25
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def ensure_stores(store: Path, filters: Path) -> None:
    """Simulate the demo store and its filter store when either is absent."""
    if store.exists() and filters.exists():
        return
    cmd = [sys.executable, "-m", "zarrgeno", "simulate", str(store), "--site-filters"]
    subprocess.run([*cmd, str(filters), "--overwrite"], check=True)


def timed(store: Path, filters: Path | None, qc: bool, backend: str) -> float:
    from zarrgeno import genotype_stats

    t0 = time.perf_counter()
    genotype_stats(
        str(store), per_variant=False, qc=qc, backend=backend,
        site_filters=None if filters is None else str(filters),
    )  # fmt: skip
    return time.perf_counter() - t0


def kernel(store: Path, filters: Path, repeat: int) -> None:
    """The kernel alone: masked and copy-then-count against counting every row."""
    import numpy as np
    import zarr

    from zarrgeno.stats.kernels import count_calls

    gt_array = zarr.open_group(str(store), mode="r")["2L/calldata/GT"]
    rows, cols = gt_array.chunks[:2]
    gt = np.ascontiguousarray(gt_array[:rows, :cols])
    simulated = zarr.open_group(str(filters), mode="r")["2L/variants/filter_pass"][:rows]
    scattered = np.random.default_rng(0).random(len(gt)) < 0.7

    def seconds(fn: Any) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    for name, mask in (("simulated", simulated), ("scattered", scattered)):
        masked, copied = [], []
        for _ in range(repeat):
            every = seconds(lambda: count_calls(gt))
            masked.append(seconds(lambda m=mask: count_calls(gt, mask=m)) / every)
            copied.append(seconds(lambda m=mask: count_calls(np.ascontiguousarray(gt[m]))) / every)
        print(
            f"kernel, {name} filter ({mask.mean():.1%} of {len(gt):,} rows pass): in place / "
            f"every row = {statistics.median(masked):.2f}, copied then counted / every row = "
            f"{statistics.median(copied):.2f} (medians of {repeat})"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(ROOT / "data" / "AG1000G-AO"))
    parser.add_argument("--filters", default=str(ROOT / "data" / "AG1000G-AO-filters"))
    parser.add_argument("--repeat", type=int, default=5, help="interleaved repeats")
    parser.add_argument("--backend", default="threads")
    parser.add_argument("--qc", action="store_true", help="also time the pass with --qc")
    parser.add_argument("--kernel", action="store_true", help="time the kernel alone")
    args = parser.parse_args(argv)
    store, filters = Path(args.store), Path(args.filters)
    ensure_stores(store, filters)
    if args.kernel:
        kernel(store, filters, args.repeat)
        return 0
    modes = [False, True] if args.qc else [False]
    for qc in modes:  # one warm-up each: imports, page cache
        timed(store, None, qc, args.backend)
        timed(store, filters, qc, args.backend)
    ratios: dict[bool, list[float]] = {qc: [] for qc in modes}
    over_counts: list[float] = []  # the QC pass with the filter / the counts alone
    for i in range(args.repeat):
        counts = 0.0
        for qc in modes:
            plain = timed(store, None, qc, args.backend)
            kept = timed(store, filters, qc, args.backend)
            ratios[qc].append(kept / plain)
            counts = counts or plain
            if qc:
                over_counts.append(kept / counts)
            label = "qc    " if qc else "counts"
            print(f"repeat {i + 1} {label}: without {plain:.3f} s, with filter {kept:.3f} s, "
                  f"ratio {kept / plain:.2f}")  # fmt: skip
    for qc in modes:
        r = ratios[qc]
        print(
            f"{'qc' if qc else 'counts'} ({args.backend}): with filter / without = "
            f"{statistics.median(r):.2f} median ({min(r):.2f} to {max(r):.2f}, {len(r)} repeats)"
        )
    if over_counts:
        r = over_counts
        print(
            f"qc with filter / counts without ({args.backend}) = {statistics.median(r):.2f} "
            f"median ({min(r):.2f} to {max(r):.2f}, {len(r)} repeats)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
