"""Benchmark rechunking and recompression on a full-size simulated 2L, against the limit.

One command measures, in one run and on the same store:

* ``limit``: every source chunk read and Blosc-decoded, and every target chunk encoded and
  written once, by the simplest code that can do it (numcodecs and files, no zarr, no
  rechunker): the work any rechunk must do at least;
* ``zarrgeno rechunk --chunks 12131437,81,2 --max-mem 4GB`` (the Ag1000G tutorial's chunks);
* the tutorial's own ``zarr.array(src, chunks=..., store=...)``, which loads the whole array;
* ``zarrgeno verify`` of the result;
* ``zarrgeno recompress`` with a handful of codecs: throughput and resulting ratio;
* the memory model: ``--plan``'s expected peak against the measured peak RSS, on a 1/8-size
  2L, for the kinds of plan zarrgeno makes (direct, parallel, with a temp store, checksums,
  Zarr format 3 shards);
* Zarr format 3 with shards against format 2: the same rechunk written both ways, on the
  1/8-size 2L (``--shards-only`` runs this alone).

Each measurement runs in a fresh child process; its peak RSS is the kernel's ``ru_maxrss``
for that child (``os.wait4``), so measurements do not contaminate each other. The
interpreter's baseline is the peak RSS of a child that only imports zarrgeno's modules.

Usage::

    .venv/bin/python benchmarks/bench_rechunk.py             # data/bench/2L-full, made if absent
    .venv/bin/python benchmarks/bench_rechunk.py --quick     # skip the 8 GB tutorial baseline
    .venv/bin/python benchmarks/bench_rechunk.py --shards-only   # format 3 + shards vs format 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = ROOT / "data" / "bench" / "2L-full"
GT_PATH = "2L/calldata/GT"
TUTORIAL_CHUNKS = "12131437,81,2"
MAX_MEM = "4GB"
CODECS = (
    "blosc:lz4:5:shuffle",
    "blosc:lz4:5:bitshuffle",
    "blosc:zstd:1:bitshuffle",
    "blosc:zstd:5:bitshuffle",
    "zstd:3",
    "zlib:6",
)

# --------------------------------------------------------------------------------------
# Child programs: each prints one JSON line with its own wall time.

BASELINE = """
import json, time
t = time.perf_counter()
import zarrgeno.cli, zarrgeno.rewrite.execute, zarrgeno.rewrite.storeplan
import zarrgeno.rewrite.verify, rechunker, dask.array
print(json.dumps({"seconds": time.perf_counter() - t}))
"""

LIMIT = r"""
import json, math, os, sys, time
import numcodecs, numpy as np, zarr
src, out, chunks = sys.argv[1], sys.argv[2], tuple(int(c) for c in sys.argv[3].split(","))
t = time.perf_counter()
arr = zarr.open_group(src, mode="r")["2L/calldata/GT"]
codec, sc = arr.compressor, arr.chunks
n, s, p = arr.shape
os.makedirs(out, exist_ok=True)
block = np.empty(chunks, dtype=arr.dtype)   # reused: one target chunk
scratch = np.empty(sc, dtype=arr.dtype)      # reused: one source chunk
written = 0
for t0 in range(0, n, chunks[0]):
    rows = min(chunks[0], n - t0)
    block[rows:] = arr.fill_value
    for i in range(t0 // sc[0], math.ceil((t0 + rows) / sc[0])):
        for j in range(math.ceil(s / sc[1])):
            with open(os.path.join(src, "2L/calldata/GT", f"{i}.{j}.0"), "rb") as f:
                codec.decode(f.read(), out=scratch)
            lo, hi = max(i * sc[0], t0), min((i + 1) * sc[0], t0 + rows)
            c0, c1 = j * sc[1], min((j + 1) * sc[1], s)
            block[lo - t0 : hi - t0, c0:c1] = scratch[lo - i * sc[0] : hi - i * sc[0], : c1 - c0]
    data = codec.encode(block)
    with open(os.path.join(out, f"{t0 // chunks[0]}.0.0"), "wb") as f:
        f.write(data)
    written += len(data)
print(json.dumps({"seconds": time.perf_counter() - t, "stored": written}))
"""

TUTORIAL = r"""
import json, shutil, sys, time
import zarr
src, out, chunks = sys.argv[1], sys.argv[2], tuple(int(c) for c in sys.argv[3].split(","))
shutil.rmtree(out, ignore_errors=True)
t = time.perf_counter()
gt = zarr.open_group(src, mode="r")["2L/calldata/GT"]
# The tutorial's call, as written (zarr's default compressor is the source's Blosc lz4 5).
z = zarr.array(gt, chunks=chunks, store=zarr.DirectoryStore(out))
print(json.dumps({"seconds": time.perf_counter() - t, "stored": z.nbytes_stored}))
"""


def best_of(repeat: int, args: list[str]) -> dict[str, Any]:
    """``repeat`` runs: the fastest wall time (other processes only ever add time) and the
    largest peak RSS."""
    runs = [measure(args) for _ in range(repeat)]
    best = min(runs, key=lambda r: r["wall"])
    return {
        **best,
        "peak_rss": max(r["peak_rss"] for r in runs),
        "walls": [r["wall"] for r in runs],
    }


def measure(args: list[str]) -> dict[str, Any]:
    """Run ``args`` in a child; return wall seconds, peak RSS (bytes) and its stdout."""
    started = time.perf_counter()
    pid = os.posix_spawn(args[0], args, dict(os.environ), file_actions=_redirect(), setsid=False)
    _, status, usage = os.wait4(pid, 0)
    wall = time.perf_counter() - started
    out = Path(_OUT).read_text()
    err = Path(_ERR).read_text()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(args[:6])} ... failed ({code}):\n{err[-3000:]}")
    return {"wall": wall, "peak_rss": usage.ru_maxrss * 1024, "stdout": out}


_OUT = "/tmp/zarrgeno-bench-rechunk.out"
_ERR = "/tmp/zarrgeno-bench-rechunk.err"


def _redirect() -> list[tuple[Any, ...]]:
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    return [
        (os.POSIX_SPAWN_OPEN, 1, _OUT, flags, 0o644),
        (os.POSIX_SPAWN_OPEN, 2, _ERR, flags, 0o644),
    ]


def python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def zarrgeno(*args: str) -> list[str]:
    return [sys.executable, "-m", "zarrgeno", *args]


def ensure_store(path: Path) -> None:
    if (path / GT_PATH / ".zarray").exists():
        return
    print(f"simulating {path} (2L at full size, seed 1)...", flush=True)
    from zarrgeno.simulate.genotypes import simulate_store

    simulate_store(str(path), contigs=("2L",), scale=1, seed=1)


#: Memory-model calibration: (what, command after the source and target), on a 1/8-size 2L.
CALIBRATION = (
    (
        "tutorial-like chunks, 1 task",
        ["rechunk", "--chunks", "1516430,81,2", "--max-mem", "1GB", "--backend", "sequential"],
    ),
    (
        "tutorial-like chunks, 2 threads",
        ["rechunk", "--chunks", "1516430,81,2", "--max-mem", "1GB", "--workers", "2"],
    ),
    (
        "small chunks, 2 threads",
        ["rechunk", "--chunks", "1000,81,2", "--max-mem", "200MB", "--workers", "2"],
    ),
    (
        "one sample per chunk (temp store)",
        ["rechunk", "--chunks", "-1,1,2", "--max-mem", "300MB", "--workers", "2"],
    ),
    (
        "format 3, shards of 10 chunks",
        [
            "rechunk",
            "--chunks",
            "100000,81,2",
            "--zarr-format",
            "3",
            "--shards",
            "1000000,81,2",
            "--max-mem",
            "1GB",
            "--workers",
            "2",
        ],
    ),
    (
        "recompress zstd",
        [
            "recompress",
            "--compressor",
            "blosc:zstd:5:bitshuffle",
            "--max-mem",
            "400MB",
            "--workers",
            "2",
        ],
    ),
    (
        "recompress zstd + crc32",
        [
            "recompress",
            "--compressor",
            "blosc:zstd:5:bitshuffle",
            "--checksum",
            "crc32",
            "--max-mem",
            "400MB",
            "--workers",
            "2",
        ],
    ),
)


def eighth_store() -> Path:
    """The 1/8-size 2L, made if absent."""
    store = ROOT / "data" / "bench" / "2L-eighth"
    if not (store / GT_PATH / ".zarray").exists():
        from zarrgeno.simulate.genotypes import simulate_store

        simulate_store(str(store), contigs=("2L",), scale=0.125, seed=1)
    return store


#: The same rechunk written in format 2, and in format 3 with shards of 10 chunks.
SHARD_CHUNKS, SHARDS = "100000,81,2", "1000000,81,2"


def shards_ratio(work: Path, repeat: int) -> dict[str, Any]:
    """Wall time of a rechunk to format 3 with shards over the same rechunk to format 2."""
    store = eighth_store()
    common = ["--chunks", SHARD_CHUNKS, "--max-mem", "1GB", "--overwrite"]
    v2 = best_of(repeat, zarrgeno("rechunk", str(store), str(work / "v2"), *common))
    v3 = best_of(
        repeat,
        zarrgeno(
            "rechunk", str(store), str(work / "v3"), *common, "--zarr-format", "3",
            "--shards", SHARDS,
        ),
    )  # fmt: skip
    ratio = v3["wall"] / v2["wall"]
    print(
        f"\nrechunk {store.name} to {SHARD_CHUNKS} (best of {repeat}): format 2 "
        f"{v2['wall']:.1f} s, format 3 with shards {SHARDS} {v3['wall']:.1f} s: "
        f"{ratio:.2f}x (target 1.2x: {'met' if ratio <= 1.2 else 'MISSED'}); peak RSS "
        f"{gb(v2['peak_rss'])} and {gb(v3['peak_rss'])}"
    )
    return {"format2": v2["walls"], "format3_shards": v3["walls"], "ratio": ratio}


def calibrate(work: Path, baseline: int) -> list[dict[str, Any]]:
    """Modelled peak (from --plan) against measured peak RSS above the baseline."""
    store = eighth_store()
    print(f"\nmemory model calibration on {store} (1/8 of 2L):")
    print(
        f"{'case':36s} {'max-mem':>8s} {'tasks':>5s} {'model':>9s} {'measured':>9s} "
        f"{'meas/model':>10s} {'meas/max-mem':>12s}"
    )
    rows = []
    for name, (command, *options) in CALIBRATION:
        target = str(work / "calibrate")
        plan = json.loads(
            measure(
                zarrgeno(command, str(store), target, *options, "--plan", "--json", "--overwrite")
            )["stdout"]
        )
        run = measure(zarrgeno(command, str(store), target, *options, "--overwrite"))
        model = plan["expected_peak"]
        used = run["peak_rss"] - baseline
        budget = plan["max_mem"]
        tasks = max(a["concurrency"] for a in plan["arrays"])
        print(
            f"{name:36s} {gb(budget):>8s} {tasks:5d} {gb(model):>9s} {gb(used):>9s} "
            f"{used / model:10.2f} {used / budget:12.2f}"
        )
        rows.append({"case": name, "max_mem": budget, "model": model, "measured": used})
    return rows


def gb(n: float) -> str:
    return f"{n / 1e9:.2f} GB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--work", type=Path, default=ROOT / "data" / "bench" / "rechunk-work")
    parser.add_argument("--quick", action="store_true", help="skip the tutorial baseline")
    parser.add_argument("--codec", action="append", help="codecs for recompress (repeatable)")
    parser.add_argument("--no-calibrate", action="store_true", help="skip the model check")
    parser.add_argument(
        "--shards-only", action="store_true", help="only format 3 with shards against format 2"
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per rechunk measurement")
    parser.add_argument(
        "--repeat-recompress", type=int, default=2, help="runs per recompress codec"
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    opts = parser.parse_args()
    work = opts.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    if opts.shards_only:
        shards_ratio(work, opts.repeat)
        shutil.rmtree(work, ignore_errors=True)
        return
    ensure_store(opts.store)
    src = str(opts.store)
    import zarr

    raw = zarr.open_group(src, mode="r")[GT_PATH].nbytes
    max_mem = 4e9
    print(f"store {src}: {GT_PATH} {gb(raw)} raw; {platform.node()}, {os.cpu_count()} cores")
    load = "{:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    print(f"load average at start (other processes slow every timing): {load}")
    results: dict[str, Any] = {"store": src, "raw_bytes": raw, "cores": os.cpu_count()}

    base = measure(python(BASELINE))
    results["baseline_rss"] = base["peak_rss"]
    print(f"interpreter baseline (imports only): peak RSS {gb(base['peak_rss'])}")

    # Warm the page cache once, so the first measurement is not the only one reading disk.
    for f in (opts.store / GT_PATH).iterdir():
        f.read_bytes()

    n = opts.repeat
    limit = best_of(n, python(LIMIT, src, str(work / "limit"), TUTORIAL_CHUNKS))
    rechunk = best_of(
        n,
        zarrgeno(
            "rechunk",
            src,
            str(work / "rechunk"),
            "--chunks",
            TUTORIAL_CHUNKS,
            "--max-mem",
            MAX_MEM,
            "--overwrite",
            "--json",
        ),
    )
    verify = best_of(n, zarrgeno("verify", src, str(work / "rechunk"), "--max-mem", MAX_MEM))
    rows = [
        ("limit (decode + encode + write once)", limit),
        ("zarrgeno rechunk", rechunk),
        ("zarrgeno verify", verify),
    ]
    if not opts.quick:
        tutorial = best_of(n, python(TUTORIAL, src, str(work / "tutorial"), TUTORIAL_CHUNKS))
        rows.append(("tutorial zarr.array(src, chunks=...)", tutorial))
    print(f"\nrechunk {GT_PATH} to {TUTORIAL_CHUNKS} with --max-mem {MAX_MEM} (best of {n}):")
    print(
        f"{'measurement':40s} {'wall s':>8s} {'x limit':>8s} {'peak RSS':>10s} "
        f"{'RSS - base':>11s} {'/ max-mem':>9s}"
    )
    for name, r in rows:
        above = r["peak_rss"] - base["peak_rss"]
        print(
            f"{name:40s} {r['wall']:8.1f} {r['wall'] / limit['wall']:8.2f} "
            f"{gb(r['peak_rss']):>10s} {gb(above):>11s} {above / max_mem:9.2f}"
        )
        results[name] = {"wall": r["wall"], "walls": r["walls"], "peak_rss": r["peak_rss"]}
    ratio = rechunk["wall"] / limit["wall"]
    rss = (rechunk["peak_rss"] - base["peak_rss"]) / max_mem
    print(
        f"targets: rechunk within 2x of the limit: {ratio:.2f}x "
        f"({'met' if ratio <= 2 else 'MISSED'}); peak RSS within 1.25x max-mem "
        f"(+ baseline): {rss:.2f}x ({'met' if rss <= 1.25 else 'MISSED'})"
    )

    print(
        f"\nrecompress {GT_PATH} (chunks kept, --max-mem {MAX_MEM}, default backend, "
        f"best of {opts.repeat_recompress}):"
    )
    print(
        f"{'codec':28s} {'wall s':>8s} {'MB/s raw':>9s} {'stored':>10s} {'ratio':>7s} "
        f"{'peak RSS':>10s}"
    )
    results["recompress"] = []
    for codec in opts.codec or CODECS:
        target = work / "recompress"
        r = best_of(
            opts.repeat_recompress,
            zarrgeno(
                "recompress",
                src,
                str(target),
                "--compressor",
                codec,
                "--max-mem",
                MAX_MEM,
                "--overwrite",
                "--json",
            ),
        )
        data = json.loads(r["stdout"])
        stored = sum(a["stored_bytes"] for a in data["arrays"] if a["path"] == GT_PATH)
        print(
            f"{codec:28s} {r['wall']:8.1f} {raw / 1e6 / r['wall']:9.0f} {gb(stored):>10s} "
            f"{raw / stored:7.1f} {gb(r['peak_rss']):>10s}"
        )
        results["recompress"].append(
            {"codec": codec, "wall": r["wall"], "stored": stored, "peak_rss": r["peak_rss"]}
        )
    print("load average after the timings: {:.2f} {:.2f} {:.2f}".format(*os.getloadavg()))
    results["shards"] = shards_ratio(work, opts.repeat)
    if not opts.no_calibrate:
        results["calibration"] = calibrate(work, base["peak_rss"])
    shutil.rmtree(work, ignore_errors=True)
    if opts.json:
        opts.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
