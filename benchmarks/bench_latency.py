"""Benchmark reading a store over a slow link: a local HTTP server that waits before every
answer (and optionally caps its bandwidth), against the same commands on the local copy.

One run measures, interleaved and repeated, each command as a whole process:

* ``stats local``: ``zarrgeno stats STORE`` on the local copy, the baseline;
* ``stats URL``: ``zarrgeno stats URL`` with no added latency (what the transfer itself
  costs) and at each ``--latency``;
* ``tutorial loop URL``: the Ag1000G tutorial's loop (``calc_stats`` on each chunk-sized
  slice) over ``zarr.open_consolidated(fsspec.get_mapper(URL))``;
* ``dask.array.from_zarr URL``: the same counts with dask on the URL;
* ``download``: ``zarrgeno download URL DEST`` with no added latency and at each latency;
* ``verify``: ``zarrgeno verify URL COPY`` against ``zarrgeno verify STORE COPY`` (COPY: a
  local zstd copy of the store, made once before the runs);
* ``recompress``: ``zarrgeno recompress URL DEST --compressor zstd:1`` against the same
  from the local copy;
* ``rechunk`` (not by default): ``zarrgeno rechunk URL DEST --chunks 600000,81,2`` against
  the same from the local copy.

The server counts the requests of each command and the most it answered at once; the
table gives the median wall time, the ratio to the row's baseline (the local run of the
same command, or the download with no added latency), the requests and that peak. With
``--before TREE``, each URL row of verify, recompress and rechunk is also run with the
zarrgeno of TREE (another checkout, built in place), interleaved with this one's.

Usage::

    .venv/bin/python benchmarks/bench_latency.py                 # data/bench/q2L.zarr
    .venv/bin/python benchmarks/bench_latency.py --latency 40,100 --repeat 3 --bandwidth 100
    .venv/bin/python benchmarks/bench_latency.py --skip-peers --tree ../other-checkout
    .venv/bin/python benchmarks/bench_latency.py --rows verify,recompress --before ../main
"""

from __future__ import annotations

import argparse
import functools
import http.server
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STORE = ROOT / "data" / "bench" / "q2L.zarr"
#: The quarter-size simulated 2L: 12,131,437 variants x 81 samples x 2, chunks 300,000 x 50 x 2.
SIMULATE = ["--contig", "2L", "--scale", "0.25", "--seed", "1"]
ZARRGENO = [sys.executable, "-m", "zarrgeno"]

# The tutorial's code over a URL, run in a child process (not zarrgeno's code).
TUTORIAL = """
import sys, fsspec, numpy as np, zarr
def calc_stats(gt):
    missing = np.sum(gt[:, :, 0] == -1, axis=1)
    hom_ref = np.sum((gt[:, :, 0] == 0) & (gt[:, :, 0] == gt[:, :, 1]), axis=1)
    het = np.sum(gt[:, :, 0] != gt[:, :, 1], axis=1)
    return missing, hom_ref, het
gt = zarr.open_consolidated(fsspec.get_mapper(sys.argv[1]))["2L/calldata/GT"]
chunk = gt.chunks[0]
complete_data = more_anc_hom = 0
for i in range(0, gt.shape[0], chunk):
    missing, hom_ref, het = calc_stats(gt[i : i + chunk])
    complete_data += int(np.sum(missing == 0))
    more_anc_hom += int(np.sum(hom_ref > het))
print(complete_data, more_anc_hom)
"""
DASK = """
import sys, dask, dask.array as da
gt = da.from_zarr(sys.argv[1], component="2L/calldata/GT")
missing = (gt[:, :, 0] == -1).sum(axis=1)
hom_ref = ((gt[:, :, 0] == 0) & (gt[:, :, 0] == gt[:, :, 1])).sum(axis=1)
het = (gt[:, :, 0] != gt[:, :, 1]).sum(axis=1)
print(*dask.compute((missing == 0).sum(), (hom_ref > het).sum()))
"""


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self, head: bool) -> None:
        server = self.server
        with server.lock:
            server.requests += 1
            server.in_flight += 1
            server.peak = max(server.peak, server.in_flight)
        try:
            time.sleep(server.latency)
            if not head and server.bandwidth:
                path = Path(self.translate_path(self.path))
                if path.is_file():
                    time.sleep(path.stat().st_size / server.bandwidth)
            super().do_HEAD() if head else super().do_GET()
        finally:
            with server.lock:
                server.in_flight -= 1

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path, bandwidth: float) -> None:
        super().__init__(("127.0.0.1", 0), functools.partial(_Handler, directory=str(directory)))
        self.lock = threading.Lock()
        self.latency = 0.0
        self.bandwidth = bandwidth
        self.requests = self.in_flight = self.peak = 0

    def reset(self, latency: float) -> None:
        with self.lock:
            self.latency, self.requests, self.peak = latency, 0, 0


