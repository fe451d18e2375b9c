"""Positions and regions: the MalariaGEN release layout, ``--sites`` and ``--region``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_stats_reference import naive_counts
from typer.testing import CliRunner

import zarrgeno
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, MissingInputError, UsageError
from zarrgeno.io.sites import ContigPositions, Region, parse_region, parse_regions
from zarrgeno.stats.api import genotype_stats, plan_stats

runner = CliRunner()

CONTIGS = {"2L": 900, "X": 300}
N_SAMPLES = 5
POS_CHUNK = 64  # not the genotype chunk length: the search works on the positions' own chunks


def release(
    root: zarr.hierarchy.Group, sites: zarr.hierarchy.Group, seed: int = 0
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """A MalariaGEN release: genotypes (root ``samples`` |S24, ``CONTIG/calldata/GT``) in
    ``root``, and in ``sites`` ``CONTIG/variants/POS`` int32, ``REF`` and ``ALT`` |S1."""
    rng = np.random.default_rng(seed)
    names = [f"AB{i + 1:04d}-C".encode() for i in range(N_SAMPLES)]
    root.create_dataset("samples", data=np.array(names, dtype="|S24"))
    gts, positions = {}, {}
    for contig, n in CONTIGS.items():
        gt = rng.choice(np.array([0, 1, -1], dtype="i1"), p=[0.8, 0.15, 0.05], size=(n, 5, 2))
        root.create_dataset(f"{contig}/calldata/GT", data=gt, chunks=(100, 3, 2))
        # Steps of 0 make ties (split multi-allelic sites share a position).
        pos = (1000 + np.cumsum(rng.integers(0, 40, n))).astype("i4")
        sites.create_dataset(f"{contig}/variants/POS", data=pos, chunks=(POS_CHUNK,))
        sites.create_dataset(
            f"{contig}/variants/REF", data=rng.choice(list(b"ACGT"), n).astype("u1").view("S1")
        )
        alt = rng.choice(list(b"ACGT"), (n, 3)).astype("u1").view("S1")
        sites.create_dataset(f"{contig}/variants/ALT", data=alt, chunks=(POS_CHUNK, 3))
        gts[contig], positions[contig] = gt, pos
    zarr.consolidate_metadata(root.store)
    zarr.consolidate_metadata(sites.store)
    return gts, positions


@pytest.fixture
def in_memory() -> tuple[zarr.hierarchy.Group, zarr.hierarchy.Group, dict, dict]:
    root, sites = zarr.group(), zarr.group()
    gts, positions = release(root, sites)
    return zarr.open_consolidated(root.store), zarr.open_consolidated(sites.store), gts, positions


@pytest.fixture
def on_disk(tmp_path: Path) -> tuple[Path, Path, dict, dict]:
    gt_path, sites_path = tmp_path / "ag3.zarr", tmp_path / "sites.zarr"
    root = zarr.open_group(zarr.DirectoryStore(str(gt_path)), mode="w")
    sites = zarr.open_group(zarr.DirectoryStore(str(sites_path)), mode="w")
    gts, positions = release(root, sites)
    return gt_path, sites_path, gts, positions


def brute_force(pos: np.ndarray, start: int, end: int) -> tuple[int, int]:
    """The rows with ``start <= POS <= end`` by a full scan, as a (lo, hi) range."""
    rows = np.flatnonzero((pos >= start) & (pos <= end))
    if rows.size == 0:
        return -1, -1
    assert np.array_equal(rows, np.arange(rows[0], rows[-1] + 1))  # sorted: contiguous
    return int(rows[0]), int(rows[-1]) + 1


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


# --- parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2L", Region("2L")),
        ("2L:20,000,000-21,000,000", Region("2L", 20_000_000, 21_000_000)),
        ("2L:20_000_000-21_000_000", Region("2L", 20_000_000, 21_000_000)),
        ("X:1-1", Region("X", 1, 1)),
        (" 3R:5 - 10 ", Region("3R", 5, 10)),
        ("3R :5-10", Region("3R", 5, 10)),
        ("chrUn:KI270742.1:1-10", Region("chrUn:KI270742.1", 1, 10)),
    ],
)
def test_parse_region(text: str, expected: Region) -> None:
    assert parse_region(text) == expected


def test_a_known_contig_with_a_colon_is_a_whole_contig() -> None:
    assert parse_region("HLA:1-2", ["HLA:1-2"]) == Region("HLA:1-2")
    assert str(Region("2L", 1, 2_000_000)) == "2L:1-2,000,000"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("2L:5-1", "START 5 is after END 1"),
        ("2L:0-10", "positions start at 1"),
        ("2L:100", "is not CONTIG or CONTIG:START-END"),
        ("2L:a-b", "is not CONTIG or CONTIG:START-END"),
        ("2L:1-2-3", "is not CONTIG or CONTIG:START-END"),
        (":1-10", "is not CONTIG or CONTIG:START-END"),
        ("2L:-5-10", "is not CONTIG or CONTIG:START-END"),
        ("", "is empty"),
    ],
)
def test_bad_regions_are_usage_errors(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse_region(text)


def test_one_region_per_contig() -> None:
    assert parse_regions(["2L:1-10", "X"]) == (Region("2L", 1, 10), Region("X"))
    with pytest.raises(UsageError, match="contig 2L is in two regions"):
        parse_regions(["2L:1-10", "2L:20-30"])
    with pytest.raises(UsageError, match="START 9 is after END 2"):
        parse_regions([Region("2L", 9, 2)])


# --- locating ------------------------------------------------------------------------


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=st.integers(1, 40_000), length=st.integers(0, 20_000))
def test_region_rows_match_a_brute_force_scan(in_memory, start: int, length: int) -> None:
    _, sites, _, positions = in_memory
    pos = positions["2L"]
    cp = ContigPositions("sites", "2L/variants/POS", 0, sites["2L/variants/POS"])
    lo, hi = cp.locate(0, len(pos), Region("2L", start, start + length))
    want = brute_force(pos, start, start + length)
    if want == (-1, -1):
        assert lo == hi  # an empty selection, wherever it sits
    else:
        assert (lo, hi) == want


def test_region_bounds_beyond_int32_select_to_the_end(in_memory) -> None:
    _, sites, _, positions = in_memory
    cp = ContigPositions("sites", "2L/variants/POS", 0, sites["2L/variants/POS"])
    n = len(positions["2L"])
    assert cp.locate(0, n, Region("2L", 1, 3_000_000_000)) == (0, n)
    assert cp.locate(0, n, Region("2L", 3_000_000_000, 4_000_000_000)) == (n, n)


def test_region_counts_match_the_naive_count_of_the_same_rows(in_memory) -> None:
    root, sites, gts, positions = in_memory
    result = genotype_stats(root, regions=["2L:5,000-9,000", "X"], sites=sites)
    lo, hi = brute_force(positions["2L"], 5000, 9000)
    c = result.contig("2L")
    assert (c.start, c.stop, c.region) == (lo, hi, "2L:5,000-9,000")
    ref = naive_counts(gts["2L"][lo:hi])
    np.testing.assert_array_equal(c.variant_counts, ref.variant)
    np.testing.assert_array_equal(c.samples.counts, ref.sample)
    x = result.contig("X")
    assert (x.start, x.stop, x.region) == (0, CONTIGS["X"], None)
    assert [c.contig for c in result.contigs] == ["2L", "X"]  # the order asked for


def test_the_search_reads_only_the_chunks_around_the_bounds(in_memory) -> None:
    """A binary search: a few chunks of a long array, never all of them."""
    n, chunk = 200_000, 1_000
    sites = zarr.group()
    pos = np.arange(1, 2 * n, 2, dtype="i4")
    sites.create_dataset("2L/variants/POS", data=pos, chunks=(chunk,))
    reads: list[str] = []
    store = sites.store

    class Counting(dict):
        def __getitem__(self, key: str) -> bytes:
            reads.append(key)
            return store[key]

    array = zarr.open_array(Counting(store.items()), path="2L/variants/POS", mode="r")
    cp = ContigPositions("sites", "2L/variants/POS", 0, array)
    reads.clear()
    assert cp.locate(0, n, Region("2L", 150_001, 150_999)) == (75_000, 75_500)
    chunk_reads = [k for k in reads if not k.rsplit("/", 1)[-1].startswith(".")]
    assert 0 < len(chunk_reads) <= 2 * math.ceil(math.log2(n // chunk)) + 2


def test_positions_in_the_genotype_store_need_no_sites(in_memory) -> None:
    """scikit-allel's vcf_to_zarr writes 2L/variants/POS beside 2L/calldata/GT."""
    root, _, _, positions = in_memory
    combined = zarr.group()
    zarr.copy_all(root, combined)
    combined.create_dataset("2L/variants/POS", data=positions["2L"], chunks=(50,))
    result = genotype_stats(combined, regions="2L:2,000-4,000")
    lo, hi = brute_force(positions["2L"], 2000, 4000)
    assert (result.contig("2L").start, result.contig("2L").stop) == (lo, hi)


