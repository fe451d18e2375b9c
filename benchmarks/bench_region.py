"""Benchmark locating a region in a full-size 2L sites store: chunked search against a full read.

One command measures, in one run and on the same store (48,525,747 int32 positions in
chunks of 2^20, as ``zarrgeno simulate --scale 1 --sites`` writes them):

* ``zarrgeno``: :meth:`ContigPositions.locate`, the binary search over stored chunks that
  ``stats --region`` runs;
* ``full read``: what ``malariagen_data`` does (``locate_region``: the whole POS array in
  memory, a sortedness check, then ``searchsorted`` via scikit-allel's ``SortedIndex``),
  written with numpy.

For each: the wall time (best of ``--repeat``), the chunks decoded, and the peak of memory
allocated meanwhile (``tracemalloc``, which sees numpy's buffers). Both must give the same rows.

Usage::

    .venv/bin/python benchmarks/bench_region.py            # data/bench/2L-sites, made if absent
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from pathlib import Path

import numpy as np
import zarr

from zarrgeno.io.sites import ContigPositions, Region, parse_region
from zarrgeno.io.store import open_store
from zarrgeno.simulate.sites import simulate_sites

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = ROOT / "data" / "bench" / "2L-sites"
REGION = "2L:20,000,000-21,000,000"


class CountingStore(dict):
    """A read-only view of a store that counts the chunk keys read."""

    def __init__(self, inner) -> None:
        super().__init__()
        self.inner, self.reads = inner, 0

    def __getitem__(self, key: str) -> bytes:
        if not key.rsplit("/", 1)[-1].startswith("."):
            self.reads += 1
        return self.inner[key]

    def __contains__(self, key: object) -> bool:
        return key in self.inner

    def __iter__(self):
        return iter(self.inner)

    def __len__(self) -> int:
        return len(self.inner)


def chunked(array: zarr.Array, region: Region) -> tuple[int, int]:
    return ContigPositions("sites", array.path, 0, array).locate(0, array.shape[0], region)


def full_read(array: zarr.Array, region: Region) -> tuple[int, int]:
    pos = array[:]
    if not np.all(pos[1:] >= pos[:-1]):
        raise ValueError("not sorted")
    lo = int(np.searchsorted(pos, region.start, side="left"))
    return lo, int(np.searchsorted(pos, region.end, side="right"))


def measure(name: str, func, array: zarr.Array, region: Region, repeat: int) -> dict:
    counting = CountingStore(array.chunk_store)
    view = zarr.open_array(counting, path=array.path, mode="r")
    best = float("inf")
    for _ in range(repeat):
        counting.reads = 0
        tracemalloc.start()
        began = time.perf_counter()
        rows = func(view, region)
        best = min(best, time.perf_counter() - began)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return {"method": name, "rows": list(rows), "seconds": round(best, 4),
            "chunks_read": counting.reads, "peak_mib": round(peak / 2**20, 1)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--region", default=REGION)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if not args.store.exists():
        simulate_sites(args.store, contigs=["2L"], scale=1)
    region = parse_region(args.region)
    array = open_store(args.store)[1][f"{region.contig}/variants/POS"]
    rows = [measure(n, f, array, region, args.repeat)
            for n, f in (("zarrgeno", chunked), ("full read", full_read))]  # fmt: skip
    assert rows[0]["rows"] == rows[1]["rows"], rows
    ours, theirs = rows
    print(json.dumps({
        "store": str(args.store), "region": str(region), "positions": array.shape[0],
        "chunks": array.nchunks, "results": rows, "load_average": os.getloadavg(),
        "speedup": round(theirs["seconds"] / ours["seconds"], 1),
        "memory_ratio": round(theirs["peak_mib"] / max(ours["peak_mib"], 0.1), 1),
    }, indent=2))  # fmt: skip


if __name__ == "__main__":
    main()
