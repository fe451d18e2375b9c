"""Cohorts on filtered sites: a site filter and --cohort-by in one pass give each cohort's
allele counts over the passing sites only, as plink2 --var-filter --loop-cats writes them
and as scikit-allel counts the masked arrays."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from qcdata import plink2, random_rows, read_vcf, tools, write_vcf
from test_cohorts import SAMPLES, _cohort_of, _meta, _plain
from test_site_filters import _with_filters

from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.cohorts import CohortSpec

allel = pytest.importorskip("allel")
needs_tools = pytest.mark.skipif(not tools(), reason="plink2 and bcftools are not installed")


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """2L and X, 40 samples, about 60% of sites PASS; scikit-allel store with FILTER_PASS."""
    where = tmp_path_factory.mktemp("cohorts_filtered")
    rows = random_rows(["2L", "X"], 90, len(SAMPLES), seed=11)
    passing = np.random.default_rng(3).random(len(rows)) < 0.6
    vcf = _with_filters(write_vcf(where / "r.vcf", SAMPLES, rows), passing)
    store = where / "r.zarr"
    for contig in ("2L", "X"):
        allel.vcf_to_zarr(str(vcf), str(store), group=contig, region=contig, fields="*",
                          chunk_length=16, chunk_width=7)  # fmt: skip
    np.save(where / "passing.npy", passing)
    return {"vcf": vcf, "store": store, "meta": _meta(where / "meta.csv", SAMPLES)}


@needs_tools
@pytest.mark.parametrize("backend", ["sequential", "threads", "dask"])
def test_cohort_afreq_on_passing_sites_equals_plink2(
    case: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    cohort = _cohort_of(case["meta"], ("country", "year"))
    pheno = tmp_path / "pheno.txt"
    pheno.write_text("#IID\tcoh\n" + "".join(f"{s}\t{c}\n" for s, c in cohort.items()))
    plink2(case["vcf"], tmp_path / "loop", "--freq", "--pheno", str(pheno), "--loop-cats",
           "coh", "--var-filter")  # fmt: skip
    out = tmp_path / "qc" / "P"
    from test_real_stores import run

    run("stats", str(case["store"]), "--site-filter", "FILTER_PASS", "--sample-metadata",
        str(case["meta"]), "--cohort-by", "country,year", "--output", str(out), "--format",
        "plink2", "-b", backend)  # fmt: skip
    loops = sorted(tmp_path.glob("loop.*.afreq"))
    assert len(loops) == 6
    for theirs in loops:
        ours = out.with_name("P." + theirs.name.removeprefix("loop."))
        assert ours.read_text() == theirs.read_text(), ours.name


@needs_tools
def test_units_written_in_blocks_of_a_few_variants_equal_plink2(
    case: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Units of 16 variants formatted 5 at a time (the last block of a unit shorter, some
    blocks wholly filtered out): the six files and each cohort's .afreq are plink2's."""
    from zarrgeno.stats.qc import files

    monkeypatch.setattr(files, "BLOCK", 5)
    pheno = tmp_path / "pheno.txt"
    cohort = _cohort_of(case["meta"], ("country",))
    pheno.write_text("#IID\tcoh\n" + "".join(f"{s}\t{c}\n" for s, c in cohort.items()))
    plink2(case["vcf"], tmp_path / "plink", "--freq", "--geno-counts", "--hardy", "--het",
           "--missing", "--bad-freqs", "--var-filter")  # fmt: skip
    plink2(case["vcf"], tmp_path / "loop", "--freq", "--pheno", str(pheno), "--loop-cats",
           "coh", "--var-filter")  # fmt: skip
    out = tmp_path / "qc" / "P"
    from test_real_stores import run

    run("stats", str(case["store"]), "--site-filter", "FILTER_PASS", "--sample-metadata",
        str(case["meta"]), "--cohort-by", "country", "--output", str(out), "--format",
        "plink2", "-b", "threads", "--workers", "2")  # fmt: skip
    theirs = [*sorted(tmp_path.glob("loop.*.afreq")), *sorted(tmp_path.glob("plink.*"))]
    theirs = [t for t in theirs if t.suffix != ".log"]
    assert len(theirs) == 3 + 6
    for path in theirs:
        ours = out.with_name("P" + path.name[path.name.index(".") :])
        assert ours.read_text() == path.read_text(), ours.name


def test_api_cohort_counts_cover_passing_sites_only(case: dict[str, Path]) -> None:
    passing = np.load(case["store"].parent / "passing.npy")
    parsed = read_vcf(case["vcf"])
    result = genotype_stats(
        case["store"], site_filter="FILTER_PASS", cohorts=CohortSpec(case["meta"], ("country",))
    )
    assert result.qc is not None and result.qc.cohorts is not None
    cohorts = result.qc.cohorts
    of = _cohort_of(case["meta"], ("country",))
    subpops = {n: [j for j, s in enumerate(parsed.samples) if of[s] == n] for n in cohorts.names}
    offset = 0
    for contig in parsed.contigs:
        _, gt = parsed.contig(contig)
        keep = passing[offset : offset + len(gt)]
        offset += len(gt)
        g = allel.GenotypeArray(_plain(gt[keep]))
        expected = g.count_alleles_subpops(subpops, max_allele=3)
        v = cohorts.contig(contig)
        assert len(v.allele_count) == int(keep.sum())
        for c, name in enumerate(cohorts.names):
            np.testing.assert_array_equal(v.allele_count[:, c], expected[name])
    s = result.qc.samples
    n_pass = int(passing.sum())
    for c, summary in enumerate(cohorts.summaries):
        members = cohorts.cohorts.members(c)
        assert summary.n_called == len(members) * n_pass - int(s.n_missing[members].sum())