def test_vcf_zarr_variant_position_selects_within_the_contig() -> None:
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([0, 1, -1], dtype="i1"), size=(120, 4, 2))
    pos = np.concatenate([np.arange(10, 810, 10), np.arange(5, 205, 5)]).astype("i4")
    root = zarr.group()
    root.create_dataset("call_genotype", data=gt, chunks=(25, 4, 2))
    root.create_dataset("variant_contig", data=np.repeat([0, 1], [80, 40]).astype("i1"))
    root.create_dataset("contig_id", data=np.array(["2L", "X"], dtype="U2"))
    root.create_dataset("variant_position", data=pos, chunks=(16,))
    result = genotype_stats(root, regions=["X:50-100", "2L:95-305"])
    x, c2l = result.contig("X"), result.contig("2L")
    assert (x.start, x.stop) == (80 + 9, 80 + 20)  # X's positions 50..100 are its rows 9..19
    assert (c2l.start, c2l.stop) == (9, 30)  # 2L: positions 100..300
    np.testing.assert_array_equal(x.samples.counts, naive_counts(gt[89:100]).sample)


def test_a_malariagen_sites_store_serves_a_vcf_zarr_genotype_store() -> None:
    """Per-contig POS with a shared call_genotype: the contig's rows map to POS from 0."""
    gt = np.zeros((30, 2, 2), dtype="i1")
    root = zarr.group()
    root.create_dataset("call_genotype", data=gt, chunks=(7, 2, 2))
    root.create_dataset("variant_contig", data=np.repeat([0, 1], [20, 10]).astype("i1"))
    root.create_dataset("contig_id", data=np.array(["2L", "X"], dtype="U2"))
    sites = zarr.group()
    sites.create_dataset("2L/variants/POS", data=np.arange(1, 21, dtype="i4") * 10, chunks=(4,))
    sites.create_dataset("X/variants/POS", data=np.arange(1, 11, dtype="i4") * 10, chunks=(4,))
    plan = plan_stats(root, regions=["X:25-75", "2L:195-1000"], sites=sites)
    assert [(a.contig, a.start, a.stop) for a in plan.arrays] == [("X", 22, 27), ("2L", 19, 20)]
    np.testing.assert_array_equal(plan.positions["X"].read(22, 27), [30, 40, 50, 60, 70])