@dataclass
class Row:
    name: str
    latency: float
    command: list[str]
    baseline: str
    times: list[float] = field(default_factory=list)
    requests: int = 0
    peak: int = 0
    output: str = ""
    #: The source tree whose zarrgeno runs the command (None: --tree).
    tree: Path | None = None


#: Row groups of --rows; rechunk is run only when asked for.
GROUPS = ("stats", "download", "verify", "recompress", "rechunk")
REWRITES = {
    "recompress": ["--compressor", "zstd:1"],
    "rechunk": ["--chunks", "600000,81,2"],
}


def _rewrite_args(group: str, source: str, copy: Path, extra: list[str]) -> list[str]:
    """The zarrgeno arguments of ``group`` reading ``source`` (a copy's with ``extra``)."""
    if group == "verify":
        return ["verify", source, str(copy), "--no-progress"]
    return [group, source, "{dest}", *REWRITES[group], "--no-progress", *extra]


def _rewrite_rows(
    groups: set[str],
    store: Path,
    copy: Path,
    url: str,
    latencies: list[float],
    before: Path | None,
    extra: list[str],
) -> list[Row]:
    """Rows of verify, recompress and rechunk: the local run, then the URL at each latency
    (and, with ``before``, the same with that tree's zarrgeno)."""
    rows = []
    for group in ("verify", "recompress", "rechunk"):
        if group not in groups:
            continue
        name = "zarrgeno verify URL LOCAL" if group == "verify" else f"zarrgeno {group} URL"
        local = Row(
            f"zarrgeno {group} (local)",
            0.0,
            [*ZARRGENO, *_rewrite_args(group, str(store), copy, extra)],
            "",
        )
        rows.append(local)
        command = [*ZARRGENO, *_rewrite_args(group, url, copy, extra)]
        for lat in [0.0, *latencies]:
            rows.append(Row(name, lat, command, f"{local.name}@0"))
            if before is not None:
                rows.append(Row(f"{name} (before)", lat, command, f"{local.name}@0", tree=before))
    return rows


