"""Benchmark genotype statistics on a full-size 2L: the decode limit, each backend, the tutorial.

One command measures, in one run and on the same store:

* ``limit``: every stored chunk read and Blosc-decoded by one process per core, nothing else;
* each ``zarrgeno`` backend computing the full statistics (per-variant counts kept);
* the Ag1000G tutorial's own code: its sequential chunk loop with ``calc_stats`` and its
  ``multiprocessing.Pool`` version, reproduced faithfully (off-by-one-chunk ``total_pos``
  included) as baselines.

Each measurement runs in a fresh child process; peak RSS is the largest sum of the resident
memory of that child and all its descendants (workers, local clusters), sampled every 10 ms.

Usage::

    .venv/bin/python benchmarks/bench_stats.py                 # data/bench/2L-full, made if absent
    .venv/bin/python benchmarks/bench_stats.py --repeat 3 --markdown results.md
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORE = ROOT / "data" / "bench" / "2L-full"
CONTIG = "2L"
GT_PATH = f"{CONTIG}/calldata/GT"
BACKENDS = ("sequential", "threads", "multiprocessing", "dask", "distributed")


# --------------------------------------------------------------------------------------
# The tutorial's code, reproduced as the baseline (not zarrgeno's code).


def calc_stats(gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The Ag1000G zarr tutorial's per-chunk statistics, verbatim."""
    missing = np.sum(gt[:, :, 0] == -1, axis=1)
    hom_ref = np.sum((gt[:, :, 0] == 0) & (gt[:, :, 0] == gt[:, :, 1]), axis=1)
    het = np.sum(gt[:, :, 0] != gt[:, :, 1], axis=1)
    return missing, hom_ref, het


def tutorial_loop(store: str) -> dict[str, int]:
    """The tutorial's sequential loop over chunk-sized slices of the zarr array."""
    import zarr

    gt = zarr.open_group(store, mode="r")[GT_PATH]
    chunk = gt.chunks[0]
    complete_data = more_anc_hom = total_pos = 0
    for i in range(0, gt.shape[0], chunk):
        block = gt[i : i + chunk]
        missing, hom_ref, het = calc_stats(block)
        complete_data += int(np.sum(missing == 0))
        more_anc_hom += int(np.sum(hom_ref > het))
        total_pos += chunk  # the tutorial's count: one chunk too many at the end
    return {"total_pos": total_pos, "complete_data": complete_data, "more_anc_hom": more_anc_hom}


def _tutorial_calc(args: tuple[str, int, int]) -> tuple[int, int]:
    import zarr

    store, i, chunk = args
    gt = zarr.open_group(store, mode="r")[GT_PATH]
    missing, hom_ref, het = calc_stats(gt[i : i + chunk])
    return int(np.sum(missing == 0)), int(np.sum(hom_ref > het))


def tutorial_pool(store: str) -> dict[str, int]:
    """The tutorial's ``multiprocessing.Pool`` version: workers open the store per offset."""
    import multiprocessing

    import zarr

    gt = zarr.open_group(store, mode="r")[GT_PATH]
    chunk, n = gt.chunks[0], gt.shape[0]
    with multiprocessing.Pool(os.cpu_count()) as pool:
        results = pool.map(_tutorial_calc, [(store, i, chunk) for i in range(0, n, chunk)])
    return {
        "total_pos": chunk * len(results),
        "complete_data": sum(r[0] for r in results),
        "more_anc_hom": sum(r[1] for r in results),
    }


# --------------------------------------------------------------------------------------
# The limit: read and decode every chunk with all cores, nothing else.


def _decode_keys(args: tuple[str, list[tuple[str, str]]]) -> int:
    import numcodecs.blosc
    import zarr

    numcodecs.blosc.use_threads = False
    store, keys = args
    root = zarr.open_group(store, mode="r")
    arrays = {path: root[path] for path in dict.fromkeys(path for path, _ in keys)}
    out = {path: np.empty(a.chunks, dtype=a.dtype) for path, a in arrays.items()}
    for path, key in keys:
        arr = arrays[path]
        arr.compressor.decode(arr.chunk_store[key], out=out[path])
    return len(keys)