def test_a_whole_contig_region_needs_no_positions(in_memory) -> None:
    root, *_ = in_memory
    result = genotype_stats(root, regions=["X"])
    assert [c.contig for c in result.contigs] == ["X"]
    assert result.contig("X").total_pos == CONTIGS["X"]


def test_a_region_without_any_variant_is_an_empty_row(in_memory) -> None:
    root, sites, _, positions = in_memory
    beyond = int(positions["2L"][-1]) + 1
    for region in (f"2L:{beyond}-{beyond + 10_000}", "2L:1-999"):
        c = genotype_stats(root, regions=region, sites=sites).contig("2L")
        assert c.total_pos == 0 and c.n_calls == 0 and c.complete_data == 0


# --- what is refused -------------------------------------------------------------------


def test_coordinates_without_positions_say_where_to_get_them(in_memory) -> None:
    root, *_ = in_memory
    with pytest.raises(MissingInputError, match="pass --sites SITES_STORE"):
        plan_stats(root, regions="2L:1-100")


def test_an_unknown_contig_is_named(in_memory) -> None:
    root, sites, *_ = in_memory
    with pytest.raises(MissingInputError, match=r"no contig 3R in the store \(found: 2L, X\)"):
        plan_stats(root, regions="3R:1-100", sites=sites)


