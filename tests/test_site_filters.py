"""Site filters (--site-filters STORE, --site-filter ARRAY): every statistic over the sites
that pass, in the same pass, on every backend, against plink2 --var-filter / --extract,
bcftools view -f PASS and scikit-allel on the masked arrays; bad filters refused by name."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import zarr
from hostile import run_cli
from hypothesis import given, settings
from hypothesis import strategies as st
from qcdata import allel_store, plink2, random_rows, read_vcf, tools, write_vcf
from test_qc_pass import BACKENDS, FLAGS, _same_as_plink2, allel, needs_tools
from test_real_stores import run

from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.kernels import Semantics

CONTIGS = ["2L", "2R", "X"]
N_SAMPLES = 60
DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True)
def small_units(monkeypatch: pytest.MonkeyPatch) -> None:
    """One unit per row of stored chunks: several units per contig, each with its filter."""
    import zarrgeno.stats.api

    monkeypatch.setattr(zarrgeno.stats.api, "UNIT_CALLS", 1)


def _with_filters(vcf: Path, passing: np.ndarray) -> Path:
    """``vcf`` with FILTER ``PASS`` where ``passing``, else ``LowQual``."""
    lines = vcf.read_text().splitlines()
    body = [i for i, line in enumerate(lines) if not line.startswith("#")]
    assert len(body) == len(passing)
    header = [x for x in lines if x.startswith("#")]
    filt = '##FILTER=<ID=LowQual,Description="Low quality">'
    out = [*header[:-1], filt, header[-1]]
    for i, keep in zip(body, passing, strict=True):
        fields = lines[i].split("\t")
        fields[6] = "PASS" if keep else "LowQual"
        out.append("\t".join(fields))
    path = vcf.with_name(vcf.stem + ".filtered.vcf")
    path.write_text("\n".join(out) + "\n")
    return path


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """3 contigs of 130 sites, about 60% PASS; a scikit-allel store of the filtered VCF
    (``variants/FILTER_PASS``), a MalariaGEN site-filter store of the same mask, and
    plink2's reports of the VCF with --var-filter."""
    where = tmp_path_factory.mktemp("sitefilters")
    samples = [f"S{j:03d}" for j in range(N_SAMPLES)]
    rows = random_rows(CONTIGS, 130, N_SAMPLES, seed=5)
    passing = np.random.default_rng(9).random(len(rows)) < 0.6
    vcf = _with_filters(write_vcf(where / "r.vcf", samples, rows), passing)
    store = allel_store(vcf, where / "r.zarr", CONTIGS, length=32, width=17)
    filters = zarr.open_group(str(where / "filters.zarr"), mode="w")
    for k, contig in enumerate(CONTIGS):
        filters.create_dataset(
            f"{contig}/variants/filter_pass", data=passing[130 * k : 130 * (k + 1)], chunks=(50,)
        )
    zarr.consolidate_metadata(str(where / "filters.zarr"))
    np.save(where / "passing.npy", passing)
    if tools():
        plink2(vcf, where / "plink", *FLAGS, "--var-filter")
    return {"vcf": vcf, "store": store, "filters": where / "filters.zarr", "where": where}


