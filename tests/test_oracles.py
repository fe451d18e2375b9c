"""zarrgeno's counts against plink2 2.0 and bcftools on the same VCF: the tools a population
geneticist would otherwise run (Debian packages; `make test` installs them as root).

With ``--semantics sgkit`` (missing: any allele missing; het: both alleles called and
different), per-variant and per-sample counts of missing, hom-ref and het calls equal
plink2's ``--missing`` / ``--geno-counts`` with ``--vcf-half-call m`` (a half call such as
``0/.`` is missing) and bcftools' ``stats -s -`` per-sample counts (PSC lines).
"""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
from test_real_stores import run

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

SAMPLES = [f"S{i}" for i in range(1, 8)]
#: SNPs only (bcftools counts genotypes of SNPs in its per-sample table): hom-ref, het both
#: ways, phased, missing, half calls both ways, hom-alt, multi-allelic with alt/alt hets.
ROWS = [
    (100, "A", "C", ["0/0", "0/1", "1/1", "./.", "0/1", "1|0", "0/0"]),
    (200, "G", "T", ["0/0", "0/0", "0/0", "0/0", "0/1", "0/0", "0/0"]),
    (300, "C", "A", ["0|1", "1|0", "./.", "./.", "0/0", "0/.", "./1"]),
    (400, "T", "G,C", ["1/1", "1/2", "0/1", "0/0", "./.", "2/2", "0/2"]),
    (500, "A", "G,C,T", ["0/0", "2/3", "3/3", "0/3", "1/1", "./0", "1/2"]),
    (600, "G", "A", ["1/1", "1/1", "1/1", "1/1", "1/1", "1/1", "1/1"]),
    (700, "C", "T", ["./.", "./.", "./.", "./.", "./.", "./.", "0/1"]),
]

pytestmark = pytest.mark.skipif(
    not (shutil.which("plink2") and shutil.which("bcftools")),
    reason="plink2 and bcftools are not installed (Debian packages plink2, bcftools)",
)


@pytest.fixture(scope="module")
def vcf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("oracle") / "calls.vcf"
    header = [
        "##fileformat=VCFv4.2",
        "##contig=<ID=2L,length=1000>",
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT"])
        + "\t"
        + "\t".join(SAMPLES),
    ]
    lines = [
        "\t".join(["2L", str(pos), f"v{pos}", ref, alt, ".", "PASS", ".", "GT", *gts])
        for pos, ref, alt, gts in ROWS
    ]
    path.write_text("\n".join(header + lines) + "\n")
    return path


@pytest.fixture(scope="module")
def zarrgeno_counts(vcf: Path) -> tuple[np.ndarray, np.ndarray]:
    """(missing, hom-ref, het) per variant and per sample, from ``zarrgeno stats``."""
    store = vcf.parent / "calls.zarr"
    allel.vcf_to_zarr(str(vcf), str(store), group="2L", fields="*")
    out = vcf.parent / "counts"
    run("stats", str(store), "--semantics", "sgkit", "--output", str(out), "--format", "tsv")
    variants = _table(out / "variants.tsv")
    samples = _table(out / "samples.tsv")
    per_variant = np.array(
        [[int(r[k]) for k in ("MISSING_CT", "HOM_REF_CT", "HET_CT")] for r in variants]
    )
    per_sample = np.array(
        [[int(r[k]) for k in ("MISSING_CT", "HOM_REF_CT", "HET_CT")] for r in samples]
    )
    assert [r["IID"] for r in samples] == SAMPLES
    return per_variant, per_sample


def _table(path: Path) -> list[dict[str, str]]:
    header, *rows = (line.split("\t") for line in path.read_text().splitlines())
    header[0] = header[0].lstrip("#")
    return [dict(zip(header, row, strict=True)) for row in rows]


def _plink2(vcf: Path, *flags: str) -> Path:
    """Run plink2 on ``vcf`` with ``flags``, half calls read as missing; its output prefix."""
    prefix = vcf.parent / "plink"
    argv = ["plink2", "--vcf", str(vcf), *flags, "--vcf-half-call", "m", "--allow-extra-chr"]
    subprocess.run([*argv, "--out", str(prefix)], check=True, capture_output=True)
    return prefix


def test_per_variant_counts_equal_plink2(vcf: Path, zarrgeno_counts) -> None:
    prefix = _plink2(vcf, "--missing", "--geno-counts")
    vmiss = _table(prefix.with_suffix(".vmiss"))
    gcount = _table(prefix.with_suffix(".gcount"))
    want = []
    for m, g in zip(vmiss, gcount, strict=True):
        missing, called = int(m["MISSING_CT"]), int(m["OBS_CT"]) - int(m["MISSING_CT"])
        hom_ref = int(g["HOM_REF_CT"])
        # TWO_ALT_GENO_CTS lists 1/1, 1/2, 2/2, 1/3, 2/3, 3/3...: homozygous at k(k+1)/2 - 1.
        two_alt = [int(x) for x in g["TWO_ALT_GENO_CTS"].split(",")]
        n_alt = len(g["ALT"].split(","))
        hom_alt = sum(two_alt[k * (k + 1) // 2 - 1] for k in range(1, n_alt + 1))
        want.append([missing, hom_ref, called - hom_ref - hom_alt])
    assert zarrgeno_counts[0].tolist() == want


def test_per_sample_counts_equal_plink2_and_bcftools(vcf: Path, zarrgeno_counts) -> None:
    prefix = _plink2(vcf, "--missing")
    smiss = _table(prefix.with_suffix(".smiss"))
    per_sample = zarrgeno_counts[1]
    assert per_sample[:, 0].tolist() == [int(r["MISSING_CT"]) for r in smiss]
    stats = subprocess.run(
        ["bcftools", "stats", "-s", "-", str(vcf)], check=True, capture_output=True, text=True
    ).stdout
    # PSC, id, sample, nRefHom, nNonRefHom, nHets, ..., nMissing (the last column)
    psc = {f[2]: f for f in (line.split("\t") for line in stats.splitlines()) if f[0] == "PSC"}
    want = [[int(psc[s][-1]), int(psc[s][3]), int(psc[s][5])] for s in SAMPLES]
    assert per_sample.tolist() == want
