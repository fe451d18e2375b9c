"""QC statistics from the counting pass, end to end, against plink2 2.0 and scikit-allel.

VCFs with missing calls, half calls, phased calls, multi-allelic sites (up to 3 ALT, some
listed but never called, some ``ALT .``) and monomorphic sites are converted with
scikit-allel's ``vcf_to_zarr`` in small chunks (several units per contig, several sample
chunks per unit); ``zarrgeno stats --output P --format plink2`` must write plink2's own
``--freq --geno-counts --hardy --het --missing`` files byte for byte (``--vcf-half-call m``),
on every backend; the API's results must equal scikit-allel's ``count_alleles`` and
``count_hom_alt`` (half calls made missing first, as plink2 reads them).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from qcdata import allel_store, plink2, random_store, read_vcf, tools, write_vcf
from test_qc_fields import SMALL_ROWS, SMALL_SAMPLES
from test_real_stores import run

from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.qc.fields import REPORTS

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

needs_tools = pytest.mark.skipif(
    not tools(), reason="plink2 and bcftools are not installed (Debian packages plink2, bcftools)"
)
BACKENDS = ["sequential", "threads", "multiprocessing", "dask", "distributed"]
FLAGS = ("--freq", "--geno-counts", "--hardy", "--het", "--missing")
SUFFIXES = (".afreq", ".gcount", ".hardy", ".vmiss", ".smiss", ".het")
N_SAMPLES = 60
SAMPLES = [f"AB{j:04d}-C" for j in range(N_SAMPLES)]


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """One unit per row of stored chunks (not 8 million calls): several units per contig."""
    import zarrgeno.stats.api

    monkeypatch.setattr(zarrgeno.stats.api, "UNIT_CALLS", 1)


@pytest.fixture(scope="module")
def random_case(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """2L, 2R and X of 60 samples (units of 32 variants, sample chunks of 23), and
    plink2's reports of the same VCF (P and mid-p)."""
    where = tmp_path_factory.mktemp("qcpass")
    vcf, store = random_store(where, ["2L", "2R", "X"], 130, SAMPLES, 21, length=32, width=23)
    if tools():
        plink2(vcf, where / "plink", *FLAGS)
        plink2(vcf, where / "midp", "--hardy", "midp")
    return vcf, store, where


def _same_as_plink2(out: Path, plink: Path, suffixes: tuple[str, ...] = SUFFIXES) -> None:
    for suffix in suffixes:
        ours = out.with_name(out.name + suffix).read_text()
        assert ours == plink.with_suffix(suffix).read_text(), f"{suffix} differs"


@needs_tools
@pytest.mark.parametrize("backend", BACKENDS)
def test_plink2_files_equal_plink2_on_every_backend(
    random_case: tuple[Path, Path, Path], tmp_path: Path, backend: str
) -> None:
    _, store, where = random_case
    out = tmp_path / "qc" / "P"
    workers = ["--workers", "2"] if backend != "sequential" else []
    run("stats", str(store), "--output", str(out), "--format", "plink2", "-b", backend, *workers)
    _same_as_plink2(out, where / "plink")
    assert sorted(p.name for p in out.parent.iterdir()) == sorted("P" + s for s in SUFFIXES)


@needs_tools
def test_hardy_midp_and_sgkit_semantics(random_case: tuple[Path, Path, Path], tmp_path: Path):
    """--hardy-midp writes plink2's MIDP column; the QC files do not depend on --semantics
    (they read a half call as missing, as plink2 --vcf-half-call m does)."""
    _, store, where = random_case
    out = tmp_path / "P"
    run("stats", str(store), "--output", str(out), "--format", "plink2", "--hardy-midp",
        "--semantics", "sgkit")  # fmt: skip
    _same_as_plink2(out, where / "midp", (".hardy",))
    _same_as_plink2(out, where / "plink", (".afreq", ".gcount", ".vmiss", ".smiss", ".het"))