@needs_tools
@pytest.mark.parametrize("backend", BACKENDS)
def test_filter_array_in_the_store_equals_plink2_var_filter(
    case: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    """--site-filter FILTER_PASS (scikit-allel's array): plink2's six files of the VCF
    with --var-filter, byte for byte, on every backend."""
    out = tmp_path / "P"
    workers = ["--workers", "2"] if backend != "sequential" else []
    run("stats", str(case["store"]), "--site-filter", "FILTER_PASS", "--output", str(out),
        "--format", "plink2", "-b", backend, *workers)  # fmt: skip
    _same_as_plink2(out, case["where"] / "plink")


@needs_tools
@pytest.mark.parametrize("backend", ["threads", "dask"])
def test_site_filter_store_equals_plink2_extract(
    case: dict[str, Path], tmp_path: Path, backend: str
) -> None:
    """A separate MalariaGEN-layout store (CONTIG/variants/filter_pass): plink2 --extract
    of the passing IDs gives the same files."""
    passing = np.load(case["where"] / "passing.npy")
    parsed = read_vcf(case["vcf"])
    assert parsed.labels.ids is not None
    ids = tmp_path / "pass.txt"
    ids.write_text("\n".join(np.asarray(parsed.labels.ids)[passing].tolist()) + "\n")
    plain = case["where"] / "r.vcf"
    plink = plink2(plain, tmp_path / "plink", *FLAGS, "--extract", str(ids))
    out = tmp_path / "P"
    run("stats", str(case["store"]), "--site-filters", str(case["filters"]), "--output",
        str(out), "--format", "plink2", "-b", backend)  # fmt: skip
    _same_as_plink2(out, plink)


def _masked(gt: np.ndarray) -> np.ndarray:
    """Half calls missing, as plink2 --vcf-half-call m and the QC statistics read them."""
    out = gt.copy()
    out[(out < 0).any(axis=2)] = -1
    return out


def test_api_counts_equal_scikit_allel_on_the_masked_arrays(case: dict[str, Path]) -> None:
    """Per-variant and per-sample counts, allele counts and hom-alt calls from
    genotype_stats(site_filter=...) equal scikit-allel's on the passing rows only."""
    result = genotype_stats(case["store"], site_filter="FILTER_PASS", qc=True, semantics="sgkit")
    root = zarr.open_group(str(case["store"]), mode="r")
    for contig in CONTIGS:
        keep = root[f"{contig}/variants/FILTER_PASS"][:]
        g = allel.GenotypeArray(root[f"{contig}/calldata/GT"][:][keep])
        c = result.contig(contig)
        assert (c.n_variants, c.total_pos, c.n_sites_pass) == (130, keep.sum(), keep.sum())
        assert c.variant_counts is not None
        assert np.array_equal(c.variant_counts[0], g.count_missing(axis=1))
        assert np.array_equal(c.variant_counts[2], g.count_het(axis=1))
        assert np.array_equal(c.samples.n_missing, g.count_missing(axis=0))
        assert np.array_equal(c.samples.n_hom_ref, g.count_hom_ref(axis=0))
        assert np.array_equal(c.variant_rows(), np.flatnonzero(keep))
        plain = allel.GenotypeArray(_masked(np.asarray(g)))
        qv = result.qc.contig(contig).variants  # type: ignore[union-attr]
        assert qv is not None
        assert np.array_equal(qv.allele_count, plain.count_alleles(max_allele=3))
        assert np.array_equal(qv.n_hom_alt, plain.count_hom_alt(axis=1))
    assert result.qc is not None and result.qc.samples.n_variants == sum(
        c.total_pos for c in result.contigs
    )


@needs_tools
def test_allele_counts_equal_bcftools_view_f_pass(case: dict[str, Path], tmp_path: Path) -> None:
    """AC and AN of bcftools view -f PASS | +fill-tags on the filtered VCF (half calls
    written ./. first: bcftools counts their called allele, plink2 -m does not)."""
    lines = []
    for line in case["vcf"].read_text().splitlines():
        fields = line.split("\t")
        if not line.startswith("#"):
            fields[9:] = ["./." if "." in call else call for call in fields[9:]]
        lines.append("\t".join(fields))
    vcf = tmp_path / "whole.vcf"
    vcf.write_text("\n".join(lines) + "\n")
    passed = subprocess.run(
        ["bcftools", "view", "-f", "PASS", str(vcf)], check=True, capture_output=True
    ).stdout
    tagged = subprocess.run(
        ["bcftools", "+fill-tags", "-", "--", "-t", "AN,AC"],
        input=passed, check=True, capture_output=True,
    ).stdout  # fmt: skip
    want = []
    for line in tagged.decode().splitlines():
        if line.startswith("#"):
            continue
        info = dict(kv.split("=") for kv in line.split("\t")[7].split(";") if "=" in kv)
        acs = info.get("AC", "").split(",")
        want.append([int(info["AN"]), *(int(x) for x in acs if x not in ("", "."))])
    result = genotype_stats(case["store"], site_filter="FILTER_PASS", qc=True)
    assert result.qc is not None
    got = []
    for contig in CONTIGS:
        qv = result.qc.contig(contig).variants
        assert qv is not None
        for an, ac, k in zip(qv.allele_number, qv.allele_count, qv.n_alleles, strict=True):
            got.append([int(an), *(int(x) for x in ac[1:k])])
    assert len(want) == len(got)  # ALT . : bcftools has no AC, plink2 a second allele
    assert [g[: len(w)] for w, g in zip(want, got, strict=True)] == want


def test_table_and_json_say_how_many_sites_passed(case: dict[str, Path]) -> None:
    passing = np.load(case["where"] / "passing.npy")
    store = str(case["store"])
    doc = json.loads(run("stats", store, "--site-filters", str(case["filters"]), "--json").stdout)
    assert doc["total"]["n_sites_pass"] == int(passing.sum())
    assert doc["total"]["n_variants"] == len(passing)
    assert [c["n_sites_pass"] for c in doc["contigs"]] == [
        int(passing[130 * k : 130 * (k + 1)].sum()) for k in range(3)
    ]
    text = run("stats", store, "--site-filter", "FILTER_PASS").stdout
    assert f"Site filter: {int(passing.sum()):,} of {len(passing):,} variants pass" in text


def test_tsv_and_zarr_output_list_passing_variants(case: dict[str, Path], tmp_path: Path):
    """--output lists the passing variants only, each with its genotype row and position."""
    passing = np.load(case["where"] / "passing.npy")
    store = str(case["store"])
    run("stats", store, "--site-filter", "FILTER_PASS", "--output", str(tmp_path / "t"))
    lines = (tmp_path / "t" / "variants.tsv").read_text().splitlines()[1:]
    rows = [int(line.split("\t")[2]) for line in lines if line.startswith("2R\t")]
    assert rows == np.flatnonzero(passing[130:260]).tolist()
    positions = [int(line.split("\t")[1]) for line in lines if line.startswith("2R\t")]
    assert positions == (100 + 10 * np.flatnonzero(passing[130:260])).tolist()
    zarr_out = str(tmp_path / "z.zarr")
    run("stats", store, "--site-filter", "FILTER_PASS", "--qc", "--output", zarr_out)
    out = zarr.open_group(str(tmp_path / "z.zarr"), mode="r")
    assert out["2R/variants/variant_index"][:].tolist() == rows
    assert out["2R/variants/POS"][:].tolist() == positions
    assert out["qc/variant_position"].shape == (int(passing.sum()),)


def _vcf_zarr_copy(tmp_path: Path, passing: np.ndarray) -> Path:
    """bio2zarr's store of tests/data/small.vcf with a second filter column, LowQ."""
    store = tmp_path / "f.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", store)
    root = zarr.open_group(str(store), mode="r+")
    both = np.stack([passing, ~passing], axis=1)
    root.create_dataset("variant_filter", data=both, chunks=(4, 2), overwrite=True)
    root.create_dataset("filter_id", data=np.array(["PASS", "LowQ"]), overwrite=True)
    zarr.consolidate_metadata(str(store))
    return store


