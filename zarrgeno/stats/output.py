"""``--output``: per-variant and per-sample counts as a Zarr store or as plink-like TSV files."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import zarr

from zarrgeno.errors import UsageError
from zarrgeno.io.compression import default_compressor
from zarrgeno.io.sites import ContigPositions, find_positions
from zarrgeno.io.store import StoreRef, find_genotypes
from zarrgeno.io.writing import check_target, staged_directory
from zarrgeno.stats.kernels import HET, HOM_REF, MISSING
from zarrgeno.stats.results import SampleCounts, StatsResult

FORMATS = ("zarr", "tsv", "plink2")
#: Rows formatted at once when writing TSV (a few hundred bytes of Python strings each).
TSV_ROWS = 1 << 18
#: Chunk length of the per-variant arrays in the Zarr output.
ZARR_CHUNK = 1 << 22

VARIANT_COLUMNS = (
    "#CHROM",
    "POS",
    "VARIANT",
    "MISSING_CT",
    "HOM_REF_CT",
    "HET_CT",
    "OBS_CT",
    "F_MISS",
)
#: Positions of a contig's genotype rows ``start:stop``.
PositionReader = Callable[[int, int], np.ndarray]

SAMPLE_COLUMNS = ("#IID", "MISSING_CT", "HOM_REF_CT", "HET_CT", "OBS_CT", "F_MISS", "HET_RATE")


def output_format(path: str | os.PathLike[str], fmt: str | None) -> str:
    """``zarr`` for a ``.zarr`` path, else ``tsv``; an explicit ``fmt`` wins."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise UsageError(f"unknown output format {fmt!r}; choose {' or '.join(FORMATS)}")
        return fmt
    return "zarr" if os.fspath(path).rstrip("/").endswith(".zarr") else "tsv"


#: The command recorded in an output's mark (zarrgeno.io.mark): what ``--overwrite`` may replace.
COMMAND = "stats --output"


def check_output(
    path: str | os.PathLike[str], *, overwrite: bool, sources: tuple[StoreRef, ...] = ()
) -> Path:
    """Refuse an unsafe ``--output`` target before any computing starts: a source, inside
    one or around one, or an existing target that is not an earlier ``--output``."""
    return check_target(path, overwrite=overwrite, command=COMMAND, sources=sources)


def write_output(
    result: StatsResult,
    path: str | os.PathLike[str],
    *,
    fmt: str | None = None,
    overwrite: bool = False,
    sources: tuple[StoreRef, ...] = (),
    source_group: zarr.hierarchy.Group | None = None,
    positions: Mapping[str, ContigPositions] | None = None,
) -> Path:
    """Write ``result`` (with per-variant counts) to the directory ``path``, atomically.

    ``zarr``: one group per contig with ``variants/{n_missing,n_hom_ref,n_het}`` and
    ``samples/...`` arrays, ``samples`` names at the root, the summary in attributes; with
    QC statistics, a ``qc`` group of sgkit-named variables (``xarray.open_zarr(path,
    group="qc")`` opens it).
    ``tsv``: ``variants.tsv`` (one row per variant, plink ``.vmiss``-like columns),
    ``samples.tsv`` (one row per sample over every contig, ``.smiss``/``--het``-like) and
    ``samples_by_contig.tsv``. Positions come from ``positions`` (a plan's, by contig:
    a sites store or the genotype store's own) or, without it, from
    ``CONTIG/variants/POS`` of ``source_group`` when it has them.
    """
    fmt = output_format(path, fmt)
    if any(c.variant_counts is None for c in result.contigs):
        raise UsageError("writing per-variant counts needs a result computed with per_variant=True")
    target = check_output(path, overwrite=overwrite, sources=sources)
    source = sources[0].name if sources else None
    with staged_directory(target, overwrite=overwrite, command=COMMAND, source=source) as staging:
        if positions is None and source_group is not None:
            # the same look-up as a plan's: CONTIG/variants/POS or variant_position
            arrays = find_genotypes(source_group)
            positions = find_positions(arrays, source_group, "the genotype store")
        found = {c.contig: _reader(c.contig, positions) for c in result.contigs}
        if fmt == "zarr":
            _write_zarr(result, staging, found)
        else:
            _write_tsv(result, staging, found)
    return target


def _reader(contig: str, positions: Mapping[str, ContigPositions] | None) -> PositionReader | None:
    """How to read a contig's positions by genotype row, or None when it has none."""
    cp = (positions or {}).get(contig)
    return cp.read if cp is not None else None


