"""The layouts genotype stores come in, and damaged contig indexes named.

scikit-allel's ``vcf_to_zarr`` without ``group=`` (the call most users make) keeps every
contig in one root ``calldata/GT``, with each variant's contig in ``variants/CHROM``; every
command must split it per contig as it does the MalariaGEN layout (``CONTIG/calldata/GT``,
what ``vcf_to_zarr(..., group=CONTIG)`` writes). The expected counts come from numpy on the
stored calls, split by ``CHROM``.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli
from test_stats_reference import naive_counts
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.stats.api import genotype_stats
from zarrgeno.stats.kernels import count_calls, partial_calls

with warnings.catch_warnings():  # allel imports pkg_resources-era modules
    warnings.simplefilter("ignore")
    allel = pytest.importorskip("allel")

DATA = Path(__file__).parent / "data"
SAMPLES = ["A1", "A2", "B1", "B2"]
#: (contig, position, genotypes): contig runs that cross the stored chunks of 3 variants,
#: partial calls (``./1``, ``0/.``) and haploid calls on X (``0``, stored as [0, -1]).
ROWS = [
    ("2L", 100, ["0/0", "0/1", "1/1", "./."]),
    ("2L", 200, ["0/1", "./1", "0/0", "0/0"]),
    ("2L", 300, ["1/1", "1/1", "0/.", "0|1"]),
    ("2L", 400, ["0/0", "0/0", "0/0", "0/0"]),
    ("2L", 500, ["./.", "0/2", "1/2", "0/0"]),
    ("2R", 50, ["0/1", "0/0", "./.", "1/0"]),
    ("2R", 60, ["0/0", "1/1", "0/1", "0/0"]),
    ("2R", 70, ["./.", "./.", "./.", "./."]),
    ("2R", 80, ["0/0", "0/1", "0/0", "0/0"]),
    ("X", 10, ["0", "1", ".", "0/1"]),
    ("X", 20, ["1", "0", "0", "1/1"]),
    ("X", 30, ["0", "0", "1", "./."]),
    ("X", 40, ["0/0", "1", "0", "0/0"]),
]
CONTIGS = ["2L", "2R", "X"]


def vcf_text(rows: list[tuple[str, int, list[str]]]) -> str:
    header = [
        "##fileformat=VCFv4.2",
        *(f"##contig=<ID={c},length=1000>" for c in CONTIGS),
        '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
        "\t".join(
            ["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT", *SAMPLES]
        ),
    ]
    lines = [
        "\t".join([c, str(pos), ".", "A", "C,G", "30", "PASS", ".", "GT", *gts])
        for c, pos, gts in rows
    ]
    return "\n".join(header + lines) + "\n"


def vcf_to_zarr(vcf: Path, store: Path, **options: Any) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        allel.vcf_to_zarr(str(vcf), str(store), chunk_length=3, chunk_width=3, **options)
    return store


def allel_default(tmp: Path, rows: list[tuple[str, int, list[str]]] = ROWS) -> Path:
    """``allel.vcf_to_zarr(vcf, store)``: every contig in the root ``calldata/GT``."""
    vcf = tmp / "calls.vcf"
    vcf.write_text(vcf_text(rows))
    return vcf_to_zarr(vcf, tmp / "default.zarr")


def allel_grouped(tmp: Path) -> Path:
    """The same calls with ``group=CONTIG``, one contig at a time: the MalariaGEN layout."""
    store = tmp / "grouped.zarr"
    for contig in CONTIGS:
        vcf = tmp / f"{contig}.vcf"
        vcf.write_text(vcf_text([r for r in ROWS if r[0] == contig]))
        vcf_to_zarr(vcf, store, group=contig)
    return store


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("allel")
    return allel_default(tmp), allel_grouped(tmp)


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def stats_json(store: Path, *args: str) -> dict[str, Any]:
    return json.loads(run("stats", str(store), "--json", "--no-progress", *args).stdout)


def numpy_counts(store: Path, semantics: str) -> dict[str, Any]:
    """Per-contig counts of the stored calls, split by variants/CHROM."""
    root = zarr.open_group(str(store), mode="r")
    gt, chrom = root["calldata/GT"][:], root["variants/CHROM"][:]
    return {c: naive_counts(gt[chrom == c], semantics) for c in CONTIGS}


def test_the_default_layout_is_one_array_of_every_contig(stores: tuple[Path, Path]) -> None:
    default, _ = stores
    root = zarr.open_group(str(default), mode="r")
    assert root["calldata/GT"].shape == (len(ROWS), len(SAMPLES), 2)
    assert root["calldata/GT"].chunks == (3, 3, 2)
    assert list(root["variants/CHROM"][:]) == [r[0] for r in ROWS]
    assert list(root["samples"][:]) == SAMPLES


@pytest.mark.parametrize("semantics", ["tutorial", "sgkit"])
def test_stats_per_contig_agree_with_the_grouped_layout_and_numpy(
    stores: tuple[Path, Path], semantics: str
) -> None:
    default, grouped = stores
    doc = stats_json(default, "--semantics", semantics)
    assert [c["contig"] for c in doc["contigs"]] == CONTIGS
    assert [c["path"] for c in doc["contigs"]] == ["calldata/GT"] * 3
    assert [s["sample"] for s in doc["contigs"][0]["samples"]] == SAMPLES
    other = stats_json(grouped, "--semantics", semantics)
    for mine, theirs in zip(doc["contigs"], other["contigs"], strict=True):
        drop = ("path", "start", "stop")
        assert {k: v for k, v in mine.items() if k not in drop} == {
            k: v for k, v in theirs.items() if k not in drop
        }
    want = numpy_counts(default, semantics)
    result = genotype_stats(default, semantics=semantics)
    for c in result.contigs:
        np.testing.assert_array_equal(c.variant_counts, want[c.contig].variant)
        np.testing.assert_array_equal(c.samples.counts, want[c.contig].sample)
        assert c.complete_data == want[c.contig].complete_data
        assert c.more_anc_hom == want[c.contig].more_anc_hom


def test_a_region_selects_by_the_stored_positions(stores: tuple[Path, Path]) -> None:
    default, _ = stores
    doc = stats_json(default, "--region", "2R:55-75", "--region", "X:20-30")
    [r2, x] = doc["contigs"]
    assert (r2["contig"], r2["start"], r2["stop"], r2["total_pos"]) == ("2R", 6, 8, 2)
    assert (x["contig"], x["start"], x["stop"], x["total_pos"]) == ("X", 10, 12, 2)
    root = zarr.open_group(str(default), mode="r")
    want = naive_counts(root["calldata/GT"][6:8])
    assert [s["n_het"] for s in r2["samples"]] == want.sample[2].tolist()


def test_info_marks_the_genotypes_and_their_contigs(stores: tuple[Path, Path]) -> None:
    default, _ = stores
    text = run("info", str(default), "--summary").stdout
    assert "calldata/GT *" in text
    assert "Contigs: 2L 5 variants (calldata/GT 0-5), 2R 4 variants (calldata/GT 5-9)" in text
    doc = json.loads(run("info", str(default), "--json").stdout)
    assert [(c["contig"], c["start"], c["stop"]) for c in doc["contigs"]] == [
        ("2L", 0, 5),
        ("2R", 5, 9),
        ("X", 9, 13),
    ]
    assert doc["contigs_problem"] is None


def test_copy_commands_take_the_root_genotypes_by_default(
    stores: tuple[Path, Path], tmp_path: Path
) -> None:
    default, _ = stores
    source = Tree(default)
    rechunked = tmp_path / "rechunked.zarr"
    run("rechunk", str(default), str(rechunked), "--chunks", "5,4,2", "--no-progress")
    assert zarr.open_array(str(rechunked / "calldata" / "GT"), mode="r").chunks == (5, 4, 2)
    recompressed = tmp_path / "recompressed.zarr"
    run("recompress", str(default), str(recompressed), "--compressor", "zstd", "--no-progress")
    gt = zarr.open_array(str(recompressed / "calldata" / "GT"), mode="r")
    assert gt.compressor.codec_id == "zstd"
    for target in (rechunked, recompressed):
        run("verify", str(default), str(target))
        assert stats_json(target)["contigs"] == stats_json(default)["contigs"]
    assert "calldata/GT" in run("codecs", str(default), "--sample", "1").stdout
    run("verify", str(default))
    source.assert_unchanged()


def test_download_mirrors_the_default_layout(tmp_path: Path) -> None:
    from httpserver import StoreServer
    from test_download import FAST

    from zarrgeno.download.fetch import download

    (tmp_path / "srv").mkdir()
    store = allel_default(tmp_path / "srv")
    dest = tmp_path / "mirror.zarr"
    with StoreServer(store.parent) as server:
        download(server.url(store.name), dest, options=FAST)
    assert stats_json(dest)["contigs"] == stats_json(store)["contigs"]


@pytest.mark.hostile
def test_a_contig_in_two_runs_is_refused_by_name(tmp_path: Path) -> None:
    rows = ROWS[:5] + ROWS[9:] + ROWS[5:9] + [("2L", 600, ["0/0"] * 4)]
    store = allel_default(tmp_path, rows)
    tree = Tree(store)
    result = run_cli("stats", store)
    assert_refused(
        result,
        4,
        says=(f"{store}: variants/CHROM is not sorted by contig", "contig 2L starts again"),
    )
    info = run_cli("info", store, "--summary")
    assert info.code == 0, info
    assert "calldata/GT *" in info.out and "Traceback" not in info.err
    assert "Contigs: cannot be split: " in info.out and "variants/CHROM" in info.out
    tree.assert_unchanged()


def _vcf_zarr_copy(tmp_path: Path, variant_contig: list[int], *, index: bool = False) -> Path:
    """bio2zarr's small store with its variant_contig replaced (and region_index kept or not)."""
    copy = tmp_path / "copy.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", copy)
    if not index:
        shutil.rmtree(copy / "region_index")
    contig = zarr.open_array(str(copy / "variant_contig"), mode="r+")
    contig[:] = np.array(variant_contig, dtype="i1")
    return copy


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("values", "says"),
    [
        (
            [0, 0, 0, 0, 7, 7, 0, 1, 1, 1, 1],
            "holds 7 at variant 4, outside contig_id (contigs 0 to 1)",
        ),
        ([0, 0, 0, 0, 0, 0, -3, 1, 1, 1, 1], "holds -3 at variant 6, outside contig_id"),
        ([0, 0, 1, 1, 0, 0, 0, 1, 1, 1, 1], "is not sorted by contig: contig 2L starts again"),
    ],
)
def test_a_damaged_variant_contig_is_named_and_info_still_shows_the_tree(
    tmp_path: Path, values: list[int], says: str
) -> None:
    store = _vcf_zarr_copy(tmp_path, values)
    tree = Tree(store)
    assert_refused(run_cli("stats", store), 4, says=f"{store}: variant_contig {says}")
    info = run_cli("info", store)
    assert info.code == 0 and "Traceback" not in info.err, info
    assert "├── call_genotype (11, 6, 2) int8" in info.out
    assert "call_genotype *" in info.out  # still marked in the summary
    assert f"Contigs: cannot be split: {store}: variant_contig {says}" in info.out
    doc = json.loads(run_cli("info", store, "--json").out)
    assert doc["contigs"] == [] and says in doc["contigs_problem"]
    tree.assert_unchanged()