def _run(row: Row, server: _Server, tree: Path) -> None:
    tree = row.tree or tree
    server.reset(row.latency)
    scratch = tempfile.mkdtemp(prefix="bench-latency-")
    command = [a.replace("{dest}", f"{scratch}/mirror") for a in row.command]
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, cwd=tree, env=env)
        seconds = time.perf_counter() - start
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if done.returncode != 0:
        raise SystemExit(f"{row.name} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    row.times.append(seconds)
    row.requests, row.peak = server.requests, server.peak
    row.output = done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", type=Path, default=DEFAULT_STORE)
    parser.add_argument("--latency", default="40,100", help="milliseconds per request, a list")
    parser.add_argument("--bandwidth", type=float, default=0.0, help="MB/s per request (0: none)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-peers", action="store_true", help="no tutorial and dask rows")
    parser.add_argument(
        "--rows",
        default="stats,download,verify,recompress",
        help=f"row groups to run, a list of {', '.join(GROUPS)}",
    )
    parser.add_argument(
        "--copy-args",
        default="",
        help="more options of the recompress and rechunk rows, e.g. '-b sequential'",
    )
    parser.add_argument(
        "--before",
        type=Path,
        help="also run the URL rows of verify, recompress and rechunk with this tree's zarrgeno",
    )
    parser.add_argument("--markdown", type=Path, help="also write the table here")
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="run the zarrgeno of this source tree (built in place), to compare versions",
    )
    args = parser.parse_args()
    store = args.store.resolve()
    if not store.exists():
        subprocess.run([*ZARRGENO, "simulate", str(store), *SIMULATE], check=True)
    latencies = [float(ms) / 1000 for ms in args.latency.split(",") if ms.strip()]
    server = _Server(store.parent, args.bandwidth * 1e6)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/{store.name}"
    groups = {g.strip() for g in args.rows.split(",") if g.strip()}
    unknown = groups - set(GROUPS)
    if unknown:
        raise SystemExit(f"unknown --rows {', '.join(sorted(unknown))} (choose from {GROUPS})")
    first = latencies[0]
    stats = Row("zarrgeno stats (local)", 0.0, [*ZARRGENO, "stats", str(store)], "")
    rows = []
    if "stats" in groups:
        rows.append(stats)
        rows += [
            Row("zarrgeno stats URL", lat, [*ZARRGENO, "stats", url], stats.name)
            for lat in [0.0, *latencies]
        ]
        if not args.skip_peers:
            rows += [
                Row("tutorial loop URL", first, [sys.executable, "-c", TUTORIAL, url], stats.name),
                Row(
                    "dask.array.from_zarr URL", first, [sys.executable, "-c", DASK, url], stats.name
                ),
            ]
    if "download" in groups:
        download = [*ZARRGENO, "download", url, "{dest}", "--json"]
        rows.append(Row("zarrgeno download URL", 0.0, download, ""))
        rows += [
            Row("zarrgeno download URL", lat, download, "zarrgeno download URL@0")
            for lat in latencies
        ]
    scratch = Path(tempfile.mkdtemp(prefix="bench-latency-copy-"))
    copy = scratch / "copy.zarr"
    if "verify" in groups:  # the local store verify compares with
        subprocess.run(
            [*ZARRGENO, "recompress", str(store), str(copy), *REWRITES["recompress"]],
            check=True,
            capture_output=True,
        )
    before = args.before.resolve() if args.before else None
    extra = shlex.split(args.copy_args)
    rows += _rewrite_rows(groups, store, copy, url, latencies, before, extra)
    env_note = os.environ.get("ZARRGENO_FETCH_CONCURRENCY", "default")
    try:
        for _ in range(args.repeat):  # interleaved: the machine's load falls on every row alike
            for row in rows:
                _run(row, server, args.tree.resolve())
    finally:
        server.shutdown()
        shutil.rmtree(scratch, ignore_errors=True)
    medians = {f"{r.name}@{r.latency * 1000:g}": statistics.median(r.times) for r in rows}
    base = {"": None, stats.name: medians.get(f"{stats.name}@0")}
    lines = [
        f"store {store.name}: median of {args.repeat} runs, fetch concurrency {env_note}"
        + (f", copies with {args.copy_args}" if args.copy_args else "")
        + (f", {args.bandwidth:g} MB/s per request" if args.bandwidth else ""),
        "",
        "| command | added latency | wall s | x baseline | requests | most in flight |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        wall = medians[f"{row.name}@{row.latency * 1000:g}"]
        ref = base.get(row.baseline, medians.get(row.baseline))
        ratio = f"{wall / ref:.2f}" if ref else "1.00"
        lines.append(
            f"| {row.name} | {row.latency * 1000:g} ms | {wall:.2f} | {ratio} | "
            f"{row.requests} | {row.peak} |"
        )
    text = "\n".join(lines)
    print(text)
    if args.markdown:
        args.markdown.write_text(text + "\n")


if __name__ == "__main__":
    main()