def test_region_excludes_contig_and_row_range(in_memory) -> None:
    root, sites, *_ = in_memory
    with pytest.raises(UsageError, match="not -c"):
        plan_stats(root, regions="2L:1-100", contigs=["X"], sites=sites)
    with pytest.raises(UsageError, match="--range by row"):
        plan_stats(root, regions="2L:1-100", variants=(0, 10), sites=sites)


@pytest.mark.hostile
def test_a_sites_store_of_the_wrong_length_names_both_stores(on_disk) -> None:
    gt_path, sites_path, _, positions = on_disk
    short = zarr.open_group(str(sites_path), mode="a")
    short.create_dataset("2L/variants/POS", data=positions["2L"][:-1], overwrite=True)
    zarr.consolidate_metadata(str(sites_path))
    with pytest.raises(BadDataError) as err:
        plan_stats(str(gt_path), sites=str(sites_path))
    assert str(err.value) == (
        f"{sites_path} (sites): 2L/variants/POS has 899 positions but {gt_path} "
        "2L/calldata/GT has 900 variants (2L)"
    )


@pytest.mark.hostile
def test_unsorted_positions_are_refused(in_memory) -> None:
    root, _, _, positions = in_memory
    pos = positions["2L"].copy()
    pos[300], pos[301] = pos[301] + 5, pos[300]  # a fall inside a chunk the search reads
    sites = zarr.group()
    sites.create_dataset("2L/variants/POS", data=pos, chunks=(POS_CHUNK,))
    region = f"2L:{pos[290]}-{pos[310]}"
    with pytest.raises(BadDataError, match=r"is not sorted: position .* at row 301"):
        plan_stats(root, regions=region, sites=sites)
    backwards = zarr.group()
    backwards.create_dataset("2L/variants/POS", data=positions["2L"][::-1].copy(), chunks=(64,))
    with pytest.raises(BadDataError, match="must ascend within a contig"):
        plan_stats(root, regions="2L:2,000-3,000", sites=backwards)


@pytest.mark.hostile
def test_positions_that_are_not_integers_or_are_missing_are_refused(in_memory) -> None:
    root, _, _, positions = in_memory
    floats = zarr.group()
    floats.create_dataset("2L/variants/POS", data=positions["2L"].astype("f8"))
    with pytest.raises(BadDataError, match="must be a 1-D integer array of positions"):
        plan_stats(root, regions="2L:1-100", sites=floats)
    holes = zarr.group()
    holes.create_dataset("2L/variants/POS", data=positions["2L"], chunks=(POS_CHUNK,))
    del holes.store["2L/variants/POS/3"]
    with pytest.raises(BadDataError, match="chunk 2L/variants/POS/3 of the positions is missing"):
        plan_stats(root, regions="2L:1-40,000", sites=holes)
    with pytest.raises(MissingInputError, match="has no positions for contig X"):
        plan_stats(root, regions="X", sites=holes)