def test_a_region_index_naming_an_unknown_contig_falls_back_to_variant_contig(
    tmp_path: Path,
) -> None:
    store = _vcf_zarr_copy(tmp_path, [0] * 7 + [1] * 4, index=True)
    index = zarr.open_array(str(store / "region_index"), mode="r+")
    rows = index[:]
    rows[0, 1] = 5  # a contig that contig_id does not have
    index[:] = rows
    doc = stats_json(store)
    assert [(c["contig"], c["start"], c["stop"]) for c in doc["contigs"]] == [
        ("2L", 0, 7),
        ("X", 7, 11),
    ]


# --- Partial calls: one allele missing, het under the tutorial rule, missing under sgkit ---


def test_partial_calls_are_the_tutorial_het_the_sgkit_rule_does_not_count() -> None:
    """The algebra: with alleles >= -2, partial calls = tutorial het - sgkit het."""
    rng = np.random.default_rng(3)
    gt = rng.choice(np.array([0, 1, 2, -1, -2], dtype="i1"), size=(60, 9, 2))
    tutorial, sgkit = (naive_counts(gt, s) for s in ("tutorial", "sgkit"))
    want = int(tutorial.sample[2].sum() - sgkit.sample[2].sum())
    assert want > 0
    assert partial_calls(gt[..., 0], gt[..., 1]) == want