@needs_tools
def test_vcf_zarr_variant_filter_pass_column_equals_plink2(tmp_path: Path) -> None:
    """VCF Zarr's variant_filter (variants, filters): the PASS column of filter_id."""
    root = zarr.open_group(str(DATA / "bio2zarr_v2.vcz"), mode="r")
    n = root["variant_filter"].shape[0]
    passing = np.arange(n) % 3 != 1
    store = _vcf_zarr_copy(tmp_path, passing)
    lines = (DATA / "small.vcf").read_text().splitlines()
    vcf = tmp_path / "2L.vcf"
    vcf.write_text("\n".join(x for x in lines if not x.startswith("X")) + "\n")
    rows = [i for i, x in enumerate(lines) if x.startswith("2L")]
    keep = _with_filters(vcf, passing[: len(rows)])
    plink = plink2(keep, tmp_path / "plink", *FLAGS, "--bad-freqs", "--var-filter")
    out = tmp_path / "P"
    run("stats", str(store), "-c", "2L", "--site-filter", "variant_filter", "--output",
        str(out), "--format", "plink2")  # fmt: skip
    _same_as_plink2(out, plink)


# Bad input: one line naming the store and the problem, the exit code, nothing written.


def _refused(args: list[str], code: int, tmp_path: Path, *words: str) -> None:
    out = tmp_path / "never"
    result = run_cli("stats", *args, "--output", str(out), "--format", "plink2")
    assert result.code == code, str(result)
    message = result.err.strip()
    assert len(message.splitlines()) == 1, message
    assert "Traceback" not in message
    for word in words:
        assert word in message, message
    assert not list(tmp_path.glob("never*"))


def _filter_store(path: Path, arrays: dict[str, np.ndarray]) -> Path:
    root = zarr.open_group(str(path), mode="w")
    for name, data in arrays.items():
        root.create_dataset(name, data=data)
    return path


