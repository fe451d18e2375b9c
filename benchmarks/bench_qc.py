"""Benchmark the QC pass as a user runs it, beside the counts alone and plink2, on one store.

On the simulated five-contig store (``zarrgeno simulate DIR --scale S --seed 1``, with its
sites store and its site-filter store) and a ``samples.meta.csv`` of three countries, each
row is one command run as a fresh process, timed from its start to its exit with the peak
RSS of its process tree (``bench_stats.run_command``), round after round (``--repeat``):

* ``counts``: ``zarrgeno stats STORE --json``, the baseline of every ratio;
* ``qc``: ``--qc --json``, every statistic computed, no files;
* ``qc + filter + 3 cohorts``: the same with ``--site-filters``, ``--sample-metadata`` and
  ``--cohort-by country``;
* ``qc --format plink2`` and ``... + filter + 3 cohorts``: the same writing plink2's six
  reports (and each cohort's ``.afreq``), with ``--sites`` for their ID, REF and ALT;
* with ``--whole-chunks``, ``qc (whole chunks)`` and ``qc + filter + 3 cohorts (whole
  chunks)``: the same two rows with every chunk decoded whole before it is counted
  (``zarrgeno.stats.reader.BLOCKWISE`` off) rather than a few Blosc blocks at a time;
* ``plink2`` and ``plink2 + filter + 3 cohorts``: plink2 2.0 computing the same files from
  its own format (``--var-filter``, then ``--freq --loop-cats country`` for the cohorts),
  ``--threads 2``.

plink2's fileset (.pgen, .pvar with the filter as its FILTER column, .psam) is written once
from the Zarr stores with pgenlib, timed apart and kept for later runs. ``--check`` instead
runs each file-writing command once and compares zarrgeno's files with plink2's byte for
byte. pgenlib is the benchmark's own dependency: ``pip install -e '.[bench]'``.

Usage::

    .venv/bin/python benchmarks/bench_qc.py --scale 0.02 --repeat 3
    .venv/bin/python benchmarks/bench_qc.py --scale 1 --repeat 3 --no-files
    .venv/bin/python benchmarks/bench_qc.py --scale 0.002 --check
"""

from __future__ import annotations

import argparse
import filecmp
import importlib.util
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_cohorts import write_table
from bench_stats import machine, run_command, warm_page_cache
from whole import ZARRGENO, _median

ROOT = Path(__file__).resolve().parents[1]
CONTIGS = ("2L", "2R", "3L", "3R", "X")
REPORTS = (".afreq", ".gcount", ".hardy", ".vmiss", ".smiss", ".het")
PLINK2_STATS = ("--freq", "--geno-counts", "--hardy", "--het", "--missing")
#: Rows of the pgen written per call: about 40 MB of int32 alleles for 81 samples.
BATCH = 1 << 15
COHORTS = 3


class Paths:
    """Where one scale's stores, plink2 fileset and outputs live (``data/bench/qc-S``)."""

    def __init__(self, where: Path) -> None:
        self.where = where
        self.store = where / "genotypes"
        self.sites = where / "sites"
        self.filters = where / "filters"
        self.meta = where / "samples.meta.csv"
        self.pheno = where / "samples.pheno"
        self.pfile = where / "plink2" / "all"
        self.conversion = where / "plink2" / "conversion.json"
        self.out = where / "out"


def ensure_stores(paths: Paths, scale: float) -> None:
    """Simulate the store, its sites and its filters (seed 1), and the cohort tables."""
    if not paths.store.exists():
        paths.where.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [ZARRGENO, "simulate", str(paths.store), "--scale", str(scale), "--seed", "1",
             "--sites", str(paths.sites), "--site-filters", str(paths.filters)],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    if not paths.meta.exists():
        table = write_table(str(paths.store), COHORTS, paths.where)
        assert table == paths.meta
    rows = [line.split(",") for line in paths.meta.read_text().splitlines()[1:]]
    paths.pheno.write_text("#IID\tcountry\n" + "".join(f"{s}\t{c}\n" for s, c in rows))


