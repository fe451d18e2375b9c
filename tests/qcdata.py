"""VCFs for the QC statistics tests: written here, read back as arrays by a few-line parser,
and counted by the straightforward numpy reference (units x sample windows), so that the
statistics can be checked against plink2's and bcftools' own files."""

from __future__ import annotations

import itertools
import shutil
import subprocess
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zarrgeno.stats.qc.fields import (
    Axis,
    MissingBits,
    PartialSpec,
    Reduction,
    Stage,
    UnitInputs,
    unit_steps,
)
from zarrgeno.stats.qc.genotypes import count_genotypes, missing_bits
from zarrgeno.stats.qc.plink2 import VariantLabels

#: A row: (contig, position, ID, REF, ALT list, one genotype text per sample).
Row = tuple[str, int, str, str, list[str], list[str]]
MAX_ALLELES = 4
BASES = "ACGT"


def write_vcf(path: Path, samples: Sequence[str], rows: Sequence[Row]) -> Path:
    contigs = dict.fromkeys(r[0] for r in rows)
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=100000>" for c in contigs),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(samples),
    ]
    lines = [
        "\t".join([c, str(pos), vid, ref, ",".join(alts) or ".", ".", "PASS", ".", "GT", *gts])
        for c, pos, vid, ref, alts, gts in rows
    ]
    path.write_text("\n".join(header + lines) + "\n")
    return path


@dataclass(frozen=True)
class Parsed:
    samples: list[str]
    chrom: np.ndarray
    labels: VariantLabels
    gt: np.ndarray

    def contig(self, name: str) -> tuple[VariantLabels, np.ndarray]:
        """The labels and calls of one contig's variants."""
        rows = np.flatnonzero(self.chrom == name)
        lab = self.labels
        assert lab.ids is not None
        return VariantLabels(name, lab.ref[rows], lab.alt[rows], lab.ids[rows]), self.gt[rows]

    @property
    def contigs(self) -> list[str]:
        return list(dict.fromkeys(self.chrom.tolist()))


def read_vcf(path: Path) -> Parsed:
    """GT calls (variants, samples, 2) int8, -1 for a missing allele; labels as text."""
    lines = [line.split("\t") for line in path.read_text().splitlines() if line[:2] != "##"]
    samples, body = lines[0][9:], lines[1:]
    gt = np.full((len(body), len(samples), 2), -1, dtype=np.int8)
    alt = np.full((len(body), MAX_ALLELES - 1), "", dtype=object)
    for i, fields in enumerate(body):
        alts = [] if fields[4] == "." else fields[4].split(",")
        alt[i, : len(alts)] = alts
        for j, call in enumerate(fields[9:]):
            gt[i, j] = [-1 if a == "." else int(a) for a in call.replace("|", "/").split("/")]
    chrom = np.array([f[0] for f in body], dtype=object)
    ids = np.array([f[2] for f in body], dtype=object)
    ref = np.array([f[3] for f in body], dtype=object)
    return Parsed(samples, chrom, VariantLabels(chrom, ref, alt, ids), gt)


def random_rows(contigs: Sequence[str], n_per_contig: int, n_samples: int, seed: int) -> list[Row]:
    """Sites of 1-3 ALT alleles (some listed but never called, some ``ALT .``), allele
    frequencies from flat to extreme, missing rates from none to all, half calls, phased
    calls, and some sites far from Hardy-Weinberg proportions (all het, no het)."""
    rng = np.random.default_rng(seed)
    rows: list[Row] = []
    for contig in contigs:
        for i in range(n_per_contig):
            n_alt = int(rng.choice([0, 1, 1, 1, 1, 2, 3]))
            ref = BASES[int(rng.integers(4))]
            alts = [b for b in BASES if b != ref][:n_alt]
            k = n_alt + 1
            freqs = rng.dirichlet(np.full(k, rng.choice([0.1, 0.5, 2.0])))
            if n_alt and rng.random() < 0.15:
                freqs[-1] = 0.0  # an ALT allele listed but never called
                freqs /= freqs.sum()
            calls = rng.choice(k, p=freqs, size=(n_samples, 2))
            shape = rng.random()
            if shape < 0.05:
                calls = np.tile([0, min(1, n_alt)], (n_samples, 1))  # every call het (or 0/0)
            elif shape < 0.10:
                calls[:, 1] = calls[:, 0]  # no het at all
            missing_rate = float(
                rng.choice([0.0, 0.02, 0.2, 0.6, 1.0], p=[0.3, 0.3, 0.25, 0.1, 0.05])
            )
            missing = rng.random(n_samples) < missing_rate
            half = rng.random(n_samples) < 0.03
            gts = []
            for j in range(n_samples):
                a, b = (str(x) for x in calls[j])
                if missing[j]:
                    a = b = "."
                elif half[j]:
                    a, b = (".", b) if rng.random() < 0.5 else (a, ".")
                gts.append(f"{a}{'|' if rng.random() < 0.2 else '/'}{b}")
            rows.append((contig, 100 + 10 * i, f"{contig}_{i}", ref, alts, gts))
    return rows


