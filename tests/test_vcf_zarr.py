"""VCF Zarr as bio2zarr and sgkit write it (tests/data, made by the real tools), every command.

The expected counts come from ``tests/data/small.vcf`` itself, through a few-line VCF
parser here, not from the stores: a wrong conversion, a wrong contig range or a wrong
count of the mixed-ploidy fill -2 all show up as a difference.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from httpserver import StoreServer
from test_backends_distributed import dask_cluster
from test_stats_reference import naive_counts
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.errors import BadDataError
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.store import find_genotypes, open_store, skips_fill_chunks
from zarrgeno.stats.api import genotype_stats

DATA = Path(__file__).parent / "data"
BIO2ZARR = ("bio2zarr_v2.vcz", "bio2zarr_v3.vcz")
SGKIT = ("sgkit_plain.zarr", "sgkit_ploidy1.zarr")
BACKENDS = ("sequential", "multiprocessing", "dask")
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def parse_vcf(path: Path, ploidy: int = 2, dtype: str = "i1") -> dict[str, np.ndarray]:
    """GT of each contig as (variants, samples, ploidy) ``dtype``: '.' is -1, padding -2."""
    rows: dict[str, list[list[list[int]]]] = {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        calls = []
        for sample in fields[9:]:
            alleles = [-1 if a == "." else int(a) for a in sample.replace("|", "/").split("/")]
            calls.append(alleles + [-2] * (ploidy - len(alleles)))
        rows.setdefault(fields[0], []).append(calls)
    return {contig: np.array(calls, dtype=dtype) for contig, calls in rows.items()}


VCF = parse_vcf(DATA / "small.vcf")


def test_the_vcf_parser_sees_what_the_fixture_was_made_for() -> None:
    assert {c: a.shape for c, a in VCF.items()} == {"2L": (7, 6, 2), "X": (4, 6, 2)}
    assert VCF["X"][0, 0].tolist() == [0, -2]  # haploid call on X
    assert VCF["X"][0, 4].tolist() == [-1, -2]  # haploid missing


@pytest.mark.parametrize("name", BIO2ZARR)
def test_bio2zarr_finds_both_contigs_in_one_call_genotype(name: str) -> None:
    _, group = open_store(DATA / name)
    found = find_genotypes(group)
    assert [(g.contig, g.path, g.start, g.stop) for g in found] == [
        ("2L", "call_genotype", 0, 7),
        ("X", "call_genotype", 7, 11),
    ]


@pytest.mark.parametrize("name", BIO2ZARR)
@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
def test_bio2zarr_stats_equal_the_vcf_text(name: str, semantics: str) -> None:
    result = genotype_stats(DATA / name, semantics=semantics)
    assert [c.contig for c in result.contigs] == ["2L", "X"]
    assert result.sample_names == ("S1", "S2", "S3", "S4", "S5", "S6")
    for contig, gt in VCF.items():
        ref = naive_counts(gt, semantics)
        c = result.contig(contig)
        assert c.total_pos == len(gt)
        np.testing.assert_array_equal(c.variant_counts, ref.variant)
        np.testing.assert_array_equal(c.samples.counts, ref.sample)
        assert (c.complete_data, c.more_anc_hom) == (ref.complete_data, ref.more_anc_hom)


def test_a_haploid_call_is_missing_and_not_het_in_both_semantics() -> None:
    """X, variant 0: S1 is haploid 0 -> (0, -2); scikit-allel and sgkit call that missing."""
    for semantics in ("tutorial", "sgkit"):
        result = genotype_stats(DATA / "bio2zarr_v2.vcz", contigs=["X"], semantics=semantics)
        x = result.contig("X").variant_counts
        # S1 (0,-2) S2 (1,-2) S3 0/1 S4 ./. S5 (-1,-2) S6 1/1: 4 missing, 0 hom-ref, 1 het
        assert x[:, 0].tolist() == [4, 0, 1]


@pytest.mark.parametrize("name", BIO2ZARR)
@pytest.mark.parametrize("backend", BACKENDS)
def test_stats_cli_on_one_contig_with_every_backend(name: str, backend: str) -> None:
    code, out, err = run("stats", str(DATA / name), "--contig", "X", "--json", "-b", backend)
    assert code == 0, err
    data = json.loads(out)
    (x,) = data["contigs"]
    ref = naive_counts(VCF["X"])
    assert (x["contig"], x["start"], x["stop"]) == ("X", 7, 11)
    assert (x["n_missing"], x["n_hom_ref"], x["n_het"]) == tuple(int(v) for v in ref.variant.sum(1))


def test_distributed_on_a_running_cluster(tmp_path: Path) -> None:
    """Workers open the stores themselves: format 2, format 3, and format 3 MalariaGEN."""
    with dask_cluster(tmp_path, nworkers=1) as address:
        for name in (*BIO2ZARR, "malariagen_v3.zarr"):
            local = genotype_stats(DATA / name)
            remote = genotype_stats(DATA / name, backend="distributed", scheduler=address)
            assert [c.contig for c in remote.contigs] == [c.contig for c in local.contigs]
            for a, b in zip(local.contigs, remote.contigs, strict=True):
                np.testing.assert_array_equal(a.variant_counts, b.variant_counts)
                np.testing.assert_array_equal(a.samples.counts, b.samples.counts)


@pytest.mark.parametrize("name", BIO2ZARR)
def test_info_lists_the_contigs_with_their_variant_counts(name: str) -> None:
    code, out, err = run("info", "--summary", str(DATA / name))
    assert code == 0, err
    assert "Contigs: 2L 7 variants (call_genotype 0-7), X 4 variants (call_genotype 7-11)" in out
    code, out, _ = run("info", "--json", str(DATA / name))
    data = json.loads(out)
    assert [(c["contig"], c["n_variants"]) for c in data["contigs"]] == [("2L", 7), ("X", 4)]
    assert data["zarr_format"] == (3 if name.endswith("v3.vcz") else 2)
    paths = {a["path"]: a for a in data["arrays"]}
    assert paths["call_genotype"]["is_genotype"]
    assert paths["call_genotype"]["shape"] == [11, 6, 2]


def test_region_index_and_variant_contig_agree(tmp_path: Path) -> None:
    """Without region_index (as sgkit writes), variant_contig gives the same ranges, even
    with the chunk zarr-python 3 left out (all contig 0, fill_value null)."""
    copy = tmp_path / "copy.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", copy)
    assert not (copy / "variant_contig" / "0").exists()
    shutil.rmtree(copy / "region_index")
    _, group = open_store(copy)
    assert [(g.contig, g.start, g.stop) for g in find_genotypes(group)] == [
        ("2L", 0, 7),
        ("X", 7, 11),
    ]


@pytest.mark.hostile
def test_a_region_index_that_does_not_add_up_is_not_trusted(tmp_path: Path) -> None:
    copy = tmp_path / "copy.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", copy)
    index = zarr.open_array(str(copy / "region_index"), mode="r+")
    rows = index[:]
    rows[0, 5] = 2  # claims 2 records where the chunk holds 4
    index[:] = rows
    _, group = open_store(copy)
    found = find_genotypes(group)  # falls back to variant_contig
    assert [(g.contig, g.start, g.stop) for g in found] == [("2L", 0, 7), ("X", 7, 11)]


@pytest.mark.hostile
def test_unsorted_variant_contig_is_refused_by_name(tmp_path: Path) -> None:
    copy = tmp_path / "copy.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", copy)
    shutil.rmtree(copy / "region_index")
    contig = zarr.open_array(str(copy / "variant_contig"), mode="r+")
    contig[:] = np.array([0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1], dtype="i1")
    code, _, err = run("stats", str(copy))
    assert code != 0
    assert "variant_contig is not sorted by contig" in err
    assert "Traceback" not in err


def test_sgkit_plain_stats_equal_its_own_calls() -> None:
    gt = zarr.open_group(str(DATA / "sgkit_plain.zarr"), mode="r")["call_genotype"][:]
    result = genotype_stats(DATA / "sgkit_plain.zarr", semantics="sgkit")
    assert [c.contig for c in result.contigs] == ["0", "1"]
    for c, rows in zip(result.contigs, (slice(0, 30), slice(30, 60)), strict=True):
        ref = naive_counts(gt[rows], "sgkit")
        np.testing.assert_array_equal(c.variant_counts, ref.variant)
        np.testing.assert_array_equal(c.samples.counts, ref.sample)


def test_sgkit_ploidy_chunked_store_is_counted() -> None:
    """call_genotype chunked (25, 41, 1): the alleles of a call live in two chunks."""
    gt = zarr.open_group(str(DATA / "sgkit_ploidy1.zarr"), mode="r")["call_genotype"][:]
    result = genotype_stats(DATA / "sgkit_ploidy1.zarr")
    assert [c.contig for c in result.contigs] == ["0", "1"]
    for c, rows in zip(result.contigs, (slice(0, 30), slice(30, 60)), strict=True):
        ref = naive_counts(gt[rows])
        np.testing.assert_array_equal(c.variant_counts, ref.variant)
        np.testing.assert_array_equal(c.samples.counts, ref.sample)


@pytest.mark.parametrize("name", ("bio2zarr_v2.vcz", *SGKIT))
def test_format2_copy_commands_work_and_keep_the_counts(name: str, tmp_path: Path) -> None:
    """rechunk, recompress, verify and consolidate on a copy (the fixture is never written)."""
    source = tmp_path / name
    shutil.copytree(DATA / name, source)
    before = zarr.open_group(str(source), mode="r")["call_genotype"][:]
    code, _, err = run("consolidate", str(source))
    assert code == 0, err
    code, out, err = run("verify", str(source))
    assert code == 0, err
    if name.startswith("bio2zarr"):  # zarr-python 3 left out the chunks equal to the fill
        assert "2 chunks not stored (fill value, as the writer intends)" in out
    else:
        assert "not stored (fill value" not in out
    for command, extra in (
        ("rechunk", ["--chunks", "5,3,2"]),
        ("recompress", ["--compressor", "zstd:3"]),
    ):
        target = tmp_path / f"{command}.zarr"
        args = [command, str(source), str(target), *extra, "--backend", "sequential"]
        code, _, err = run(*args)
        assert code == 0, err
        after = zarr.open_group(str(target), mode="r")["call_genotype"]
        np.testing.assert_array_equal(after[:], before)
        if command == "rechunk":
            assert after.chunks == (5, 3, 2)
        code, _, err = run("verify", str(source), str(target))
        assert code == 0, err
        if name.startswith("bio2zarr"):  # the left-out chunks are refused when required
            code, _, err = run("verify", str(source), str(target), "--require-chunks")
            assert code == 4 and "call_genotype_phased" in err and "missing" in err


@pytest.mark.parametrize("name", BIO2ZARR)
def test_a_left_out_genotype_chunk_reads_as_hom_ref_unless_chunks_are_required(
    name: str, tmp_path: Path
) -> None:
    """zarr-python 3 does not write a chunk equal to the fill (0 when fill_value is null):
    bio2zarr leaves out a chunk whose calls are all 0/0, so by default it reads as 0/0, as
    zarr-python 3 reads it; --require-chunks names it instead."""
    copy = tmp_path / name
    shutil.copytree(DATA / name, copy)
    chunk = ("c/0/0/0", "0.0.0")[name == "bio2zarr_v2.vcz"]
    (copy / "call_genotype" / chunk).unlink()
    gt = VCF["2L"].copy()
    gt[0:4, 0:4] = 0
    for result in (genotype_stats(copy, contigs=["2L"]), genotype_stats(copy, backend="dask")):
        np.testing.assert_array_equal(result.contig("2L").variant_counts, naive_counts(gt).variant)
    code, out, err = run("stats", str(copy), "-c", "2L", "-b", "multiprocessing", "--json")
    assert code == 0, err  # the policy travels to the worker processes in the readers
    assert json.loads(out)["contigs"][0]["n_hom_ref"] == result.contig("2L").n_hom_ref
    code, _, err = run("stats", str(copy), "-c", "2L", "--require-chunks")
    assert code == 4
    assert f"chunk call_genotype/{chunk} is missing (pass --allow-missing" in err
    with pytest.raises(BadDataError, match="is missing"):
        genotype_stats(copy, allow_missing=False)


@pytest.mark.parametrize("name", BIO2ZARR)
def test_bio2zarr_verifies_with_the_left_out_chunks_counted(name: str) -> None:
    code, out, err = run("verify", str(DATA / name))
    assert code == 0, err
    assert "all chunks read and decoded" in out
    assert "2 chunks not stored (fill value, as the writer intends)" in out
    code, out, err = run("verify", str(DATA / name), "--json")
    report = json.loads(out)
    assert report["ok"] and report["not_stored"] == 2 and report["writer_skips_fill"]
    code, out, err = run("verify", str(DATA / name), "--require-chunks")
    assert code == 4 and "2 bad chunk(s) of 49" in err


@pytest.mark.parametrize(
    ("name", "skips"),
    [
        ("bio2zarr_v2.vcz", True),
        ("bio2zarr_v3.vcz", True),
        ("malariagen_v3.zarr", True),
        ("malariagen_v3_sharded.zarr", True),
        ("sgkit_plain.zarr", False),
        ("sgkit_ploidy1.zarr", False),
    ],
)
def test_the_missing_chunk_policy_of_each_fixture(name: str, skips: bool) -> None:
    """Format 3 and bio2zarr: written by zarr-python 3, which leaves out fill chunks."""
    store = zarr.storage.DirectoryStore(str(DATA / name))
    assert skips_fill_chunks(store) is skips
    if name != "malariagen_v3_sharded.zarr":  # sharding is refused on open
        assert skips_fill_chunks(open_store(DATA / name)[1]) is skips


def test_a_zarrgeno_store_and_a_plain_one_require_their_chunks(tmp_path: Path) -> None:
    code, _, err = run("simulate", str(tmp_path / "sim"), "-c", "X", "--scale", "0.0001")
    assert code == 0, err
    assert not skips_fill_chunks(open_store(tmp_path / "sim")[1])
    root = zarr.group()
    assert not skips_fill_chunks(root) and not skips_fill_chunks(root.store)
    root.attrs["source"] = "bio2zarr-0.2.1"
    assert skips_fill_chunks(root) and skips_fill_chunks(root.store)
    root.attrs["source"] = ["bio2zarr-0.2.1"]  # not a string: not trusted
    assert not skips_fill_chunks(root)


def test_download_of_a_bio2zarr_store_over_http(tmp_path: Path) -> None:
    with StoreServer(DATA) as server:
        dest = tmp_path / "mirror.vcz"
        code, _, err = run("download", server.url("bio2zarr_v2.vcz"), str(dest))
        assert code == 0, err
    result = genotype_stats(dest)
    np.testing.assert_array_equal(
        result.contig("2L").samples.counts, naive_counts(VCF["2L"]).sample
    )


def test_inspect_store_api_has_the_contigs() -> None:
    info = inspect_store(DATA / "bio2zarr_v3.vcz")
    assert info.zarr_format == 3
    assert info.contigs == (("2L", "call_genotype", 0, 7), ("X", "call_genotype", 7, 11))


def test_a_plain_store_with_a_lost_chunk_is_caught_unless_allowed(tmp_path: Path) -> None:
    sim = tmp_path / "sim"
    code, _, err = run("simulate", str(sim), "-c", "X", "--scale", "0.0001")
    assert code == 0, err
    (sim / "X" / "calldata" / "GT" / "0.0.0").unlink()
    code, _, err = run("verify", str(sim))
    assert code == 4 and "1 bad chunk(s)" in err and "X/calldata/GT/0.0.0 is missing" in err
    code, out, err = run("verify", str(sim), "--allow-missing")
    assert code == 0, err
    assert "1 chunks not stored (fill value, as --allow-missing asks)" in out


def test_rechunk_reads_a_left_out_chunk_as_the_fill_unless_chunks_are_required(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "copy.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", copy)
    (copy / "call_genotype" / "0.0.0").unlink()
    target = tmp_path / "rechunked.vcz"
    args = ["rechunk", str(copy), str(target), "--chunks", "5,3,2", "--backend", "sequential"]
    code, _, err = run(*args)
    assert code == 0, err
    gt = VCF["2L"].copy()
    gt[0:4, 0:4] = 0
    np.testing.assert_array_equal(zarr.open_group(str(target), mode="r")["call_genotype"][:7], gt)
    code, _, err = run(*args[:2], str(tmp_path / "again.vcz"), *args[3:], "--require-chunks")
    assert code == 4 and "chunk call_genotype/0.0.0 is missing" in err


@pytest.mark.hostile
@pytest.mark.parametrize("name", BIO2ZARR)
def test_a_directory_or_dangling_symlink_is_damage_even_where_chunks_are_left_out(
    name: str, tmp_path: Path
) -> None:
    """zarr-python 3 leaves no file at all for a fill chunk: anything at the path is damage."""
    copy = tmp_path / name
    shutil.copytree(DATA / name, copy)
    key = ("call_genotype/c/0/0/0", "call_genotype/0.0.0")[name == "bio2zarr_v2.vcz"]
    (copy / key).unlink()
    (copy / key).symlink_to(tmp_path / "nowhere")
    code, _, err = run("stats", str(copy), "-c", "2L", "-b", "sequential")
    assert code == 4 and f"chunk {key} is a dangling symlink" in err
    (copy / key).unlink()
    (copy / key).mkdir()
    code, out, err = run("verify", str(copy))
    assert code == 4 and f"corrupt: chunk {key} is a directory, not a chunk file" in out


@pytest.mark.hostile
def test_a_lost_variant_contig_chunk_of_a_store_that_writes_every_chunk_is_named(
    tmp_path: Path,
) -> None:
    """sgkit (zarr 2) writes every chunk: a lost variant_contig chunk is damage, named, not
    read as contig 0 (only a writer that leaves out fill chunks gets that reading)."""
    copy = tmp_path / "sgkit.zarr"
    shutil.copytree(DATA / "sgkit_plain.zarr", copy)
    (copy / "variant_contig" / "0").unlink()
    assert not skips_fill_chunks(open_store(copy)[1])
    code, _, err = run("stats", str(copy), "-b", "sequential")
    assert code == 4, err
    assert err.strip() == (
        "Error: chunk variant_contig/0 is missing (pass --allow-missing if the store was "
        "written without empty chunks)"
    )
