"""Cohorts: the sample metadata table, the per-cohort allele counts of the pass, and their
outputs, against plink2 2.0 (``--loop-cats`` and ``--keep``) and scikit-allel
(``count_alleles_subpops``); bad tables refused in one line, nothing written."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from hostile import assert_refused, run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from qcdata import plink2, random_store, read_vcf, tools
from test_real_stores import run

from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.cohorts import CohortSpec, assign_cohorts, cohort_name, read_table
from zarrgeno.stats.qc.cohort_counts import count_cohorts, count_cohorts_numpy

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

needs_tools = pytest.mark.skipif(
    not tools(), reason="plink2 and bcftools are not installed (Debian packages plink2, bcftools)"
)
N_SAMPLES = 40
SAMPLES = [f"AB{j:04d}-C" for j in range(N_SAMPLES)]
COUNTRIES = ("Angola", "Burkina Faso", "Mali")
YEARS = ("2009", "2012")


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """One unit per row of stored chunks: several units per contig."""
    import zarrgeno.stats.api

    monkeypatch.setattr(zarrgeno.stats.api, "UNIT_CALLS", 1)


def _meta(path: Path, samples: list[str], sep: str = ",") -> Path:
    rng = np.random.default_rng(5)
    rows = [sep.join(["sample_id", "country", "year", "note"])]
    for s in samples:
        country = COUNTRIES[int(rng.integers(3))]
        rows.append(sep.join([s, country, YEARS[int(rng.integers(2))], "x"]))
    path.write_text("\n".join(rows) + "\n")
    return path


def _cohort_of(meta: Path, by: tuple[str, ...]) -> dict[str, str]:
    lines = [line.split(",") for line in meta.read_text().splitlines()]
    at = [lines[0].index(c) for c in by]
    return {r[0]: cohort_name([r[k] for k in at]) for r in lines[1:]}


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """2L and X of 40 samples in units of 16 variants and sample chunks of 7, a CSV of
    countries and years, and plink2's --loop-cats .afreq files by country,year."""
    where = tmp_path_factory.mktemp("cohorts")
    vcf, store = random_store(where, ["2L", "X"], 70, SAMPLES, 8, length=16, width=7)
    meta = _meta(where / "samples.meta.csv", SAMPLES)
    if tools():
        cohort = _cohort_of(meta, ("country", "year"))
        pheno = where / "pheno.txt"
        pheno.write_text("#IID\tcoh\n" + "".join(f"{s}\t{c}\n" for s, c in cohort.items()))
        plink2(vcf, where / "loop", "--freq", "--pheno", str(pheno), "--loop-cats", "coh")
    return vcf, store, meta


def _plain(gt: np.ndarray) -> np.ndarray:
    """Calls as plink2 --vcf-half-call m reads them: a half call is missing."""
    return np.where((gt < 0).any(axis=2)[..., None], -1, gt)


# ---- the per-cohort counts of the pass ---------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 40),
    width=st.integers(1, 70),
    n_cohorts=st.integers(1, 11),
    dtype=st.sampled_from(["i1", "i2", "i4", "i8"]),
    rare=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_kernel_equals_numpy(rows, width, n_cohorts, dtype, rare, seed) -> None:
    """The C cohort_count (masked sums, scatter past 8 cohorts, call by call for alleles
    >= 2 and wide dtypes) equals the numpy reference, on a column window."""
    from zarrgeno.stats import _kernel

    rng = np.random.default_rng(seed)
    alleles = [-1, -2, 0, 0, 1, 1, 2, 3] if rare else [-1, 0, 0, 0, 1]
    gt = rng.choice(alleles, size=(rows, width + 3, 2)).astype(dtype)
    if not rare:  # most rows only 0/0, 0/1, 1/1 and ./.: the bit-mask path takes them
        missing = (gt < 0).any(axis=2) & (rng.random((rows, 1)) < 0.8)
        gt[missing] = -1
        gt[(gt < 0).any(axis=2) & ~missing] = 0
    codes = rng.integers(-1, n_cohorts, size=width).astype(np.int32)
    ref = count_cohorts_numpy(gt[:, 2 : width + 2], codes, n_cohorts, 4)
    simd = _kernel.simd()
    try:
        for vector in {simd, False}:
            _kernel.simd(vector)
            out = np.zeros((rows, n_cohorts, 4), dtype=np.uint16)
            count_cohorts(gt, (2, width + 2), codes, n_cohorts, out)
            np.testing.assert_array_equal(out, ref)
    finally:
        _kernel.simd(simd)