@pytest.mark.parametrize("simd", [True, False], ids=["avx2", "portable"])
def test_the_kernel_counts_partial_calls_on_every_path(simd: bool) -> None:
    """Both compiled loops; segment widths 1..130 (every AVX2 segment shape and tail word),
    column windows, row counts around the 8-row steps and the 248-row flush, alleles < -2."""
    from zarrgeno.stats import _kernel

    before = _kernel.simd()
    if simd and not before:
        pytest.skip("this CPU or build has no AVX2 loop")
    _kernel.simd(simd)
    try:
        _count_partial_calls_of_every_width(_kernel)
    finally:
        _kernel.simd(before)


def _count_partial_calls_of_every_width(_kernel: Any) -> None:
    rng = np.random.default_rng(7)
    alleles = np.array([0, 0, 1, 2, -1, -1, -2, -3, 127, -128], dtype="i1")
    row_counts = [1, 7, 8, 9, 247, 248, 249, 505]
    for width in range(1, 131):
        n = row_counts[width % len(row_counts)]
        c0 = width % 5
        stride = c0 + width + width % 3
        gt = rng.choice(alleles, size=(n, stride, 2))
        window = gt[:, c0 : c0 + width]
        want = partial_calls(window[..., 0], window[..., 1])
        variant = np.zeros((3, n), dtype=np.uint16)
        sample = np.zeros((3, width), dtype=np.int64)
        args = (gt, n, stride, c0, c0 + width)
        assert _kernel.count_packed(*args, False, variant, 2, sample) == want, (width, n)
        assert _kernel.count_packed(*args, True, variant, 2, sample) == 0
        assert count_calls(window).partial == want  # a window, through the Python layer
        assert count_calls(window.astype(np.int16)).partial == want  # the numpy path