def convert(paths: Paths) -> None:
    """Write plink2's .pgen (pgenlib), .pvar and .psam from the Zarr stores, chunk by chunk.

    A call with a missing allele is missing (plink2 reads a VCF's half call so with
    ``--vcf-half-call m``, as zarrgeno's QC does); each variant has REF and its listed ALT
    alleles; the site filter becomes the FILTER column (PASS or LowQual) for --var-filter.
    """
    import pgenlib
    import zarr

    genotypes = zarr.open_group(str(paths.store), mode="r")
    sites = zarr.open_group(str(paths.sites), mode="r")
    filters = zarr.open_group(str(paths.filters), mode="r")
    contigs = [c for c in CONTIGS if c in genotypes]
    n_variants = sum(genotypes[f"{c}/calldata/GT"].shape[0] for c in contigs)
    samples = [_text(s) for s in genotypes["samples"][:]]
    max_alleles = 1 + max(sites[f"{c}/variants/ALT"].shape[1] for c in contigs)
    paths.pfile.parent.mkdir(parents=True, exist_ok=True)
    pgen = str(paths.pfile) + ".pgen"
    with (
        pgenlib.PgenWriter(
            pgen.encode(), len(samples), variant_ct=n_variants, nonref_flags=False,
            allele_ct_limit=max_alleles,
        ) as writer,
        open(str(paths.pfile) + ".pvar", "w") as pvar,
    ):  # fmt: skip
        pvar.write("#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\n")
        for contig in contigs:
            gt = genotypes[f"{contig}/calldata/GT"]
            variants = sites[f"{contig}/variants"]
            passing = filters[f"{contig}/variants/filter_pass"]
            for r0 in range(0, gt.shape[0], gt.chunks[0]):
                r1 = min(r0 + gt.chunks[0], gt.shape[0])
                calls, alt = gt[r0:r1], variants["ALT"][r0:r1]
                n_alleles = (1 + (alt != b"").sum(axis=1)).astype(np.uint32)
                for b0 in range(0, len(calls), BATCH):
                    block = calls[b0 : b0 + BATCH]
                    alleles = block.astype(np.int32)
                    alleles[(block < 0).any(axis=2)] = -9
                    writer.append_alleles_batch(
                        alleles.reshape(len(block), -1), allele_cts=n_alleles[b0 : b0 + BATCH]
                    )
                pvar.write(
                    _pvar_lines(
                        contig, variants["POS"][r0:r1], variants["REF"][r0:r1], alt,
                        passing[r0:r1],
                    )
                )  # fmt: skip
    Path(str(paths.pfile) + ".psam").write_text("#IID\n" + "".join(f"{s}\n" for s in samples))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _pvar_lines(
    contig: str, pos: np.ndarray, ref: np.ndarray, alt: np.ndarray, passing: np.ndarray
) -> str:
    alts = [b",".join(a for a in row if a).decode() or "." for row in alt.tolist()]
    return "".join(
        f"{contig}\t{p}\t.\t{r.decode()}\t{a}\t.\t{'PASS' if ok else 'LowQual'}\n"
        for p, r, a, ok in zip(pos.tolist(), ref.tolist(), alts, passing.tolist(), strict=True)
    )


def ensure_converted(paths: Paths) -> dict[str, Any]:
    """The plink2 fileset, written now (timed, in a fresh process) or by an earlier run."""
    if paths.conversion.exists():
        done = dict(json.loads(paths.conversion.read_text()))
        done["when"] = "an earlier run"
        return done
    shutil.rmtree(paths.pfile.parent, ignore_errors=True)
    r = run_command([sys.executable, __file__, "--convert", str(paths.where)])
    files = [Path(str(paths.pfile) + s) for s in (".pgen", ".pvar", ".psam")]
    done = {"wall": r["wall"], "cpu": r["cpu"], "peak_rss": r["peak_rss"],
            "bytes": {f.name: f.stat().st_size for f in files}}  # fmt: skip
    paths.conversion.write_text(json.dumps(done))
    return {**done, "when": "this run"}


def commands(paths: Paths) -> list[tuple[str, list[str]]]:
    """(label, command) of every row, counts first; outputs go to ``paths.out``:
    ``zarrgeno/all.*``, ``zarrgeno/filtered.*`` and the same names under ``plink2/``."""
    ours, theirs = paths.out / "zarrgeno", paths.out / "plink2"
    store = [ZARRGENO, "stats", str(paths.store)]
    filtered = ["--site-filters", str(paths.filters), "--sample-metadata", str(paths.meta),
                "--cohort-by", "country"]  # fmt: skip
    files = ["--sites", str(paths.sites), "--format", "plink2", "--output"]
    plink2 = ["plink2", "--pfile", str(paths.pfile), "--allow-extra-chr", "--threads", "2",
              "--silent"]  # fmt: skip
    both = [*plink2, "--var-filter", *PLINK2_STATS, "--out", str(theirs / "filtered")]
    loop = [*plink2, "--var-filter", "--freq", "--pheno", str(paths.pheno),
            "--loop-cats", "country", "--out", str(theirs / "filtered")]  # fmt: skip
    return [
        ("counts", [*store, "--json"]),
        ("qc", [*store, "--qc", "--json"]),
        (f"qc + filter + {COHORTS} cohorts", [*store, "--qc", "--json", *filtered]),
        ("qc --format plink2", [*store, *files, str(ours / "all")]),
        (
            f"qc --format plink2 + filter + {COHORTS} cohorts",
            [*store, *filtered, *files, str(ours / "filtered")],
        ),
        ("plink2", [*plink2, *PLINK2_STATS, "--out", str(theirs / "all")]),
        (f"plink2 + filter + {COHORTS} cohorts", ["sh", "-c", f"{_sh(both)} && {_sh(loop)}"]),
    ]