@pytest.mark.hostile
def test_a_hostile_sites_store_goes_through_validation(on_disk) -> None:
    gt_path, sites_path, *_ = on_disk
    meta = sites_path / "2L" / "variants" / "POS" / ".zarray"
    spec = json.loads(meta.read_text())
    spec["compressor"] = {"id": "pickle"}
    meta.write_text(json.dumps(spec))
    (sites_path / ".zmetadata").unlink()
    code, _, err = run("stats", str(gt_path), "--sites", str(sites_path), "--region", "2L")
    assert code == 4 and "2L/variants/POS: compressor 'pickle'" in err and "Traceback" not in err
    code, _, err = run("stats", str(gt_path), "--sites", str(sites_path), "--region", "X")
    assert code == 0, err  # X needs no 2L positions


# --- command line and output -------------------------------------------------------------


def test_cli_region_table_json_tsv_and_zarr_carry_positions(on_disk, tmp_path: Path) -> None:
    gt_path, sites_path, gts, positions = on_disk
    base = ("stats", str(gt_path), "-b", "sequential", "--sites", str(sites_path))
    code, out, err = run(*base, "--region", "2L:3,000-6,000", "--region", "X")
    assert code == 0, err
    lo, hi = brute_force(positions["2L"], 3000, 6000)
    row = next(line.split() for line in out.splitlines() if line.startswith("2L "))
    assert row[:3] == ["2L", "2L:3,000-6,000", f"{hi - lo:,}"]

    code, out, _ = run(*base, "--region", "2L:3,000-6,000", "--json")
    c = json.loads(out)["contigs"][0]
    assert (c["region"], c["start"], c["stop"], c["total_pos"]) == (
        "2L:3,000-6,000",
        lo,
        hi,
        hi - lo,
    )

    tsv = tmp_path / "counts"
    code, _, err = run(*base, "--region", "2L:3,000-6,000", "--region", "X", "--output", str(tsv))
    assert code == 0, err
    rows = [line.split("\t") for line in (tsv / "variants.tsv").read_text().splitlines()[1:]]
    assert len(rows) == hi - lo + CONTIGS["X"]
    assert [int(r[1]) for r in rows[: hi - lo]] == positions["2L"][lo:hi].tolist()
    assert [int(r[2]) for r in rows[: hi - lo]] == list(range(lo, hi))
    assert [int(r[1]) for r in rows[hi - lo :]] == positions["X"].tolist()
    ref = naive_counts(gts["2L"][lo:hi])
    assert [int(r[3]) for r in rows[: hi - lo]] == ref.variant[0].tolist()

    store = tmp_path / "counts.zarr"
    code, _, err = run(*base, "--region", "2L:3,000-6,000", "--output", str(store))
    assert code == 0, err
    out_root = zarr.open_consolidated(str(store), mode="r")
    np.testing.assert_array_equal(out_root["2L/variants/POS"][:], positions["2L"][lo:hi])
    np.testing.assert_array_equal(out_root["2L/variants/n_missing"][:], ref.variant[0])
    assert out_root["2L"].attrs["region"] == "2L:3,000-6,000"


def test_cli_sites_without_region_add_pos_to_the_output(on_disk, tmp_path: Path) -> None:
    gt_path, sites_path, _, positions = on_disk
    tsv = tmp_path / "all"
    code, _, err = run(
        "stats", str(gt_path), "-b", "sequential", "--sites", str(sites_path), "--output", str(tsv)
    )
    assert code == 0, err
    rows = [line.split("\t") for line in (tsv / "variants.tsv").read_text().splitlines()[1:]]
    assert [int(r[1]) for r in rows] == positions["2L"].tolist() + positions["X"].tolist()