def test_bad_site_filters_are_refused_by_name(case: dict[str, Path], tmp_path: Path) -> None:
    store = str(case["store"])
    ok = np.ones(130, dtype=bool)
    short = _filter_store(tmp_path / "short.zarr", {
        "2L/variants/filter_pass": ok, "2R/variants/filter_pass": ok[:129],
        "X/variants/filter_pass": ok})  # fmt: skip
    _refused([store, "--site-filters", str(short)], 4, tmp_path, "short.zarr",
             "2R/variants/filter_pass", "129")  # fmt: skip
    ints = _filter_store(tmp_path / "ints.zarr", {
        f"{c}/variants/filter_pass": ok.astype("i1") for c in CONTIGS})  # fmt: skip
    _refused([store, "--site-filters", str(ints)], 4, tmp_path, "ints.zarr", "int8", "bool")
    other = _filter_store(tmp_path / "other.zarr", {
        "3L/variants/filter_pass": ok, "2L/variants/filter_pass": ok})  # fmt: skip
    _refused([store, "--site-filters", str(other)], 3, tmp_path, "other.zarr", "contig 2R")
    _refused([store, "--site-filters", str(tmp_path / "absent.zarr")], 3, tmp_path,
             "--site-filters", "absent.zarr")  # fmt: skip
    _refused([store, "--site-filter", "NO_SUCH"], 3, tmp_path, "NO_SUCH", "contig 2L")


def test_a_vcf_zarr_filter_without_pass_is_refused(tmp_path: Path) -> None:
    root = zarr.open_group(str(DATA / "bio2zarr_v2.vcz"), mode="r")
    store = _vcf_zarr_copy(tmp_path, np.ones(root["variant_filter"].shape[0], dtype=bool))
    fixed = zarr.open_group(str(store), mode="r+")
    fixed.create_dataset("filter_id", data=np.array(["q10", "LowQ"]), overwrite=True)
    zarr.consolidate_metadata(str(store))
    _refused([str(store), "--site-filter", "variant_filter"], 3, tmp_path, "PASS", "q10")


def test_simulate_writes_a_site_filter_store_stats_reads(tmp_path: Path) -> None:
    """simulate --site-filters: CONTIG/variants/filter_pass, bool, one per variant, about
    70% passing; stats --site-filters counts those; an existing target needs --overwrite."""
    gt, filters = tmp_path / "g.zarr", tmp_path / "f.zarr"
    run("simulate", str(gt), "-c", "X", "--scale", "0.001", "--samples", "9",
        "--site-filters", str(filters))  # fmt: skip
    mask = zarr.open_group(str(filters), mode="r")["X/variants/filter_pass"]
    n = zarr.open_group(str(gt), mode="r")["X/calldata/GT"].shape[0]
    assert mask.dtype == bool and mask.shape == (n,)
    assert 0.5 < mask[:].mean() < 0.9
    doc = json.loads(run("stats", str(gt), "--site-filters", str(filters), "--json").stdout)
    assert doc["total"]["n_sites_pass"] == int(mask[:].sum())
    other = tmp_path / "g2.zarr"  # refused before any genotype is written
    result = run_cli("simulate", other, "-c", "X", "--scale", "0.001", "--site-filters", filters)
    assert result.code == 5 and "already exists" in result.err, str(result)
    assert not other.exists()


@pytest.mark.parametrize("backend", ["threads", "multiprocessing"])
def test_a_site_filter_store_over_http_equals_the_local_one(tmp_path: Path, backend: str):
    """--site-filters URL: each worker reads its units' rows of the filter over HTTP."""
    from httpserver import StoreServer

    from conftest import build_store

    root = tmp_path / "srv"
    build_store(str(root / "store.zarr"), contigs={"2L": 1000, "X": 450})
    filters = zarr.open_group(str(root / "filters.zarr"), mode="w")
    rng = np.random.default_rng(4)
    for contig, n in {"2L": 1000, "X": 450}.items():
        filters.create_dataset(f"{contig}/variants/filter_pass", data=rng.random(n) < 0.5,
                               chunks=(128,))  # fmt: skip
    zarr.consolidate_metadata(str(root / "filters.zarr"))
    store = str(root / "store.zarr")
    local = json.loads(run("stats", store, "--site-filters", str(root / "filters.zarr"),
                           "--json").stdout)  # fmt: skip
    with StoreServer(root) as server:
        url = server.url("filters.zarr")
        far = json.loads(run("stats", store, "--site-filters", url, "-b", backend,
                             "--json").stdout)  # fmt: skip
    assert far["total"] == local["total"] and far["contigs"] == local["contigs"]
    assert 0 < local["total"]["n_sites_pass"] < 1450