def _write_zarr(
    result: StatsResult, root_dir: Path, positions: dict[str, PositionReader | None]
) -> None:
    root = zarr.open_group(str(root_dir), mode="w")
    root.attrs["zarrgeno_stats"] = {
        k: v for k, v in result.to_dict().items() if k not in ("contigs", "total")
    } | {"total": result.totals()}
    # Fixed-width text, not an object array: readers may refuse object codecs (pickle).
    root.create_dataset("samples", data=np.array(result.sample_names, dtype=str))
    compressor = default_compressor()
    for c in result.contigs:
        group = root.create_group(c.contig)
        group.attrs.update(c.summary())
        counts = c.variant_counts
        assert counts is not None
        variants = group.create_group("variants")
        for k, name in ((MISSING, "n_missing"), (HOM_REF, "n_hom_ref"), (HET, "n_het")):
            variants.create_dataset(
                name,
                data=counts[k],
                chunks=(min(ZARR_CHUNK, max(1, counts.shape[1])),),
                compressor=compressor,
            )
        read = positions.get(c.contig)
        if read is not None:
            pos = read(c.start, c.stop)
            variants.create_dataset(
                "POS",
                data=pos if c.site_pass is None else pos[c.site_pass],
                chunks=(min(ZARR_CHUNK, max(1, c.total_pos)),),
                compressor=compressor,
            )
        if c.site_pass is not None:  # the genotype row of each passing variant
            variants.create_dataset(
                "variant_index",
                data=c.variant_rows(),
                chunks=(min(ZARR_CHUNK, max(1, c.total_pos)),),
                compressor=compressor,
            )
        _zarr_samples(group.create_group("samples"), c.samples)
    _zarr_samples(root.create_group("all_samples"), result.samples)
    if result.qc is not None:
        from zarrgeno.stats.qc.dataset import write_zarr_group

        write_zarr_group(root.create_group("qc"), result.qc, positions, compressor, ZARR_CHUNK)
    zarr.consolidate_metadata(str(root_dir))


def _zarr_samples(group: zarr.hierarchy.Group, s: SampleCounts) -> None:
    group.attrs["n_variants"] = s.n_variants
    for name, data in (
        ("n_missing", s.n_missing),
        ("n_hom_ref", s.n_hom_ref),
        ("n_het", s.n_het),
        ("n_called", s.n_called),
        ("call_rate", s.call_rate),
        ("heterozygosity", s.heterozygosity),
    ):
        group.create_dataset(name, data=np.asarray(data))


def _fmt_float(values: np.ndarray) -> list[str]:
    return ["NA" if np.isnan(x) else f"{x:.6g}" for x in values.tolist()]


def _write_tsv(
    result: StatsResult, root_dir: Path, positions: dict[str, PositionReader | None]
) -> None:
    with open(root_dir / "variants.tsv", "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(VARIANT_COLUMNS) + "\n")
        for c in result.contigs:
            for text in _variant_lines(
                c.contig, c.variant_rows(), c.n_samples, c.variant_counts, positions.get(c.contig)
            ):
                out.write(text)
    with open(root_dir / "samples.tsv", "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(SAMPLE_COLUMNS) + "\n")
        _sample_lines(out, result.samples, prefix=None)
    with open(root_dir / "samples_by_contig.tsv", "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(("#CHROM", "IID", *SAMPLE_COLUMNS[1:])) + "\n")
        for c in result.contigs:
            _sample_lines(out, c.samples, prefix=c.contig)
    if result.qc is not None and result.qc.cohorts is not None:
        _write_cohorts_tsv(result.qc.cohorts, root_dir / "cohorts.tsv")


def _write_cohorts_tsv(cohorts: Any, path: Path) -> None:
    """One row per cohort: its samples, called and missing calls, het calls and rates."""
    rows = [s.to_dict() for s in cohorts.summaries]
    columns = ("cohort", "n_samples", "n_called", "n_missing", "n_het", "missing_rate",
               "heterozygosity")  # fmt: skip
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        out.write("\t".join(columns) + "\n")
        for row in rows:
            cells = [("NA" if row[c] is None else f"{row[c]:.6g}") if isinstance(row[c], float)
                     or row[c] is None else str(row[c]) for c in columns]  # fmt: skip
            out.write("\t".join(cells) + "\n")


def _variant_lines(
    contig: str,
    variant_rows: np.ndarray,
    n_samples: int,
    counts: np.ndarray | None,
    read: PositionReader | None,
) -> Iterator[str]:
    """TSV text for a contig's variants (genotype rows ``variant_rows``, ascending: those
    counted), :data:`TSV_ROWS` rows at a time.

    Counts never exceed the number of samples, so their text (and F_MISS's) comes from a
    lookup table instead of being formatted value by value.
    """
    assert counts is not None
    numbers = np.array([str(i) for i in range(n_samples + 1)], dtype=object)
    f_miss = np.array([f"{i / max(n_samples, 1):.6g}" for i in range(n_samples + 1)], dtype=object)
    for lo in range(0, len(variant_rows), TSV_ROWS):
        hi = min(len(variant_rows), lo + TSV_ROWS)
        missing, hom_ref, het = counts[:, lo:hi]
        block = variant_rows[lo:hi]
        index = block.astype(str).tolist()
        position = (
            read(int(block[0]), int(block[-1]) + 1)[block - block[0]].astype(str).tolist()
            if read is not None
            else ["NA"] * (hi - lo)
        )
        head, obs = f"{contig}\t", f"\t{n_samples}\t"
        rows = zip(
            position,
            index,
            numbers[missing].tolist(),
            numbers[hom_ref].tolist(),
            numbers[het].tolist(),
            f_miss[missing].tolist(),
            strict=True,
        )
        yield "".join(f"{head}{p}\t{i}\t{m}\t{h}\t{t}{obs}{f}\n" for p, i, m, h, t, f in rows)


def _sample_lines(out: TextIO, s: SampleCounts, *, prefix: str | None) -> None:
    f_miss = _fmt_float(1.0 - s.call_rate)
    het_rate = _fmt_float(s.heterozygosity)
    for j, name in enumerate(s.samples):
        cells = [
            name,
            str(int(s.n_missing[j])),
            str(int(s.n_hom_ref[j])),
            str(int(s.n_het[j])),
            str(s.n_variants),
            f_miss[j],
            het_rate[j],
        ]
        out.write("\t".join(([prefix] if prefix else []) + cells) + "\n")