@needs_tools
def test_edge_cases_of_seven_samples_equal_plink2(tmp_path: Path) -> None:
    """Seven samples, one contig: multi-allelic sites with 3 ALT, alt/alt hets, all missing,
    all hom-alt, monomorphic, ALT ., a listed ALT never called (plink2 --het takes such
    few samples' frequencies only with --bad-freqs)."""
    vcf = write_vcf(tmp_path / "small.vcf", SMALL_SAMPLES, SMALL_ROWS)
    store = allel_store(vcf, tmp_path / "small.zarr", ["2L"], length=5, width=3)
    plink = plink2(vcf, tmp_path / "plink", *FLAGS, "--bad-freqs")
    out = tmp_path / "qc" / "P"
    run("stats", str(store), "--output", str(out), "--format", "plink2", "-b", "sequential")
    _same_as_plink2(out, plink)


@needs_tools
def test_selected_samples_and_one_contig(random_case: tuple[Path, Path, Path], tmp_path: Path):
    """A sample subset out of order and -c 2R: plink2 --keep on the same VCF, --chr 2R."""
    vcf, store, _ = random_case
    keep = [f"AB{j:04d}-C" for j in (41, 3, 17, 18, 19, 58, 0, 33)]
    (tmp_path / "keep.txt").write_text("\n".join(keep) + "\n")
    plink = plink2(
        vcf, tmp_path / "plink", *FLAGS, "--keep", str(tmp_path / "keep.txt"), "--chr", "2R",
        "--bad-freqs",
    )  # fmt: skip
    out = tmp_path / "P"
    run("stats", str(store), "-c", "2R", "--samples", ",".join(keep), "--output", str(out),
        "--format", "plink2")  # fmt: skip
    # plink2 writes the samples in the VCF's order; zarrgeno in the order asked for
    for suffix in (".afreq", ".gcount", ".hardy", ".vmiss"):
        assert out.with_name("P" + suffix).read_text() == plink.with_suffix(suffix).read_text()
    for suffix in (".smiss", ".het"):
        ours = out.with_name("P" + suffix).read_text().splitlines()
        theirs = plink.with_suffix(suffix).read_text().splitlines()
        assert ours[0] == theirs[0]
        assert sorted(ours[1:]) == sorted(theirs[1:])


def test_only_x_writes_no_hardy_or_het(random_case: tuple[Path, Path, Path], tmp_path: Path):
    """plink2 --hardy and --het cover autosomes only: with -c X those files are left out
    and a note says so."""
    _, store, _ = random_case
    out = tmp_path / "P"
    result = run("stats", str(store), "-c", "X", "--output", str(out), "--format", "plink2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P.afreq", "P.gcount", "P.smiss",
                                                          "P.vmiss"]  # fmt: skip
    assert "covers autosomes only" in result.stderr


def _plain(gt: np.ndarray) -> np.ndarray:
    """Calls as plink2 --vcf-half-call m reads them: a half call is missing."""
    return np.where((gt < 0).any(axis=2)[..., None], -1, gt)


@pytest.mark.parametrize("backend", ["sequential", "threads", "dask"])
def test_api_equals_scikit_allel(random_case: tuple[Path, Path, Path], backend: str) -> None:
    vcf, store, _ = random_case
    parsed = read_vcf(vcf)
    result = genotype_stats(store, qc=True, backend=backend)
    assert result.qc is not None and result.qc.max_alleles == 4
    for contig in parsed.contigs:
        labels, gt = parsed.contig(contig)
        g = allel.GenotypeArray(_plain(gt))
        v = result.qc.contig(contig).variants
        assert v is not None
        np.testing.assert_array_equal(v.allele_count, g.count_alleles(max_allele=3))
        np.testing.assert_array_equal(v.n_hom_alt, g.count_hom_alt(axis=1))
        np.testing.assert_array_equal(v.n_het, g.count_het(axis=1))
        np.testing.assert_array_equal(v.n_called, g.count_called(axis=1))
        np.testing.assert_array_equal(v.n_alleles, labels.n_alleles)
    gt_all = np.concatenate([parsed.contig(c)[1] for c in parsed.contigs])
    g = allel.GenotypeArray(_plain(gt_all))
    s = result.qc.samples
    np.testing.assert_array_equal(s.n_hom_alt, g.count_hom_alt(axis=0))
    np.testing.assert_array_equal(s.n_het, g.count_het(axis=0))
    np.testing.assert_array_equal(s.n_missing, g.count_missing(axis=0))