@needs_tools
def test_root_layout_and_a_range(case: dict[str, Path], tmp_path: Path) -> None:
    """scikit-allel without group= (one calldata/GT and variants/FILTER_PASS for every
    contig) gives plink2's --var-filter files; with --range, the rows of the range that pass."""
    store = tmp_path / "root.zarr"
    allel.vcf_to_zarr(str(case["vcf"]), str(store), fields="*", chunk_length=40, chunk_width=17)
    out = tmp_path / "P"
    run("stats", str(store), "--site-filter", "FILTER_PASS", "--output", str(out),
        "--format", "plink2")  # fmt: skip
    _same_as_plink2(out, case["where"] / "plink")
    result = genotype_stats(store, site_filter="FILTER_PASS", variants=(30, 95), semantics="sgkit")
    root = zarr.open_group(str(store), mode="r")
    passing = root["variants/FILTER_PASS"][:]
    for k, contig in enumerate(CONTIGS):
        rows = 130 * k + np.arange(30, 95)
        keep = passing[rows]
        g = allel.GenotypeArray(root["calldata/GT"][:][rows[keep]])
        c = result.contig(contig)
        assert c.total_pos == keep.sum()
        assert np.array_equal(c.samples.n_missing, g.count_missing(axis=0))
        assert np.array_equal(c.samples.n_het, g.count_het(axis=0))
        assert np.array_equal(c.variant_rows(), rows[keep])


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_unit_counts_the_passing_rows_in_place_as_if_copied(data: st.DataObject) -> None:
    """count_passing (the masked kernel, no copy) equals count_piece on the passing rows
    copied together, for a padded edge chunk and any sample selection."""
    from dataclasses import replace

    from zarrgeno.stats.reader import ChunkPiece
    from zarrgeno.stats.unit import count_passing, count_piece

    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    n, width = data.draw(st.integers(1, 400)), data.draw(st.integers(1, 60))
    c1 = data.draw(st.integers(1, width))  # a stored edge chunk is wider than its samples
    gt = rng.choice(np.array([-1, 0, 0, 0, 1, 2], dtype="i1"), size=(n, width, 2))
    keep = rng.random(n) < data.draw(st.sampled_from([0.0, 0.5, 0.9, 1.0]))
    keep[: data.draw(st.integers(0, n))] = data.draw(st.booleans())  # a long run
    sample0 = 10
    samples = data.draw(
        st.one_of(
            st.none(),
            st.lists(st.integers(0, sample0 + width + 5), unique=True, max_size=12).map(tuple),
        )
    )
    piece = ChunkPiece(1000, 1000 + n, sample0, 0, c1, gt)
    counts, where = count_passing(piece, keep, samples, Semantics.TUTORIAL)
    copied = replace(piece, stop=1000 + int(keep.sum()), data=np.ascontiguousarray(gt[keep]))
    kept, kept_where = count_piece(copied, samples, Semantics.TUTORIAL)
    variant = np.zeros_like(counts.variant)
    variant[:, keep] = kept.variant
    np.testing.assert_array_equal(counts.variant, variant)
    np.testing.assert_array_equal(counts.sample, kept.sample)
    assert counts.partial == kept.partial
    assert np.array_equal(np.arange(200)[where], np.arange(200)[kept_where])


def test_missing_bits_of_failing_rows_are_never_read(case: dict[str, Path]) -> None:
    """The missing-call bits of the rows a filter fails are left as they were (stale from
    the last unit, here all ones): plink2 --het's OBS_CT and E(HET) are the same, since no
    failing row is polymorphic."""
    from zarrgeno.stats.qc import counting

    def inbreeding() -> tuple[np.ndarray, np.ndarray]:
        result = genotype_stats(
            case["store"], site_filter="FILTER_PASS", qc=True, backend="sequential"
        )
        f = result.qc.samples.inbreeding
        assert f is not None
        return f.obs, f.expected

    clean_obs, clean_expected = inbreeding()
    arrays = getattr(counting._SCRATCH, "arrays", {})
    stale = [a for (name, _), a in arrays.items() if name.startswith("bits")]
    assert stale  # the sequential backend counts in this thread
    for a in stale:
        a.fill(0xFF)
    obs, expected = inbreeding()
    np.testing.assert_array_equal(obs, clean_obs)
    assert expected.tobytes() == clean_expected.tobytes()