def test_cli_errors_are_one_line_with_exit_codes(on_disk, tmp_path: Path) -> None:
    gt_path, sites_path, *_ = on_disk
    base = ("stats", str(gt_path), "-b", "sequential")
    cases = [
        (("--region", "2L:1-100"), 3, "pass --sites SITES_STORE"),
        (("--sites", str(sites_path), "--region", "2L:9-1"), 2, "START 9 is after END 1"),
        (("--sites", str(sites_path), "--region", "2L:1-100", "-c", "X"), 2, "not -c"),
        (("--sites", str(sites_path), "--region", "2L:1-9", "--range", "0:5"), 2, "--range"),
        (("--sites", str(tmp_path / "none.zarr"), "--region", "X"), 3, "--sites: no store at"),
        (("--sites", str(sites_path), "--output", str(sites_path)), 5, "is the source"),
    ]
    for extra, code, message in cases:
        got, _, err = run(*base, *extra)
        assert got == code, (extra, err)
        assert message in err and len(err.strip().splitlines()) == 1, (extra, err)


def test_cli_says_when_a_region_holds_no_variants(on_disk) -> None:
    gt_path, sites_path, *_ = on_disk
    code, out, err = run(
        "stats", str(gt_path), "-b", "sequential", "--sites", str(sites_path),
        "--region", "2L:1-10",
    )  # fmt: skip
    assert code == 0, err
    assert "region 2L:1-10 holds no variants" in err
    assert next(line for line in out.splitlines() if line.startswith("2L ")).split()[2] == "0"


def test_the_library_exports_regions(in_memory) -> None:
    root, sites, _, positions = in_memory
    assert zarrgeno.parse_region("2L:1-5") == zarrgeno.Region("2L", 1, 5)
    result = zarrgeno.genotype_stats(root, regions="2L:1,500-2,500", sites=sites)
    assert (result.contig("2L").start, result.contig("2L").stop) == brute_force(
        positions["2L"], 1500, 2500
    )


def test_the_cli_passes_regions_and_sites_through(on_disk, monkeypatch) -> None:
    import zarrgeno.stats.api as stats_api

    gt_path, sites_path, *_ = on_disk
    seen: dict[str, object] = {}
    real_plan = stats_api.plan_stats

    def plan(source, **kwargs):
        seen.update(kwargs)
        return real_plan(source, **kwargs)

    monkeypatch.setattr(stats_api, "plan_stats", plan)
    code, _, err = run(
        "stats", str(gt_path), "-b", "sequential", "--sites", str(sites_path),
        "--region", "2L:1-2,000", "--region", "X", "--json",
    )  # fmt: skip
    assert code == 0, err
    assert seen["regions"] == ["2L:1-2,000", "X"] and seen["sites"] == str(sites_path)
    assert seen["contigs"] is None and seen["variants"] is None


# --- simulated sites ---------------------------------------------------------------------


def test_simulate_writes_a_consolidated_sites_store_for_regions(tmp_path: Path) -> None:
    from zarrgeno.simulate.genotypes import REAL_VARIANTS

    dest, sites = tmp_path / "demo", tmp_path / "demo-sites"
    code, out, err = run(
        "simulate", str(dest), "-c", "2L", "-c", "X", "--scale", "0.0005", "--sites", str(sites),
        "--json",
    )  # fmt: skip
    assert code == 0, err
    assert json.loads(out)["sites"] == str(sites)
    root = zarr.open_consolidated(str(sites), mode="r")
    assert sorted(root) == ["2L", "X"]
    pos = root["2L/variants/POS"][:]
    n = zarr.open_group(str(dest), mode="r")["2L/calldata/GT"].shape[0]
    assert pos.dtype == np.int32 and pos.shape == (n,) and pos[0] == 1
    assert np.all(np.diff(pos) > 0) and pos[-1] <= REAL_VARIANTS["2L"]
    ref, alt = root["2L/variants/REF"][:], root["2L/variants/ALT"][:]
    assert ref.dtype == np.dtype("S1") and alt.shape == (n, 3)
    assert not np.any(alt == ref[:, None]) and set(ref.tolist()) <= {b"A", b"C", b"G", b"T"}

    code, out, err = run(
        "stats", str(dest), "-b", "sequential", "--sites", str(sites),
        "--region", "2L:20,000,000-21,000,000", "--json",
    )  # fmt: skip
    assert code == 0, err
    c = json.loads(out)["contigs"][0]
    assert (c["start"], c["stop"]) == brute_force(pos, 20_000_000, 21_000_000)
    assert c["total_pos"] > 0

    again, _, err = run("simulate", str(dest), "--overwrite", "--sites", str(dest))
    assert again == 5 and "is the source" in err
    code, _, err = run("simulate", str(tmp_path / "other"), "--sites", str(sites))
    assert code == 5 and "already exists" in err and not (tmp_path / "other").exists()


