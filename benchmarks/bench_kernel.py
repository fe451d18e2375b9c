"""Benchmark the compiled counting kernel alone: GB/s on one core, beside memcpy and numpy.

It times ``count_int8`` (what ``count_calls`` runs on int8 chunks) on a stored chunk's
shape, (300,000, 50, 2) int8, whole and as a 31-sample edge chunk (columns 0:31 of the
same 50-wide rows), and in the same run two passes over the same buffer that bound what
one core does with it: a memcpy (``np.copyto``) and ``np.count_nonzero``. GB/s are bytes
of the counted calls per second, best of ``--repeat``; the ratios compare the kernel with
those passes, so they hold across machines and loads better than the GB/s do.

Usage::

    .venv/bin/python benchmarks/bench_kernel.py
    .venv/bin/python benchmarks/bench_kernel.py --rows 2000 --repeat 200   # in cache
    .venv/bin/python benchmarks/bench_kernel.py --qc    # also the QC pass (qc_count)

With ``--qc`` each row also times ``count_qc`` (what ``count_calls_qc`` runs when QC
statistics are asked for): the same counts and, in the same pass, the genotype histograms
(K = 4), the per-sample sgkit classes and the missing-call bits; ``QC x`` is its time over
the counts-only kernel's.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import numpy as np

from zarrgeno.stats import _kernel
from zarrgeno.stats.fastpath import count_int8, count_qc
from zarrgeno.stats.kernels import variant_dtype


def calls(rows: int, samples: int, seed: int = 1) -> np.ndarray:
    """Mostly 0 and 1 with some -1 (missing), a third of the rows uniform, as real chunks."""
    rng = np.random.default_rng(seed)
    gt = rng.choice(np.array([0, 0, 0, 1, -1], dtype="i1"), size=(rows, samples, 2))
    uniform = rng.random(rows) < 0.3
    gt[uniform] = rng.choice(np.array([[0, 0], [-1, -1]], dtype="i1"), size=int(uniform.sum()))[
        :, None, :
    ]
    return gt


def best_seconds(run: Callable[[], object], repeat: int) -> float:
    """The fastest of ``repeat`` runs after one warm-up run."""
    run()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def kernel_seconds(gt: np.ndarray, c1: int, sgkit: bool, repeat: int) -> float:
    """Best time of counting columns ``0:c1`` of ``gt`` (fresh zeroed outputs, as callers do)."""
    n = gt.shape[0]

    def run() -> None:
        variant = np.zeros((3, n), dtype=variant_dtype(c1))
        sample = np.zeros((3, c1), dtype=np.int64)
        count_int8(gt, 0, c1, sgkit, variant, sample)

    return best_seconds(run, repeat)


def qc_seconds(gt: np.ndarray, c1: int, sgkit: bool, repeat: int) -> float:
    """Best time of the QC pass over columns ``0:c1`` (histograms, classes, bits)."""
    n = gt.shape[0]

    def run() -> None:
        variant = np.zeros((3, n), dtype=variant_dtype(c1))
        sample = np.zeros((3, c1), dtype=np.int64)
        hist = np.zeros((n, 11), dtype=variant_dtype(c1))
        qsample = np.zeros((3, c1), dtype=np.int64)
        bits = np.zeros((n, (c1 + 7) // 8), dtype=np.uint8)
        count_qc(gt, 0, c1, sgkit, variant, sample, hist, qsample, bits)

    return best_seconds(run, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=300_000, help="variants per chunk")
    parser.add_argument("--repeat", type=int, default=20, help="timed runs; the best counts")
    parser.add_argument("--qc", action="store_true", help="also time the QC pass")
    args = parser.parse_args()
    if args.rows < 1 or args.repeat < 1:
        parser.error("--rows and --repeat must be at least 1")

    gt = calls(args.rows, 50)
    copy = np.empty_like(gt)
    memcpy = gt.nbytes / best_seconds(lambda: np.copyto(copy, gt), args.repeat) / 1e9
    nonzero = gt.nbytes / best_seconds(lambda: np.count_nonzero(gt), args.repeat) / 1e9
    rows = []
    for name, c1 in (("chunk 50", 50), ("edge 31 of 50", 31)):
        for sgkit in (False, True):
            seconds = kernel_seconds(gt, c1, sgkit, args.repeat)
            gbps = args.rows * c1 * 2 / seconds / 1e9
            row = {
                "buffer": name,
                "semantics": "sgkit" if sgkit else "tutorial",
                "GB/s": round(gbps, 2),
                "/ memcpy": round(gbps / memcpy, 2),
                "/ count_nonzero": round(gbps / nonzero, 2),
            }
            if args.qc:
                qc = qc_seconds(gt, c1, sgkit, args.repeat)
                row |= {"QC GB/s": round(args.rows * c1 * 2 / qc / 1e9, 2)}
                row |= {"QC x": round(qc / seconds, 2)}
            rows.append(row)
    print(f"rows {args.rows} x 50 x 2 int8 ({gt.nbytes / 1e6:.1f} MB), simd {_kernel.simd()}")
    print(f"memcpy {memcpy:.2f} GB/s, np.count_nonzero {nonzero:.2f} GB/s")
    for row in rows:
        print(json.dumps(row))
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
