"""QC statistics from additive partials, against plink2 2.0's and bcftools' own files.

Each VCF is read into arrays, counted by the numpy reference the way the pass will count
(units of variants x sample windows, unit steps at each unit's end, units added in any
order), finished and written by ``zarrgeno.stats.qc``; plink2 (``--vcf-half-call m``: a
half call is missing) writes its reports from the same VCF, and the files must be equal
byte for byte. bcftools ``+fill-tags`` gives AN, AC, AF, MAF and HWE on the same calls
(half calls made missing first with ``+setGT``, as plink2 reads them).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from qcdata import (
    Parsed,
    Row,
    plink2,
    random_rows,
    read_vcf,
    reference_partials,
    tools,
    write_vcf,
)

from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.fields import (
    REPORTS,
    Axis,
    PartialSpec,
    Report,
    SampleInputs,
    VariantInputs,
    add_contigs,
    is_autosome,
    needs_missing_bits,
    partials_for,
)
from zarrgeno.stats.qc.genotypes import GenotypeCounts, count_genotypes
from zarrgeno.stats.qc.hwe import hardy_table

needs_tools = pytest.mark.skipif(
    not tools(), reason="plink2 and bcftools are not installed (Debian packages plink2, bcftools)"
)

SMALL_SAMPLES = [f"S{i}" for i in range(1, 8)]
#: Hand-written edge cases: missing, half calls, phased, multi-allelic with 3 ALT, alt/alt
#: hets, all missing, all hom-alt, monomorphic, ``ALT .``, listed ALT never called.
SMALL_ROWS: list[Row] = [
    ("2L", 100, "v100", "A", ["C"], ["0/0", "0/1", "1/1", "./.", "0/1", "1|0", "0/0"]),
    ("2L", 200, "v200", "G", ["T"], ["0/0", "0/0", "0/0", "0/0", "0/1", "0/0", "0/0"]),
    ("2L", 300, "v300", "C", ["A"], ["0|1", "1|0", "./.", "./.", "0/0", "0/.", "./1"]),
    ("2L", 400, "v400", "T", ["G", "C"], ["1/1", "1/2", "0/1", "0/0", "./.", "2/2", "0/2"]),
    ("2L", 500, "v500", "A", ["G", "C", "T"], ["0/0", "2/3", "3/3", "0/3", "1/1", "./0", "1/2"]),
    ("2L", 600, "v600", "G", ["A"], ["1/1"] * 7),
    ("2L", 700, "v700", "C", ["T"], ["./."] * 6 + ["0/1"]),
    ("2L", 800, "v800", "C", ["T"], ["./."] * 7),
    ("2L", 900, "v900", "C", ["T"], ["0/0"] * 7),
    ("2L", 950, "v950", "G", [], ["0/0", "0/0", "./.", "0/0", "0/0", "0/0", "0/0"]),
    ("2L", 970, "v970", "T", ["A", "C", "G"], ["0/1", "1/1", "0/0", "0/1", "./.", "0/0", "0/1"]),
    ("2L", 990, "v990", "A", ["T"], ["0/1"] * 7),
]
#: Two autosomes (Ag1000G names, plink2 --allow-extra-chr) and X; 60 samples, so plink2
#: --het accepts the frequencies without --bad-freqs.
CONTIGS = ["2L", "2R", "X"]
N_SAMPLES = 60
REPORT_FLAGS = ("--freq", "--geno-counts", "--hardy", "--het", "--missing")


def _files(parsed: Parsed, out: Path, reports: list[Report], **split: object) -> dict[str, str]:
    """Our reports for ``parsed``, one file each, contig after contig."""
    specs = partials_for(reports)
    totals = {
        c: reference_partials(parsed.contig(c)[1], parsed.contig(c)[0], specs, **split)  # type: ignore[arg-type]
        for c in parsed.contigs
    }
    texts = {}
    for report in reports:
        contigs = [c for c in parsed.contigs if is_autosome(c) or not report.autosomes_only]
        if report.axis is Axis.VARIANT:
            text = "".join(
                "".join(
                    report.text(
                        VariantInputs(totals[c], parsed.contig(c)[0], len(parsed.samples)),
                        header=i == 0,
                    )
                )
                for i, c in enumerate(contigs)
            )
        else:
            n_variants = sum(len(parsed.contig(c)[0]) for c in contigs)
            summed = add_contigs([totals[c] for c in contigs], specs)
            text = "".join(report.text(SampleInputs(summed, parsed.samples, n_variants)))
        texts[report.name] = text
    return texts


def _check_against_plink2(vcf: Path, tmp_path: Path, *extra: str, **split: object) -> None:
    parsed = read_vcf(vcf)
    prefix = plink2(vcf, tmp_path / "plink", *REPORT_FLAGS, *extra)
    midp = plink2(vcf, tmp_path / "midp", "--hardy", "midp", *extra)
    ours = _files(parsed, tmp_path, list(REPORTS.values()), **split)
    for name, report in REPORTS.items():
        path = (midp if name == "hardy-midp" else prefix).with_suffix(report.suffix)
        assert ours[name] == path.read_text(), f"{report.flag} {report.suffix} differs"


@needs_tools
def test_edge_cases_equal_plink2_byte_for_byte(tmp_path: Path) -> None:
    """Seven samples: plink2 --het needs --bad-freqs to take their frequencies."""
    vcf = write_vcf(tmp_path / "small.vcf", SMALL_SAMPLES, SMALL_ROWS)
    _check_against_plink2(vcf, tmp_path, "--bad-freqs", unit=5, windows=[3])


@needs_tools
@pytest.mark.parametrize(
    ("seed", "unit", "windows"), [(1, 37, [13, 40]), (2, 1000, []), (3, 1, [59])]
)
def test_random_contigs_equal_plink2_byte_for_byte(
    tmp_path: Path, seed: int, unit: int, windows: list[int]
) -> None:
    """2L, 2R and X, 60 samples: --hardy and --het cover the autosomes only, the other
    reports every contig; per-sample reports add the contigs' partials."""
    samples = [f"AB{j:04d}-C" for j in range(N_SAMPLES)]
    vcf = write_vcf(tmp_path / "random.vcf", samples, random_rows(CONTIGS, 150, N_SAMPLES, seed))
    _check_against_plink2(vcf, tmp_path, unit=unit, windows=windows)