@pytest.mark.parametrize("report", ["afreq", "gcount", "hardy", "vmiss", "smiss", "het"])
def test_each_report_alone_equals_its_part_of_all(random_case, report: str) -> None:
    """One statistic asked for alone gives what it gives among all of them."""
    _, store, _ = random_case
    alone, every = genotype_stats(store, qc=[report]).qc, genotype_stats(store, qc=True).qc
    assert alone is not None and every is not None
    np.testing.assert_array_equal(alone.samples.n_missing, every.samples.n_missing)
    for a, e in zip(alone.contigs, every.contigs, strict=True):
        if a.variants is not None:
            assert e.variants is not None
            np.testing.assert_array_equal(a.variants.allele_count, e.variants.allele_count)


@needs_tools
def test_api_inbreeding_and_hwe_equal_plink2(random_case: tuple[Path, Path, Path]) -> None:
    """F and HWE p from the Python API, against plink2's printed numbers."""
    _, store, where = random_case
    qc = genotype_stats(store, qc=True).qc
    assert qc is not None
    rows = [line.split("\t") for line in (where / "plink.het").read_text().splitlines()[1:]]
    f = qc.samples.inbreeding
    assert f is not None
    np.testing.assert_allclose(f.f, [float(r[4]) for r in rows], rtol=1e-5, atol=1e-6)
    assert f.obs.tolist() == [int(r[3]) for r in rows]
    hardy = [line.split("\t") for line in (where / "plink.hardy").read_text().splitlines()[1:]]
    v = qc.contig("2L").variants
    assert v is not None
    p = v.hwe_p()
    ids = {f"2L_{i}": i for i in range(len(p))}
    two = [r for r in hardy if r[0] == "2L" and "," not in r[3]]
    np.testing.assert_allclose([p[ids[r[1]]] for r in two], [float(r[9]) for r in two],
                               rtol=1e-5)  # fmt: skip


def test_json_has_the_qc_summary(random_case: tuple[Path, Path, Path]) -> None:
    _, store, _ = random_case
    doc = json.loads(run("stats", str(store), "--qc", "--json").stdout)
    qc = doc["qc"]
    assert qc["reports"] == [r for r in REPORTS if r != "hardy-midp"]
    assert set(qc["contigs"]) == {"2L", "2R", "X"}
    assert len(qc["samples"]) == N_SAMPLES and {"f", "o_hom", "e_hom", "n_hom_alt"} <= set(
        qc["samples"][0]
    )
    two_l = qc["contigs"]["2L"]
    assert sum(v for k, v in two_l.items() if k.startswith("n_variants")) == 130


def test_zarr_output_opens_with_xarray(random_case: tuple[Path, Path, Path], tmp_path: Path):
    """--qc with a Zarr --output adds a qc group of sgkit-named variables, each with its
    _ARRAY_DIMENSIONS: xarray.open_zarr opens it, equal to the API's to_xarray()."""
    xr = pytest.importorskip("xarray")
    _, store, _ = random_case
    out = tmp_path / "qc.zarr"
    run("stats", str(store), "--qc", "--output", str(out))
    opened = xr.open_zarr(out, group="qc").load()
    qc = genotype_stats(store, qc=True).qc
    assert qc is not None
    direct = qc.to_xarray()
    for name in ("variant_allele_count", "variant_n_called", "variant_hwe_p_value",
                 "sample_n_hom_alt", "sample_f", "variant_allele_frequency"):  # fmt: skip
        np.testing.assert_array_equal(opened[name].values, direct[name].values)
        assert opened[name].dims == direct[name].dims
    assert opened.sizes["variants"] == 390 and opened.sizes["alleles"] == 4
    assert opened["variant_position"].values[:2].tolist() == [100, 110]