@pytest.mark.parametrize("dtype", ["i1", "i2"])
@pytest.mark.parametrize("width", [7, 50, 1100])
def test_qc_pass_counts_cohorts_in_its_blocks(dtype: str, width: int) -> None:
    """count_calls_qc's cohorts: the same counts as the reference, over several 256-row
    blocks and (1,100 columns) several column groups, on a column window."""
    from zarrgeno.stats.kernels import count_calls_qc

    rng = np.random.default_rng(width)
    gt = rng.choice([-2, -1, 0, 0, 0, 1, 1, 2], size=(600, width + 4, 2)).astype(dtype)
    gt[::2] = np.where((gt[::2] < 0).any(axis=2)[..., None], -1, np.minimum(gt[::2], 1))
    codes = rng.integers(-1, 3, size=width).astype(np.int32)
    out = np.zeros((600, 3, 4), dtype=np.uint16)
    hist = np.zeros((600, 11), dtype=np.uint16)
    count_calls_qc(gt, hist=hist, columns=(3, width + 3), cohorts=(codes, 3, out))
    np.testing.assert_array_equal(out, count_cohorts_numpy(gt[:, 3 : width + 3], codes, 3, 4))


@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing", "dask"])
def test_api_equals_scikit_allel_subpops(case: tuple[Path, Path, Path], backend: str) -> None:
    """Per-cohort AC equal scikit-allel's count_alleles_subpops, and add up to the whole
    sample set's; summaries add up the cohort's samples."""
    vcf, store, meta = case
    parsed = read_vcf(vcf)
    spec = CohortSpec(meta, ("country",))
    result = genotype_stats(store, cohorts=spec, backend=backend)
    assert result.qc is not None and result.qc.cohorts is not None
    cohorts = result.qc.cohorts
    assert cohorts.names == ("Angola", "Burkina_Faso", "Mali")
    of = _cohort_of(meta, ("country",))
    subpops = {n: [j for j, s in enumerate(parsed.samples) if of[s] == n] for n in cohorts.names}
    for contig in parsed.contigs:
        _, gt = parsed.contig(contig)
        expected = allel.GenotypeArray(_plain(gt)).count_alleles_subpops(subpops, max_allele=3)
        v = cohorts.contig(contig)
        for c, name in enumerate(cohorts.names):
            np.testing.assert_array_equal(v.allele_count[:, c], expected[name])
        whole = result.qc.contig(contig).variants
        assert whole is not None
        np.testing.assert_array_equal(v.allele_count.sum(axis=1), whole.allele_count)
    s = result.qc.samples
    for summary, c in zip(cohorts.summaries, range(3), strict=True):
        members = cohorts.cohorts.members(c)
        assert summary.n_samples == len(subpops[summary.name]) == len(members)
        assert summary.n_missing == int(s.n_missing[members].sum())
        assert summary.n_het == int(s.n_het[members].sum())


# ---- files -------------------------------------------------------------------------------