#: The command line interface with every chunk decoded whole (see --whole-chunks).
WHOLE_CHUNKS = (
    "import sys; import zarrgeno.stats.reader as r; r.BLOCKWISE = False; "
    "from zarrgeno.cli import main; sys.argv[0] = 'zarrgeno'; sys.exit(main())"
)


def whole_chunk_rows(paths: Paths) -> list[tuple[str, list[str]]]:
    """The QC rows that write no files, with every chunk decoded whole."""
    return [
        (f"{label} (whole chunks)", [sys.executable, "-c", WHOLE_CHUNKS, *cmd[1:]])
        for label, cmd in commands(paths)[1:3]
    ]


def _sh(cmd: list[str]) -> str:
    return " ".join(shlex.quote(c) for c in cmd)


def _fresh_output(paths: Paths) -> None:
    shutil.rmtree(paths.out, ignore_errors=True)
    for sub in ("zarrgeno", "plink2"):
        (paths.out / sub).mkdir(parents=True)


def check(paths: Paths) -> list[str]:
    """Run each file-writing row once and compare zarrgeno's files with plink2's, byte for
    byte; the problems found (none: every file equal)."""
    _fresh_output(paths)
    for label, cmd in commands(paths)[3:]:
        print(f"  {label}", flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    ours = sorted(p.name for p in (paths.out / "zarrgeno").iterdir())
    expected = [f"{name}{s}" for name in ("all", "filtered") for s in REPORTS]
    expected += [f"filtered.country{c}.afreq" for c in range(COHORTS)]
    problems = (
        [f"zarrgeno wrote {ours}, expected {sorted(expected)}"] if sorted(expected) != ours else []
    )
    for name in expected:
        a, b = paths.out / "zarrgeno" / name, paths.out / "plink2" / name
        if not b.exists():
            problems.append(f"plink2 wrote no {name}")
        elif not a.exists() or not filecmp.cmp(a, b, shallow=False):
            problems.append(f"{name} differs from plink2's")
        else:
            print(f"  {name}: {a.stat().st_size:,} bytes, equal to plink2's", flush=True)
    shutil.rmtree(paths.out)
    return problems


def bench(paths: Paths, repeat: int, files: bool, whole: bool = False) -> dict[str, dict[str, Any]]:
    """Every row ``repeat`` times, round after round, the genotype and filter stores read
    into the page cache before each run (this machine's kernel may drop idle cached
    pages); the median run of each row, and the median over rounds of each row's wall
    and CPU time over the counts row's of the same round (``paired``, ``paired_cpu``),
    which a slower or faster stretch of a shared machine moves less.
    ``files=False``: only the rows that write no files (the first three); ``whole``: and
    those of :func:`whole_chunk_rows`."""
    rows = commands(paths) if files else commands(paths)[:3]
    if whole:
        rows += whole_chunk_rows(paths)
    runs: dict[str, list[dict[str, Any]]] = {label: [] for label, _ in rows}
    for _ in range(repeat):
        for label, cmd in rows:
            _fresh_output(paths)
            warm_page_cache(paths.store)
            warm_page_cache(paths.filters)
            try:
                runs[label].append(run_command(cmd, stderr=subprocess.DEVNULL))
            finally:
                shutil.rmtree(paths.out, ignore_errors=True)
    medians = {label: _median(label, done) for label, done in runs.items()}
    counts = runs["counts"]
    for label, done in runs.items():
        medians[label]["cpu"] = float(np.median([r["cpu"] for r in done]))
        for key, name in (("wall", "paired"), ("cpu", "paired_cpu")):
            ratios = [r[key] / c[key] for r, c in zip(done, counts, strict=True)]
            medians[label][name] = float(np.median(ratios))
    return medians


def table(rows: dict[str, dict[str, Any]]) -> list[str]:
    """Markdown: wall, CPU, their ratios to the counts row (of the medians, and the median
    of each round's), peak RSS, others' load."""
    base = rows["counts"]
    lines = [
        "| command | wall (s) | x counts | x counts, by round | CPU (s) | x counts CPU "
        "| x counts CPU, by round | peak RSS (MB) | other load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, r in rows.items():
        lines.append(
            f"| {label} | {r['wall']:.2f} | {r['wall'] / base['wall']:.2f} | {r['paired']:.2f} "
            f"| {r['cpu']:.2f} | {r['cpu'] / base['cpu']:.2f} | {r['paired_cpu']:.2f} "
            f"| {r['peak_rss'] / 1e6:.0f} | {r['other_load']:.2f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=0.02, help="of the simulated store")
    parser.add_argument("--repeat", type=int, default=3, help="rounds over every row")
    parser.add_argument("--dir", help="stores and plink2 fileset (default data/bench/qc-SCALE)")
    parser.add_argument("--check", action="store_true",
                        help="instead: compare zarrgeno's plink2 files with plink2's")  # fmt: skip
    parser.add_argument(
        "--no-files",
        action="store_true",
        help="only counts, qc and qc + filter + cohorts (no plink2 files: no conversion, no "
        "plink2 rows), e.g. on the full-size store",
    )
    parser.add_argument(
        "--whole-chunks",
        action="store_true",
        help="also the qc rows with every chunk decoded whole before it is counted",
    )
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--convert", help=argparse.SUPPRESS)  # the conversion's own process
    args = parser.parse_args(argv)
    if args.convert:
        convert(Paths(Path(args.convert)))
        return 0
    if not args.no_files or args.check:
        if shutil.which("plink2") is None:
            raise SystemExit("plink2 is not on PATH (or run with --no-files)")
        if importlib.util.find_spec("pgenlib") is None:
            raise SystemExit("pgenlib is not installed: pip install -e '.[bench]'")
    paths = Paths(Path(args.dir or ROOT / "data" / "bench" / f"qc-{args.scale:g}"))
    ensure_stores(paths, args.scale)
    conversion = ensure_converted(paths) if args.check or not args.no_files else None
    if args.check:
        problems = check(paths)
        for line in problems:
            print(f"MISMATCH: {line}")
        print("every file equal to plink2's" if not problems else f"{len(problems)} mismatches")
        return 1 if problems else 0
    info = machine()
    load_before = os.getloadavg()
    print("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), flush=True)
    warm_page_cache(paths.where)
    rows = bench(paths, args.repeat, files=not args.no_files, whole=args.whole_chunks)
    load_after = os.getloadavg()
    command = (
        f"bench_qc.py --scale {args.scale:g} --repeat {args.repeat}"
        + (" --no-files" if args.no_files else "")
        + (" --whole-chunks" if args.whole_chunks else "")
    )
    out = [
        f"`{command}`: {_shape(paths)}; median of {args.repeat} rounds per row.",
        "",
        *table(rows),
        "",
    ]
    if conversion is not None:
        sizes = ", ".join(f"{name} {n / 1e6:,.0f} MB" for name, n in conversion["bytes"].items())
        out.append(
            f"Conversion to plink2's format, once ({conversion['when']}), not in the table: "
            f"{conversion['wall']:.1f} s wall, {conversion['cpu']:.1f} s CPU, peak RSS "
            f"{conversion['peak_rss'] / 1e6:.0f} MB ({sizes})."
        )
    out += [
        f"Load average (1 min) {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
        + ", ".join(f"{k} {v}" for k, v in info.items())
        + f"; {time.strftime('%Y-%m-%d', time.gmtime())}.",
    ]
    print()
    print("\n".join(out))
    if args.markdown:
        Path(args.markdown).write_text("\n".join(out) + "\n")
    return 0


def _shape(paths: Paths) -> str:
    import zarr

    group = zarr.open_group(str(paths.store), mode="r")
    arrays = [group[f"{c}/calldata/GT"] for c in CONTIGS if c in group]
    n = sum(a.shape[0] for a in arrays)
    passing = sum(
        int(zarr.open_group(str(paths.filters), mode="r")[f"{c}/variants/filter_pass"][:].sum())
        for c in CONTIGS
        if c in group
    )
    return f"{n:,} variants x {arrays[0].shape[1]} samples, {passing:,} passing the site filter"


if __name__ == "__main__":
    raise SystemExit(main())