def test_units_arriving_out_of_order_are_written_in_order(
    random_case: tuple[Path, Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plink2 files wait for the units before a unit that arrives early, spilling
    them to a file beyond a memory bound (here: none), and come out the same."""
    from zarrgeno.stats import api
    from zarrgeno.stats.qc import files

    _, store, _ = random_case
    reports = ("afreq", "gcount", "hardy", "vmiss", "smiss", "het")
    plan = api.plan_stats(store, qc=True)

    def run_to(prefix: Path, order: list[int]) -> dict[str, str]:
        paths = files.report_paths(prefix, reports)
        with files.open_reports(paths, plan) as sink:
            reducer = api._Reducer(plan, sink)
            from zarrgeno.stats.unit import run_unit

            parts = [run_unit(u) for u in plan.units]
            for k in order:
                reducer.add(parts[k])
            result = reducer.finish("sequential", 0.0)
            assert result.qc is not None
            # the sink writes the per-variant results: none is kept for the whole run
            assert all(c.variant_counts is None for c in result.contigs)
            assert all(c.variants is None for c in result.qc.contigs)
            sink.finish(result.qc)
        assert not list(prefix.parent.glob(".*spill*"))
        return {name: path.read_text() for name, path in paths.items()}

    n = len(plan.units)
    assert n == 15  # 5 per contig
    in_order = run_to(tmp_path / "a" / "P", list(range(n)))
    monkeypatch.setattr(files, "PENDING_BYTES", 0)
    killed = tmp_path / "b" / ".P.afreq.spill-999999999-x"  # a killed run's (no such pid)
    killed.mkdir(parents=True)
    assert run_to(tmp_path / "b" / "P", list(reversed(range(n)))) == in_order
    assert not killed.exists()


DATA = Path(__file__).parent / "data"


@needs_tools
def test_vcf_zarr_store_equals_plink2(tmp_path: Path) -> None:
    """A bio2zarr store (variant_allele, variant_id): 2L of tests/data/small.vcf, with a
    multi-allelic site, half calls and a site where every call is missing."""
    vcf = tmp_path / "2L.vcf"
    lines = (DATA / "small.vcf").read_text().splitlines()
    vcf.write_text("\n".join(line for line in lines if not line.startswith("X")) + "\n")
    plink = plink2(vcf, tmp_path / "plink", *FLAGS, "--bad-freqs")
    out = tmp_path / "P"
    run("stats", str(DATA / "bio2zarr_v2.vcz"), "-c", "2L", "--output", str(out),
        "--format", "plink2")  # fmt: skip
    _same_as_plink2(out, plink)


@needs_tools
def test_scikit_allel_root_layout_and_a_range(random_case, tmp_path: Path) -> None:
    """allel.vcf_to_zarr without group= (one calldata/GT, variants/ALT for every contig),
    and --range: the rows of the whole run's files."""
    vcf, _, where = random_case
    store = tmp_path / "root.zarr"
    allel.vcf_to_zarr(str(vcf), str(store), fields="*", chunk_length=40, chunk_width=17)
    out = tmp_path / "P"
    run("stats", str(store), "--output", str(out), "--format", "plink2")
    _same_as_plink2(out, where / "plink")
    run("stats", str(store), "--range", "30:95", "--output", str(tmp_path / "R"),
        "--format", "plink2")  # fmt: skip
    for suffix in (".afreq", ".gcount", ".vmiss"):
        whole = (where / "plink").with_suffix(suffix).read_text().splitlines()
        rows = [whole[1 + 130 * c + r] for c in range(3) for r in range(30, 95)]
        assert (tmp_path / f"R{suffix}").read_text().splitlines() == [whole[0], *rows]


def test_the_table_gets_one_qc_line(random_case: tuple[Path, Path, Path]) -> None:
    _, store, _ = random_case
    doc = json.loads(run("stats", str(store), "--qc", "--json").stdout)["qc"]
    hom_alt = sum(s["n_hom_alt"] for s in doc["samples"])
    out = run("stats", str(store), "--qc").stdout
    line = next(x for x in out.splitlines() if x.startswith("QC: "))
    assert line.startswith(f"QC: {hom_alt:,} hom-alt calls")
    assert "F (autosomes) median" in line