@needs_tools
@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing", "distributed"])
def test_cohort_afreq_equals_plink2_loop_cats(
    case: tuple[Path, Path, Path], tmp_path: Path, backend: str
) -> None:
    """PREFIX.COHORT.afreq byte for byte as plink2 --loop-cats writes them, and P.afreq
    unchanged."""
    vcf, store, meta = case
    out = tmp_path / "qc" / "P"
    workers = ["--workers", "2"] if backend != "sequential" else []
    run("stats", str(store), "--sample-metadata", str(meta), "--cohort-by", "country,year",
        "--output", str(out), "--format", "plink2", "-b", backend, *workers)  # fmt: skip
    loops = sorted(vcf.parent.glob("loop.*.afreq"))
    assert len(loops) == 6
    for theirs in loops:
        ours = out.with_name("P." + theirs.name.removeprefix("loop."))
        assert ours.read_text() == theirs.read_text(), ours.name
    whole = plink2(vcf, tmp_path / "whole", "--freq")
    assert out.with_name("P.afreq").read_text() == whole.with_suffix(".afreq").read_text()


@needs_tools
def test_cohort_afreq_equals_plink2_keep_with_a_selection(
    case: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """With --samples (out of order) and --min-cohort-size: each kept cohort's file equals
    plink2 --keep of its selected samples; a small cohort is left out, and said so."""
    vcf, store, meta = case
    chosen = SAMPLES[::-2][:25]
    of = _cohort_of(meta, ("country",))
    sizes = {n: sum(of[s] == n for s in chosen) for n in set(of.values())}
    limit = sorted(sizes.values())[1]  # the smallest cohort goes
    out = tmp_path / "P"
    result = run("stats", str(store), "--samples", ",".join(chosen), "--sample-metadata",
                 str(meta), "--cohort-by", "country", "--min-cohort-size", str(limit),
                 "--output", str(out), "--format", "plink2")  # fmt: skip
    dropped = min(sizes, key=lambda n: sizes[n])
    assert f"left out: {dropped} ({sizes[dropped]})" in result.stderr
    assert not out.with_name(f"P.{dropped}.afreq").exists()
    for name in (n for n in sizes if sizes[n] >= limit):
        keep = tmp_path / f"{name}.keep"
        keep.write_text("".join(f"{s}\n" for s in chosen if of[s] == name))
        theirs = plink2(vcf, tmp_path / f"keep-{name}", "--freq", "--keep", str(keep))
        assert (
            out.with_name(f"P.{name}.afreq").read_text() == theirs.with_suffix(".afreq").read_text()
        )


def test_zarr_output_has_sgkit_cohort_variables(
    case: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """cohort_allele_count (variants, cohorts, alleles) with a cohorts coordinate, as
    xarray opens it, equal to the API's to_xarray(); TSV and JSON get the summaries."""
    xr = pytest.importorskip("xarray")
    _, store, meta = case
    args = ["--sample-metadata", str(meta), "--cohort-by", "year"]
    run("stats", str(store), *args, "--output", str(tmp_path / "o.zarr"))
    opened = xr.open_zarr(tmp_path / "o.zarr", group="qc").load()
    assert opened["cohort_allele_count"].dims == ("variants", "cohorts", "alleles")
    assert opened["cohorts"].values.tolist() == ["2009", "2012"]
    direct = genotype_stats(store, cohorts=CohortSpec(meta, ("year",))).qc
    assert direct is not None
    ds = direct.to_xarray()
    for name in ("cohort_allele_count", "cohort_allele_frequency", "cohort_n_called",
                 "sample_cohort", "cohort_heterozygosity"):  # fmt: skip
        np.testing.assert_array_equal(opened[name].values, ds[name].values)
    assert int(opened["cohort_n_samples"].sum()) == N_SAMPLES
    run("stats", str(store), *args, "--output", str(tmp_path / "t"), "--format", "tsv")
    lines = (tmp_path / "t" / "cohorts.tsv").read_text().splitlines()
    assert lines[0].split("\t")[:3] == ["cohort", "n_samples", "n_called"]
    assert [line.split("\t")[0] for line in lines[1:]] == ["2009", "2012"]
    doc = json.loads(run("stats", str(store), *args, "--json").stdout)
    rows = doc["qc"]["cohorts"]["cohorts"]
    assert [r["cohort"] for r in rows] == ["2009", "2012"]
    assert sum(r["n_samples"] for r in rows) == N_SAMPLES


# ---- the table ---------------------------------------------------------------------------


def test_tsv_bom_and_names(tmp_path: Path) -> None:
    path = tmp_path / "m.tsv"
    path.write_bytes(b"\xef\xbb\xbfid\tcountry\tyear\nA\tBurkina Faso\t2012\nB\tMali\t2009\n")
    table = read_table(CohortSpec(path, ("country", "year"), sample_column="id"))
    assert table.samples == ("A", "B")
    cohorts = assign_cohorts(CohortSpec(path, ("country", "year"), "id"), ["B", "A", "C"], None)
    assert cohorts.names == ("Burkina_Faso_2012", "Mali_2009")
    assert cohorts.index.tolist() == [1, 0, -1]
    assert cohorts.unlisted == ("C",)
    assert "1 sample(s) of the store are not in" in cohorts.notes()[0]
    assert cohort_name(["a/b", ".."]) == "a_b_.."


@pytest.mark.parametrize(
    ("content", "error", "says"),
    [
        (b"id,country\nA,x\n", UsageError, "no column 'sample_id'"),
        (b"sample_id,region\nA,x\n", UsageError, "no column 'country'"),
        (b"sample_id,country\nA,x\nB,y\nA,z\n", BadDataError, "'A' is listed twice"),
        (b"sample_id,country\nA,x\nB,\n", BadDataError, "has an empty 'country'"),
        (b"sample_id,country\nA,x,1\n", BadDataError, "row 2 has 3 fields"),
        (b"sample_id,country\n,x\n", BadDataError, "empty sample_id"),
        (b"sample_id,country\n", BadDataError, "lists no sample"),
        (b"", BadDataError, "is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00", BadDataError, "NUL bytes"),
        (b"sample_id,country\nA,\xff\xfe\n", BadDataError, "not UTF-8"),
        (b"sample_id,country\nZ,x\n", BadDataError, "not in the store"),
        (b"sample_id,country\nA,a b\nB,a_b\n", BadDataError, "would both be named a_b"),
    ],
)
def test_bad_tables(tmp_path: Path, content: bytes, error: type, says: str) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(content)
    with pytest.raises(error, match=says) as raised:
        assign_cohorts(CohortSpec(path, ("country",)), ["A", "B", "C"], None)
    assert str(path) in str(raised.value)


def test_huge_fifo_and_absent_tables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zarrgeno.stats.cohorts

    big = tmp_path / "big.csv"
    big.write_text("sample_id,country\n" + "A,x\n" * 100)
    monkeypatch.setattr(zarrgeno.stats.cohorts, "MAX_TABLE_BYTES", 100)
    with pytest.raises(BadDataError, match="more than 100 bytes"):
        read_table(CohortSpec(big, ("country",)))
    fifo = tmp_path / "fifo.csv"
    os.mkfifo(fifo)
    with pytest.raises(BadDataError, match="FIFO"):
        read_table(CohortSpec(fifo, ("country",)))
    with pytest.raises(MissingInputError, match="no such file"):
        read_table(CohortSpec(tmp_path / "absent.csv", ("country",)))
    with pytest.raises(BadDataError, match="directory"):
        read_table(CohortSpec(tmp_path, ("country",)))


def test_too_few_samples_in_every_cohort(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("sample_id,country\nA,x\nB,y\n")
    with pytest.raises(UsageError, match="no cohort by country has 2 or more"):
        assign_cohorts(CohortSpec(path, ("country",), min_size=2), ["A", "B"], None)


# ---- the command line --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "options", "code", "says"),
    [
        ("sample_id,country\nAB0000-C,x\nAB0000-C,y\n", (), 4, "listed twice"),
        ("sample_id,country\nNOPE,x\n", (), 4, "not in"),
        ("sample_id,country\nAB0000-C,\n", (), 4, "empty 'country'"),
        ("id,country\nAB0000-C,x\n", (), 2, "no column 'sample_id'"),
        ("sample_id,country\nAB0000-C,x\n", ("--cohort-by", "region"), 2, "no column 'region'"),
        (None, (), 3, "no such file"),
        ("sample_id,country\nAB0000-C,x\n", ("--min-cohort-size", "5"), 2, "no cohort"),
    ],
)
def test_cli_refuses_bad_input_and_writes_nothing(
    case: tuple[Path, Path, Path],
    tmp_path: Path,
    table: str | None,
    options: tuple[str, ...],
    code: int,
    says: str,
) -> None:
    _, store, _ = case
    meta = tmp_path / "in" / "m.csv"
    meta.parent.mkdir()
    if table is not None:
        meta.write_text(table)
    by = () if "--cohort-by" in options else ("--cohort-by", "country")
    out = tmp_path / "out"
    out.mkdir()
    result = run_cli("stats", store, "--sample-metadata", meta, *by, *options,
                     "--output", out / "P", "--format", "plink2")  # fmt: skip
    assert_refused(result, code, says=(says, str(meta)) if table is not None else says)
    assert list(out.iterdir()) == []


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (("--cohort-by", "country"), "--cohort-by needs --sample-metadata"),
        (("--sample-metadata", "m.csv"), "--sample-metadata needs --cohort-by"),
        (("--min-cohort-size", "3"), "apply to --cohort-by"),
        (("--sample-metadata", "m.csv", "--cohort-by", "a,,b"), "one or more column"),
    ],
)
def test_cli_option_combinations(
    case: tuple[Path, Path, Path], options: tuple[str, ...], says: str
) -> None:
    _, store, _ = case
    assert_refused(run_cli("stats", store, *options), 2, says=says)