def test_units_added_in_any_order_give_the_same_bits(tmp_path: Path) -> None:
    """Reals (E(HET)) add in unit order, so the arrival order of units changes nothing."""
    samples = [f"S{j}" for j in range(N_SAMPLES)]
    parsed = read_vcf(write_vcf(tmp_path / "r.vcf", samples, random_rows(["2L"], 300, 60, 5)))
    labels, gt = parsed.contig("2L")
    specs = partials_for([REPORTS["het"], REPORTS["afreq"]])
    first = reference_partials(gt, labels, specs, unit=7, windows=[20])
    n_units = -(-len(labels) // 7)
    shuffled = reference_partials(
        gt, labels, specs, unit=7, windows=[20], order=np.random.default_rng(0).permutation(n_units)
    )
    for name, array in first.items():
        assert array.tobytes() == shuffled[name].tobytes(), name


def test_unit_split_equals_one_block_and_direct_formula(tmp_path: Path) -> None:
    """F's per-unit partials (missing-call bits, unit steps) equal the definition computed
    at once over the whole contig: E(HET)_j = sum of ehet over j's called polymorphic sites."""
    samples = [f"S{j}" for j in range(N_SAMPLES)]
    parsed = read_vcf(write_vcf(tmp_path / "r.vcf", samples, random_rows(["2L"], 250, 60, 6)))
    labels, gt = parsed.contig("2L")
    specs = partials_for([REPORTS["het"]])
    split = reference_partials(gt, labels, specs, unit=11, windows=[8, 9, 33])
    whole = reference_partials(gt, labels, specs, unit=len(labels), windows=[])
    np.testing.assert_array_equal(split["sample_het_obs"], whole["sample_het_obs"])
    np.testing.assert_allclose(
        split["sample_het_expected"], whole["sample_het_expected"], rtol=1e-13
    )
    hist, _ = count_genotypes(gt, 4)
    freqs = AlleleFreqs.from_genotypes(GenotypeCounts(hist, labels.n_alleles))
    an = freqs.an
    f = freqs.counts / np.maximum(an, 1)[:, None]
    ehet = 1 - (f**2).sum(axis=1)
    poly = (an > 0) & (ehet > 1e-9)
    called = (gt >= 0).all(axis=2)
    np.testing.assert_array_equal(split["sample_het_obs"][0], (called & poly[:, None]).sum(axis=0))
    direct = (called * np.where(poly, ehet, 0)[:, None]).sum(axis=0)
    np.testing.assert_allclose(split["sample_het_expected"][0], direct, rtol=1e-12)


def _fill_tags(vcf: Path) -> list[dict[str, str]]:
    """bcftools +fill-tags INFO of each site. bcftools counts the called allele of a half
    call; plink2 with --vcf-half-call m and zarrgeno do not, so half calls are written as
    ``./.`` for it (bcftools 1.16's ``+setGT -t ./x`` misses the phased ``1|.``)."""
    lines = []
    for line in vcf.read_text().splitlines():
        fields = line.split("\t")
        if not line.startswith("#"):
            fields[9:] = ["./." if "." in call else call for call in fields[9:]]
        lines.append("\t".join(fields))
    whole = vcf.with_name("whole-calls.vcf")
    whole.write_text("\n".join(lines) + "\n")
    filled = subprocess.run(
        ["bcftools", "+fill-tags", str(whole), "--", "-t", "AN,AC,AF,MAF,HWE"],
        check=True,
        capture_output=True,
    ).stdout.decode()
    info = [line.split("\t")[7] for line in filled.splitlines() if not line.startswith("#")]
    return [dict(kv.split("=") for kv in field.split(";") if "=" in kv) for field in info]


def _floats(text: str) -> np.ndarray:
    return np.array([np.nan if v == "." else float(v) for v in text.split(",")])


@needs_tools
@pytest.mark.parametrize("seed", [11, 12])
def test_allele_counts_frequencies_maf_hwe_equal_bcftools(tmp_path: Path, seed: int) -> None:
    samples = [f"S{j}" for j in range(N_SAMPLES)]
    rows = [*SMALL_ROWS, *random_rows(["2L"], 200, N_SAMPLES, seed)]
    rows = [
        (c, 10 * i + 1, v, ref, alts, (gts * 9)[:N_SAMPLES])
        for i, (c, _, v, ref, alts, gts) in enumerate(rows)
    ]
    vcf = write_vcf(tmp_path / "calls.vcf", samples, rows)
    parsed = read_vcf(vcf)
    labels, gt = parsed.contig("2L")
    hist, _ = count_genotypes(gt, 4)
    genotypes = GenotypeCounts(hist, labels.n_alleles)
    freqs = AlleleFreqs.from_genotypes(genotypes)
    hwe = hardy_table(genotypes)
    p_by_variant = dict(zip(hwe.variant.tolist(), hwe.p.tolist(), strict=False))
    listed = (labels.alt != "").sum(axis=1)
    checked = 0
    for v, tags in enumerate(_fill_tags(vcf)):
        k = int(listed[v])
        if k == 0:  # ALT . : bcftools sets no AC/AF; plink2 and we see a second allele "."
            continue
        assert int(tags["AN"]) == freqs.an[v]
        assert [int(x) for x in tags["AC"].split(",")] == freqs.counts[v, 1 : k + 1].tolist()
        np.testing.assert_allclose(_floats(tags["AF"]), freqs.alt_freqs[v, :k], rtol=5e-6)
        np.testing.assert_allclose(_floats(tags["MAF"]), [freqs.second_freq[v]], rtol=5e-6)
        if k == 1 and freqs.an[v] > 0 and 0 < freqs.counts[v, 1] < freqs.an[v]:
            np.testing.assert_allclose(float(tags["HWE"]), p_by_variant[v], rtol=1e-5)
            checked += 1
    assert checked > 50


def test_reports_declare_what_the_pass_must_make() -> None:
    """The union of needs drives the pass: missing-call bits only for --het; the
    per-sample genotype counts always (every result carries them)."""
    names = {r: [p.name for p in partials_for([REPORTS[r]])] for r in REPORTS}
    assert names["afreq"] == names["hardy"] == ["sample_genotypes", "variant_genotypes"]
    assert names["smiss"] == ["sample_genotypes"]
    assert names["het"][-2:] == ["sample_het_obs", "sample_het_expected"]
    assert not needs_missing_bits(partials_for([REPORTS["afreq"], REPORTS["smiss"]]))
    assert needs_missing_bits(partials_for([REPORTS["het"]]))
    spec: PartialSpec = partials_for([REPORTS["gcount"]])[1]
    assert spec.zeros(5, 4, 81).shape == (5, 11) and spec.zeros(5, 4, 81).dtype == np.uint8
    assert spec.zeros(5, 4, 300).dtype == np.uint16
    with pytest.raises(TypeError, match="per variant"):
        list(REPORTS["afreq"].text(SampleInputs({}, [], 0)))