def allel_store(vcf: Path, store: Path, contigs: Sequence[str], *, length: int, width: int) -> Path:
    """``vcf`` converted with scikit-allel's ``vcf_to_zarr``, a group per contig (the
    MalariaGEN layout), in chunks of ``length`` variants x ``width`` samples."""
    with warnings.catch_warnings():  # allel imports pkg_resources-era modules
        warnings.simplefilter("ignore")
        import allel
    for contig in contigs:
        allel.vcf_to_zarr(
            str(vcf),
            str(store),
            group=contig,
            region=contig,
            fields="*",
            chunk_length=length,
            chunk_width=width,
        )
    return store


def random_store(
    where: Path,
    contigs: Sequence[str],
    n_per_contig: int,
    samples: Sequence[str],
    seed: int,
    *,
    length: int,
    width: int,
) -> tuple[Path, Path]:
    """``where/r.vcf`` of :func:`random_rows` and ``where/r.zarr``, its :func:`allel_store`."""
    rows = random_rows(contigs, n_per_contig, len(samples), seed)
    vcf = write_vcf(where / "r.vcf", samples, rows)
    return vcf, allel_store(vcf, where / "r.zarr", contigs, length=length, width=width)


def reference_partials(
    gt: np.ndarray,
    labels: VariantLabels,
    specs: Sequence[PartialSpec],
    *,
    unit: int,
    windows: Sequence[int],
    order: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One contig's reduced partials, the way the pass makes them: units of ``unit``
    variants, each counted in sample windows split at ``windows``, unit steps at each
    unit's end, units added in ``order`` (default: in turn)."""
    n, s, _ = gt.shape
    n_alleles = labels.n_alleles
    reduction = Reduction(specs, n, s, MAX_ALLELES)
    starts = list(range(0, n, unit))
    cuts = [0, *windows, s]
    for k in order if order is not None else range(len(starts)):
        r0 = starts[k]
        r1 = min(n, r0 + unit)
        parts = {
            spec.name: spec.zeros(r1 - r0 if spec.axis is Axis.VARIANT else s, MAX_ALLELES, s)
            for spec in specs
            if spec.stage is Stage.CALLS
        }
        pieces = []
        for c0, c1 in itertools.pairwise(cuts):
            block = gt[r0:r1, c0:c1]
            hist, per_sample = count_genotypes(block, MAX_ALLELES)
            parts["variant_genotypes"] += hist.astype(parts["variant_genotypes"].dtype)
            if "sample_genotypes" in parts:
                parts["sample_genotypes"][:, c0:c1] += per_sample
            pieces.append(MissingBits(slice(0, r1 - r0), slice(c0, c1), missing_bits(block)))
        for step in unit_steps(specs):
            parts |= step.run(UnitInputs(parts, n_alleles[r0:r1], s, pieces))
        reduction.add(r0, parts)
    return reduction.totals()


def tools() -> bool:
    return bool(shutil.which("plink2") and shutil.which("bcftools"))


def plink2(vcf: Path, out: Path, *flags: str) -> Path:
    """Run plink2 2.0 on ``vcf`` (half calls missing, any contig name); its output prefix."""
    argv = ["plink2", "--vcf", str(vcf), "--vcf-half-call", "m", "--allow-extra-chr"]
    subprocess.run([*argv, *flags, "--out", str(out)], check=True, capture_output=True)
    return out