def test_store_samples_missing_from_the_table_are_noted(
    case: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    _, store, meta = case
    lines = meta.read_text().splitlines()
    part = tmp_path / "part.csv"
    part.write_text("\n".join(lines[:31]) + "\n")  # 30 of the 40 samples
    result = run_cli("stats", store, "--sample-metadata", part, "--cohort-by", "country",
                     "--json")  # fmt: skip
    assert result.code == 0, str(result)
    assert "10 sample(s) of the store are not in" in result.err
    doc = json.loads(result.out)
    assert doc["qc"]["cohorts"]["n_samples_unlisted"] == 10
    assert sum(r["n_samples"] for r in doc["qc"]["cohorts"]["cohorts"]) == 30


@pytest.mark.parametrize("name", ["bio2zarr_v2.vcz", "bio2zarr_v3.vcz"])
def test_vcf_zarr_stores_sample_id(name: str, tmp_path: Path) -> None:
    """VCF Zarr (bio2zarr, format 2 and 3): samples from sample_id, both
    contigs of one call_genotype, the haploid fill -2 missing, as the numpy reference."""
    from test_vcf_zarr import DATA, VCF

    meta = tmp_path / "m.tsv"
    meta.write_text("id\tpop\nS1\tA\nS2\tB\nS3\tA\nS4\tB\nS5\tA\nS6\tB\n")
    spec = CohortSpec(meta, ("pop",), sample_column="id")
    result = genotype_stats(DATA / name, cohorts=spec, backend="sequential")
    assert result.qc is not None and result.qc.cohorts is not None
    codes = np.array([0, 1, 0, 1, 0, 1])
    for contig, gt in VCF.items():
        got = result.qc.cohorts.contig(contig).allele_count
        ref = count_cohorts_numpy(gt, codes, 2, got.shape[2])
        np.testing.assert_array_equal(got, ref)


def test_a_variant_range_counts_its_rows(case: tuple[Path, Path, Path]) -> None:
    """A variant range: the per-cohort counts of the rows selected, at their place."""
    _, store, meta = case
    spec = CohortSpec(meta, ("country",))
    whole = genotype_stats(store, cohorts=spec).qc
    part = genotype_stats(store, cohorts=spec, variants=(20, 57)).qc
    assert whole is not None and part is not None
    for contig in ("2L", "X"):
        np.testing.assert_array_equal(
            part.cohorts.contig(contig).allele_count,
            whole.cohorts.contig(contig).allele_count[20:57],
        )