def test_a_unit_adds_the_partial_calls_of_its_chunks(tmp_path: Path) -> None:
    """Chunks of 3 variants and 3 samples, samples selected out of order, every backend."""
    store = allel_default(tmp_path)
    root = zarr.open_group(str(store), mode="r")
    gt, chrom = root["calldata/GT"][:], root["variants/CHROM"][:]
    for backend in ("sequential", "threads", "multiprocessing", "dask"):
        result = genotype_stats(store, backend=backend, samples=["B2", "A1", "B1"])
        for c in result.contigs:
            rows = gt[chrom == c.contig][:, [3, 0, 2]]
            assert c.n_partial_het == partial_calls(rows[..., 0], rows[..., 1]), backend
    sgkit = genotype_stats(store, semantics="sgkit", backend="sequential")
    assert [c.n_partial_het for c in sgkit.contigs] == [0, 0, 0] and sgkit.notes() == []


def test_stats_says_how_many_calls_the_tutorial_rule_counts_as_het(
    stores: tuple[Path, Path],
) -> None:
    default, grouped = stores
    root = zarr.open_group(str(default), mode="r")
    gt, chrom = root["calldata/GT"][:], root["variants/CHROM"][:]
    want = {c: partial_calls(gt[chrom == c][..., 0], gt[chrom == c][..., 1]) for c in CONTIGS}
    assert want == {"2L": 2, "2R": 0, "X": 10}  # ./1 and 0/. on 2L; haploid calls on X
    tutorial, sgkit = (numpy_counts(default, s) for s in ("tutorial", "sgkit"))
    for store in (default, grouped):
        doc = stats_json(store)
        got = {c["contig"]: c["n_partial_het"] for c in doc["contigs"]}
        assert got == want
        for c in CONTIGS:  # exactly the het calls the sgkit rule does not count
            assert want[c] == tutorial[c].sample[2].sum() - sgkit[c].sample[2].sum()
        assert doc["total"]["n_partial_het"] == 12
        assert doc["notes"] == [
            "Note: 12 calls with one allele missing (such as 0/. or a haploid call stored as "
            "[0, -1]) are counted as het by the tutorial rule; --semantics sgkit counts such "
            "calls as missing, as bcftools and scikit-allel do"
        ]
        text = run("stats", str(store)).stdout
        assert doc["notes"][0] in text.splitlines()
        sgkit_doc = stats_json(store, "--semantics", "sgkit")
        assert sgkit_doc["notes"] == [] and sgkit_doc["total"]["n_partial_het"] == 0
        assert "Note:" not in run("stats", str(store), "--semantics", "sgkit").stdout
    only_2r = stats_json(default, "-c", "2R")
    assert only_2r["notes"] == [] and "Note:" not in run("stats", str(default), "-c", "2R").stdout


@pytest.mark.parametrize(
    "values",
    [["chr1"] * 6, ["", ""], ["é"] * 3, ["chr1"] * 5 + ["chr2"], ["chr1"] * 5 + ["chr10"], ["x"]],
)
@pytest.mark.parametrize("codec_id", ["vlen-utf8", "vlen-bytes"])
def test_a_chunk_of_one_repeated_string_reads_as_numcodecs_reads_it(
    values: list[str], codec_id: str
) -> None:
    """A CHROM chunk is one string repeated: it is checked by one comparison and decoded
    once, and must read exactly as numcodecs reads it (and a near-repeat as well)."""
    import numcodecs

    from zarrgeno.io.chunks import ChunkLayout, decode_chunk

    codec = numcodecs.get_codec({"id": codec_id})
    items = [v.encode() if codec_id == "vlen-bytes" else v for v in values]
    raw = codec.encode(np.array(items, dtype=object))
    layout = ChunkLayout(
        "CHROM", (len(values),), (len(values),), np.dtype(object), None, (codec,), 0
    )
    got = decode_chunk(layout, "CHROM/0", raw)
    assert got.dtype == object and got.tolist() == codec.decode(raw).tolist() == items