def _chunk_keys(store: str, paths: list[str]) -> list[tuple[str, str]]:
    import zarr

    root = zarr.open_group(store, mode="r")
    keys = []
    for path in paths:
        arr = root[path]
        keys += [
            (path, arr._chunk_key((i, j, 0)))
            for i in range(arr.cdata_shape[0])
            for j in range(arr.cdata_shape[1])
        ]
    return keys


def decode_limit(store: str, processes: int, paths: list[str] | None = None) -> float:
    """Seconds to decode every chunk of ``paths`` (default: 2L's genotypes) with
    ``processes`` warm worker processes."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    keys = _chunk_keys(store, paths or [GT_PATH])
    parts = [(store, keys[p::processes]) for p in range(processes)]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=ctx) as pool:
        list(pool.map(_decode_keys, [(store, keys[:1])] * processes))  # start the workers
        started = time.perf_counter()
        total = sum(pool.map(_decode_keys, parts))
        elapsed = time.perf_counter() - started
    assert total == len(keys)
    return elapsed


def genotype_paths(store: str) -> list[str]:
    """Every genotype array of ``store`` (all contigs)."""
    from zarrgeno.io.store import find_genotypes, open_store

    return [a.path for a in find_genotypes(open_store(store)[1])]


# --------------------------------------------------------------------------------------
# One measurement, run in a child process.


def measure(name: str, store: str) -> dict[str, Any]:
    """Run one measurement here; returns wall seconds and the numbers it computed."""
    cores = os.cpu_count() or 1
    if name == "limit":
        return {"wall": decode_limit(store, cores)}
    if name in ("limit-all", "limit-all-1core"):
        processes = cores if name == "limit-all" else 1
        return {"wall": decode_limit(store, processes, genotype_paths(store))}
    if name == "limit-1core":
        return {"wall": decode_limit(store, 1)}
    if name in ("tutorial-loop", "tutorial-pool"):
        func = tutorial_loop if name == "tutorial-loop" else tutorial_pool
        started = time.perf_counter()
        numbers = func(store)
        return {"wall": time.perf_counter() - started, **numbers}
    from zarrgeno.stats.api import genotype_stats

    # "dask" is what `zarrgeno stats -b dask` does (a summary: no per-variant arrays kept);
    # "dask:variants" also keeps them (--output, --plot); "distributed:warm" connects to a
    # cluster started before the clock starts, as the tutorial's cluster is.
    backend, _, variant = name.partition(":")
    options: dict[str, Any] = {"per_variant": variant == "variants"}
    if variant == "warm":
        from zarrgeno.runtime.cluster import dask_client, scheduler_address

        with dask_client() as client:
            options["scheduler"] = scheduler_address(client)
            started = time.perf_counter()
            result = genotype_stats(store, contigs=[CONTIG], backend=backend, **options)
            wall = time.perf_counter() - started
    else:
        started = time.perf_counter()
        result = genotype_stats(store, contigs=[CONTIG], backend=backend, **options)
        wall = time.perf_counter() - started
    c = result.contig(CONTIG)
    return {
        "wall": wall,
        "backend": result.backend,
        "total_pos": c.total_pos,
        "complete_data": c.complete_data,
        "more_anc_hom": c.more_anc_hom,
        "n_missing": c.n_missing,
        "n_hom_ref": c.n_hom_ref,
        "n_het": c.n_het,
        "sample_sum": int(c.samples.counts.sum()),
    }


def _busy_seconds(times: Any) -> float:
    """CPU-seconds the whole machine spent busy, from ``psutil.cpu_times()``."""
    return float(sum(v for k, v in times._asdict().items() if k not in ("idle", "iowait")))


def wait_until_idle(max_wait: float, threshold: float = 0.1) -> float:
    """Wait (at most ``max_wait`` s) for 3 s in a row with under ``threshold`` of the CPU
    busy, so other work on the machine does not skew a measurement; returns the seconds
    waited."""
    import psutil

    started = time.monotonic()
    quiet = 0
    while quiet < 3 and time.monotonic() - started < max_wait:
        quiet = quiet + 1 if psutil.cpu_percent(interval=1.0) < 100 * threshold else 0
    return time.monotonic() - started


def run_child(name: str, store: str) -> dict[str, Any]:
    """Run ``measure(name)`` in a fresh interpreter, sampling its process tree; ``wall`` is
    the time the measurement reports, ``process_wall`` that of the whole process."""
    cmd = [sys.executable, __file__, "--child", name, "--store", store]
    tree = run_command(cmd)
    result = json.loads(tree["stdout"].strip().splitlines()[-1])
    result["peak_rss"] = max(tree["peak_rss"], result.pop("self_maxrss", 0))
    result["other_load"] = tree["other_load"]
    result["process_wall"], result["cpu"] = tree["wall"], tree["cpu"]
    return result


def run_command(
    cmd: list[str], env: dict[str, str] | None = None, stderr: int | None = None
) -> dict[str, Any]:
    """Run ``cmd``, sampling its process tree: wall seconds from start to exit, CPU seconds
    of the process and every descendant it waited for, peak RSS, and the load of others.

    Peak RSS is the tree's largest sum over processes; ``other_load`` is how many cores
    other processes used meanwhile, on average, so a disturbed measurement shows.
    ``stderr``: as ``subprocess.Popen``'s (``subprocess.DEVNULL`` hides the command's notes).
    """
    import psutil

    machine_before = _busy_seconds(psutil.cpu_times())
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
    peak = 0
    cpu_by_pid: dict[int, float] = {}
    stop = threading.Event()

    def sample() -> None:
        # Listing a process tree scans every /proc entry (about 1 ms here): do it every
        # 100 ms; reading known processes' memory costs 0.03 ms each, every 10 ms. Sampling
        # must not take the CPU it is measuring.
        nonlocal peak
        try:
            root = psutil.Process(proc.pid)
        except psutil.NoSuchProcess:
            return
        tree, listed = [root], 0.0
        while not stop.is_set():
            now = time.monotonic()
            if now - listed >= 0.1:
                with contextlib.suppress(psutil.NoSuchProcess):
                    tree = [root, *root.children(recursive=True)]
                listed = now
            total = 0
            for p in tree:
                with contextlib.suppress(psutil.NoSuchProcess):
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    cpu_by_pid[p.pid] = t.user + t.system
            if not root.is_running():
                break
            peak = max(peak, total)
            stop.wait(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    machine_busy = _busy_seconds(psutil.cpu_times()) - machine_before
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed (exit {proc.returncode})")
    cpu = (children.ru_utime + children.ru_stime) - (
        children_before.ru_utime + children_before.ru_stime
    )
    return {
        "wall": elapsed,
        "cpu": cpu,
        "peak_rss": peak,
        "other_load": max(0.0, machine_busy - max(cpu, sum(cpu_by_pid.values()))) / elapsed,
        "stdout": out,
    }


# --------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import dask
    import numcodecs
    import psutil
    import zarr

    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "zarr": zarr.__version__,
        "numcodecs": numcodecs.__version__,
        "dask": dask.__version__,
    }


def ensure_store(store: Path) -> None:
    if store.exists():
        return
    from zarrgeno.simulate.genotypes import simulate_store

    print(f"simulating {store} (2L, scale 1, seed 1); this takes a while ...", file=sys.stderr)
    simulate_store(str(store), contigs=(CONTIG,), scale=1.0, seed=1)


def warm_page_cache(store: Path) -> None:
    """Read every file once so every measurement sees the same (cached) store."""
    for path in store.rglob("*"):
        if path.is_file():
            with open(path, "rb") as f:
                while f.read(1 << 22):
                    pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", default=str(DEFAULT_STORE), help="full-size 2L store")
    parser.add_argument("--repeat", type=int, default=1, help="runs per fast measurement")
    parser.add_argument(
        "--backends",
        default=",".join((*BACKENDS, "multiprocessing:variants", "distributed:warm")),
        help="comma-separated; NAME:variants keeps per-variant counts, distributed:warm "
        "uses a cluster started before timing",
    )
    parser.add_argument("--skip-tutorial", action="store_true", help="skip the two slow baselines")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument(
        "--idle-wait",
        type=float,
        default=120.0,
        help="before each run, wait up to this many seconds for an idle machine (0: never)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="instead: one core's time per stored chunk, decode vs kernel stages",
    )
    parser.add_argument(
        "--whole",
        action="store_true",
        help="instead: whole processes (the console script, interpreter start included) on "
        "the quarter-size 2L and the full five-contig store, beside their decode limits",
    )
    parser.add_argument(
        "--peers",
        action="store_true",
        help="with --whole: also scikit-allel and sgkit, from a virtual environment made on "
        "first use (data/peers-venv)",
    )
    parser.add_argument(
        "--peers-genome",
        action="store_true",
        help="with --peers: run them on the full store too (scikit-allel takes about 25 "
        "minutes of CPU there)",
    )
    parser.add_argument(
        "--genome-repeat",
        type=int,
        default=1,
        help="with --whole: runs per full-store row (0: leave that store out)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.whole:
        return run_whole(args)

    if args.profile:
        ensure_store(Path(args.store))
        profile(args.store)
        return 0

    if args.child:
        import resource

        result = measure(args.child, args.store)
        result["self_maxrss"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps(result))
        return 0

    store = Path(args.store)
    ensure_store(store)
    import zarr

    arr = zarr.open_group(str(store), mode="r")[GT_PATH]
    raw = arr.nbytes
    info = machine()
    print(
        f"store {store}: {CONTIG} {arr.shape} chunks {arr.chunks}, {raw / 1e9:.2f} GB raw, "
        f"{arr.nbytes_stored / 1e9:.2f} GB stored"
    )
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    warm_page_cache(store)
    load_before = os.getloadavg()
    print("load average before: " + " ".join(f"{x:.2f}" for x in load_before), flush=True)

    names = ["limit", "limit-1core", *args.backends.split(",")]
    if not args.skip_tutorial:
        names += ["tutorial-pool", "tutorial-loop"]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        runs = []
        for _ in range(1 if name == "tutorial-loop" else args.repeat):
            if args.idle_wait > 0:
                wait_until_idle(args.idle_wait)
            runs.append(run_child(name, str(store)))
        walls = [r["wall"] for r in runs]
        best = dict(sorted(runs, key=lambda r: r["wall"])[(len(runs) - 1) // 2])  # the median run
        best["walls"] = walls
        best["peak_rss"] = max(r["peak_rss"] for r in runs)
        results[name] = best
        runs_text = ", ".join(f"{r['wall']:.2f} (other load {r['other_load']:.2f})" for r in runs)
        print(f"  {name:24s} {best['wall']:8.2f} s   runs: {runs_text}", flush=True)

    load_after = os.getloadavg()
    print("load average after: " + " ".join(f"{x:.2f}" for x in load_after))
    info["load"] = f"{load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute)"
    check(results)
    table = render(results, raw, info, store, args)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def run_whole(args: argparse.Namespace) -> int:
    """The whole-process tables: start-up, the quarter-size 2L, the full five-contig store."""
    import whole

    whole.ensure_stores()
    peers = whole.ensure_peers() if args.peers else None
    info = machine()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    load_before = os.getloadavg()
    print("load average before: " + " ".join(f"{x:.2f}" for x in load_before), flush=True)

    def run(cmd: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
        if args.idle_wait > 0:
            wait_until_idle(args.idle_wait)
        result = run_command(cmd, env=env)
        result["backend"] = whole.backend_of(result["stdout"])
        return result

    def tutorial(name: str, store: Path) -> list[str]:
        return [sys.executable, __file__, "--child", name, "--store", str(store)]

    def peer(name: str, store: Path, *contigs: str) -> list[str]:
        return [str(peers), str(Path(__file__).with_name("peers.py")), name, str(store), *contigs]

    def limit(store: Path, name: str = "limit-all") -> Any:
        return lambda: run_child(name, str(store))

    @contextlib.contextmanager
    def running_cluster() -> Any:
        from zarrgeno.runtime.cluster import dask_client, scheduler_address

        with dask_client(dashboard=False) as client:
            yield scheduler_address(client)

    out = ["### Start-up", ""]
    warm_page_cache(whole.QUARTER)
    out += whole.startup_rows(whole.QUARTER, run, args.repeat)
    sections = (
        ("quarter-size 2L", whole.QUARTER, "2L", args.repeat),
        ("full five-contig store", whole.GENOME, None, args.genome_repeat),
    )
    for title, store, contig, repeat in sections:
        if repeat < 1:
            continue
        print(f"{title}: {store}", flush=True)
        warm_page_cache(store)
        shape, raw = whole.describe(store)
        contigs = [contig] if contig else []
        extra: list[tuple[str, list[str]]] = []
        sgkit_cmd = [whole.ZARRGENO, "stats", str(store), *(["-c", contig] if contig else [])]
        extra.append(
            ("zarrgeno stats --semantics sgkit", [*sgkit_cmd, "--semantics", "sgkit", "--json"])
        )
        if contig:
            extra += [("tutorial-pool", tutorial("tutorial-pool", store))]
            extra += [("tutorial-loop", tutorial("tutorial-loop", store))]
        if peers is not None and (contig or args.peers_genome):
            extra += [("scikit-allel 1.3.13", peer("allel", store, *contigs))]
            extra += [("sgkit 0.10", peer("sgkit", store, *contigs))]
        rows, _ = whole.rows_for(
            store,
            contig=contig,
            backends=list(BACKENDS),
            run=run,
            repeat=repeat,
            limit=limit(store),
            limit_one=limit(store, "limit-all-1core"),
            extra=extra,
            scheduler=running_cluster,
        )
        ours = whole.stats_totals(rows["zarrgeno stats --semantics sgkit"]["stdout"])
        for line in whole.check_peers(rows, ours):
            print(line)
        reference = whole.stats_totals(rows["zarrgeno stats (default)"]["stdout"])
        for name in ("tutorial-loop", "tutorial-pool"):
            if name in rows:
                t = json.loads(rows[name]["stdout"].strip().splitlines()[-1])
                for k in ("complete_data", "more_anc_hom"):
                    if t[k] != reference[k]:
                        raise SystemExit(f"{name} {k}={t[k]} but zarrgeno says {reference[k]}")
        out += ["", f"### {title}: {shape}", ""]
        out += whole.table(
            f"Median of {repeat} run(s) per row (tutorial and peer rows: 1).",
            rows,
            raw,
            "zarrgeno stats (default)",
        )
    load_after = os.getloadavg()
    out += [
        "",
        "Machine: "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + f"; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after (1-minute).",
    ]
    table = "\n".join(out)
    print()
    print(table)
    if args.markdown:
        Path(args.markdown).write_text(table + "\n")
    return 0


def profile(store: str, n_chunks: int = 24) -> None:
    """CPU time (this thread) per stored chunk: read the bytes, decode, count; and decode and
    count a few Blosc blocks at a time, in cache (what ``zarrgeno stats`` does)."""
    import numcodecs.blosc

    from zarrgeno.io.chunks import blockwise_blosc
    from zarrgeno.io.decompress import lz4_block_decoder
    from zarrgeno.io.store import StoreRef
    from zarrgeno.stats.kernels import count_blosc, count_calls
    from zarrgeno.stats.reader import ChunkReader

    numcodecs.blosc.use_threads = False
    reader = ChunkReader(StoreRef.from_source(store), GT_PATH)
    rows, cols = reader.array.cdata_shape[:2]
    picks = [
        (i, j) for i in np.linspace(0, rows - 2, n_chunks // cols, dtype=int) for j in range(cols)
    ]
    clock = time.thread_time
    spent = dict.fromkeys(("read", "decode", "kernel", "incache"), 0.0)
    lz4 = lz4_block_decoder()
    arr = reader.array
    out = np.empty(arr.chunks, dtype=arr.dtype)
    for repeat in range(2):  # the first pass warms caches and compiles the kernel
        if repeat:
            spent.update(dict.fromkeys(spent, 0.0))
        for i, j in picks:
            t0 = clock()
            raw = arr.chunk_store[arr._chunk_key((i, j, 0))]
            t1 = clock()
            arr.compressor.decode(raw, out=out)
            t2 = clock()
            width = min(arr.chunks[1], arr.shape[1] - j * arr.chunks[1])
            count_calls(out, columns=(0, width))
            t3 = clock()
            block = blockwise_blosc(raw)
            if lz4 is not None and block is not None:
                rows = arr.chunks[0]
                count_blosc(raw, lz4, block, rows, arr.chunks[1], "", columns=(0, width))
            t4 = clock()
            spent["read"] += t1 - t0
            spent["decode"] += t2 - t1
            spent["kernel"] += t3 - t2
            spent["incache"] += t4 - t3
    per = {k: 1e3 * v / len(picks) for k, v in spent.items()}
    print(f"{len(picks)} stored chunks of {arr.chunks}, ms of one core per chunk:")
    print(
        f"  read bytes {per['read']:.2f}   decode {per['decode']:.2f}   kernel {per['kernel']:.2f}"
    )
    print(f"  kernel / decode = {per['kernel'] / per['decode']:.2f}")
    both = per["decode"] + per["kernel"]
    print(
        f"  decoded and counted a few Blosc blocks at a time: {per['incache']:.2f}"
        f"   / (decode + kernel) = {per['incache'] / both:.2f}"
        f"   / decode = {per['incache'] / per['decode']:.2f}"
    )


def check(results: dict[str, dict[str, Any]]) -> None:
    """Every backend must agree exactly; the tutorial must agree except for its total_pos."""
    keys = (
        "total_pos",
        "complete_data",
        "more_anc_hom",
        "n_missing",
        "n_hom_ref",
        "n_het",
        "sample_sum",
    )
    backends = [k for k in results if "total_pos" in results[k] and not k.startswith("tutorial")]
    if not backends:
        return
    ref = results[backends[0]]
    for name in backends[1:]:
        bad = [k for k in keys if results[name][k] != ref[k]]
        if bad:
            raise SystemExit(f"{name} disagrees with {backends[0]} on {bad}")
    for name in ("tutorial-loop", "tutorial-pool"):
        if name in results:
            t = results[name]
            for k in ("complete_data", "more_anc_hom"):
                if t[k] != ref[k]:
                    raise SystemExit(f"{name} {k}={t[k]} but zarrgeno says {ref[k]}")
            print(
                f"  {name}: complete_data and more_anc_hom agree with zarrgeno; its total_pos "
                f"is {t['total_pos']:,} where the contig has {ref['total_pos']:,} variants"
            )
    print(
        f"  all backends agree: complete_data {ref['complete_data']:,}, "
        f"more_anc_hom {ref['more_anc_hom']:,}, total_pos {ref['total_pos']:,}"
    )


def render(
    results: dict[str, dict[str, Any]],
    raw: int,
    info: dict[str, str],
    store: Path,
    args: argparse.Namespace,
) -> str:
    limit = results["limit"]["wall"]
    loop = results.get("tutorial-loop", {}).get("wall")
    lines = [
        f"Store: `{store.name}` ({CONTIG}, {raw / 1e9:.2f} GB of raw genotypes). "
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['ram']} RAM; "
        f"Python {info['python']}, numpy {info['numpy']}, zarr {info['zarr']}, "
        f"numcodecs {info['numcodecs']}, dask {info['dask']}. "
        f"Median of {args.repeat} run(s) per row (the tutorial loop: 1). "
        f"Load average {info['load']}; *other load*: cores used by other processes during "
        "the row's run (0 = an undisturbed measurement).",
        "",
        "| measurement | wall (s) | GB/s raw | x limit | speed-up vs tutorial loop | peak RSS (MB) "
        "| other load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        label = r.get("backend", name) if name not in ("limit", "limit-1core") else name
        if name == "distributed:warm":
            label += ", cluster already running"
        if name.endswith(":variants"):
            label += ", per-variant counts kept"
        speed = raw / r["wall"] / 1e9
        vs = f"{loop / r['wall']:.1f}x" if loop else "-"
        lines.append(
            f"| {label} | {r['wall']:.2f} | {speed:.2f} | {r['wall'] / limit:.2f} | {vs} | "
            f"{r['peak_rss'] / 1e6:.0f} | {r['other_load']:.2f} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