def test_simulated_positions_cover_the_real_contig_at_any_scale() -> None:
    from zarrgeno.simulate.genotypes import REAL_VARIANTS
    from zarrgeno.simulate.sites import simulated_positions

    real = REAL_VARIANTS["X"]
    assert simulated_positions("X", real, 0, 5).tolist() == [1, 2, 3, 4, 5]  # scale 1
    big = simulated_positions("X", 2 * real, 2 * real - 3, 2 * real)
    assert np.all(np.diff(big) > 0)  # above scale 1: still strictly ascending
    small = simulated_positions("X", 1000, 0, 1000)
    assert small[0] == 1 and small[-1] <= real and np.all(np.diff(small) > 0)
    assert np.array_equal(simulated_positions("X", 1000, 400, 410), small[400:410])


@pytest.mark.parametrize("module", ["zarrgeno.io.sites", "zarrgeno.simulate.sites"])
def test_docstring_examples(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0


def test_the_plot_axis_takes_positions_from_the_sites_store(on_disk, tmp_path, monkeypatch) -> None:
    import zarrgeno.stats.plot as plot_mod

    gt_path, sites_path, _, positions = on_disk
    seen = {}

    def fake_plot(result, path, *, overwrite):
        seen["windows"] = result.windows
        return Path(path)

    monkeypatch.setattr(plot_mod, "plot_stats", fake_plot)
    code, _, err = run(
        "stats", str(gt_path), "-b", "sequential", "--sites", str(sites_path),
        "--plot", str(tmp_path / "p.png"), "--window", "7",
    )  # fmt: skip
    assert code == 0, err
    table = seen["windows"]
    assert table.positions  # the windows' ends are positions of the sites store
    first, last = table.contig("2L")["start"], table.contig("2L")["end"]
    np.testing.assert_array_equal(first, positions["2L"][::7])
    np.testing.assert_array_equal(last[:-1], positions["2L"][6::7][: len(last) - 1])


@pytest.mark.hostile
@pytest.mark.parametrize("where", ["sites", "genotypes"])
def test_a_crafted_position_chunk_is_named_when_output_reads_it(
    on_disk, tmp_path: Path, where: str
) -> None:
    """POS for --output goes through the checked chunk path: a Blosc header that lies about
    its size is one line naming the chunk, never decoded by numcodecs."""
    gt_path, sites_path, _, _ = on_disk
    if where == "genotypes":  # scikit-allel's layout: POS beside calldata/GT
        src = zarr.open_group(str(sites_path), mode="r")
        dst = zarr.open_group(str(gt_path), mode="a")
        dst.create_dataset("2L/variants/POS", data=src["2L/variants/POS"][:], chunks=(POS_CHUNK,))
        zarr.consolidate_metadata(str(gt_path))
        chunk = gt_path / "2L" / "variants" / "POS" / "3"
        extra: tuple[str, ...] = ()
    else:
        chunk = sites_path / "2L" / "variants" / "POS" / "3"
        extra = ("--sites", str(sites_path))
    raw = bytearray(chunk.read_bytes())
    raw[4:8] = (2**30).to_bytes(4, "little")  # decoded size: 1 GiB, not 64 x 4 bytes
    chunk.write_bytes(bytes(raw))
    tsv = tmp_path / "counts.tsv"
    code, _, err = run("stats", str(gt_path), "-b", "sequential", *extra, "--output", str(tsv))
    assert code == 4, err
    assert err.strip().count("\n") == 0 and "Traceback" not in err
    assert "chunk 2L/variants/POS/3" in err and "Blosc header" in err
    assert not tsv.exists()
