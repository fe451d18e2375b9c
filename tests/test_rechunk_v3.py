"""rechunk, recompress, consolidate and download in Zarr format 3 and on VCF Zarr stores,
checked live with the tools that read them: vcztools (its VCF equal to the source's) and
zarr-python 3 (every array equal to the source, value for value), in the oracle venv
(tests/zarr3venv.py). sgkit needs zarr 2 and is not in that venv: it is not an oracle here."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hostile import Tree, assert_refused, run_cli
from httpserver import StoreServer
from test_stats_reference import naive_counts
from typer.testing import CliRunner
from zarr3venv import needs_zarr3, run_json, vcztools_views

from zarrgeno.cli import app
from zarrgeno.defaults import PROMISE_FACTOR
from zarrgeno.io.shardindex import ShardSpec, encode_index
from zarrgeno.io.shards import decode_shard, parse_sharded
from zarrgeno.io.zarr3 import layout_of_document
from zarrgeno.stats.api import genotype_stats

DATA = Path(__file__).parent / "data"
runner = CliRunner()
VIEWS = [[], ["-r", "X:1-20"], ["-r", "2L:35-60"], ["-s", "S2,S5"]]


def zarrgeno(*args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.stderr or result.stdout
    return result.stderr


def refused(code: int, *args: str | Path) -> str:
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == code, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def assert_same_views(source: Path, *targets: Path) -> None:
    """vcztools view prints the same VCF for the source and every target."""
    stores = [source, *targets]
    out = vcztools_views(*([*view, store] for store in stores for view in VIEWS))
    n = len(VIEWS)
    for i, target in enumerate(targets, start=1):
        assert out[i * n : (i + 1) * n] == out[:n], target
    assert out[0].count("\n2L\t") == 7


#: Every array of two stores read by zarr-python 3, compared value for value (NaN equal
#: to NaN); also the chunks and shards zarr-python 3 sees.
ZARR_PYTHON_EQUAL = """
import json, sys, warnings
import numpy as np, zarr
warnings.simplefilter("ignore")
source, target = (zarr.open_group(p, mode="r") for p in sys.argv[1:3])
skip = set(sys.argv[3:])
out = {}
def walk(group, prefix=""):
    for name, node in group.members():
        path = prefix + name
        if isinstance(node, zarr.Group):
            walk(node, path + "/")
            continue
        a, b = node[...], source[path][...]
        same = a.shape == b.shape and (
            list(a.ravel()) == list(b.ravel()) if a.dtype == object
            else bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")))
        out[path] = {"same": same or path in skip, "chunks": list(node.chunks),
                     "shards": list(node.shards) if node.shards else None,
                     "format": node.metadata.zarr_format}
walk(target)
print(json.dumps(out))
"""


def zarr_python_equal(source: Path, target: Path, *skip: str) -> dict[str, dict]:
    arrays = run_json(ZARR_PYTHON_EQUAL, source, target, *skip)
    assert arrays and all(a["same"] for a in arrays.values()), arrays
    return arrays


@needs_zarr3
def test_rechunked_vcf_zarr_is_read_by_vcztools(tmp_path: Path) -> None:
    """The positional spec (call_genotype's) and the same by name rechunk every array of
    the store; vcztools reads both as it reads the source (it failed after a positional
    rechunk, which left the other arrays chunked as before)."""
    source = DATA / "bio2zarr_v2.vcz"
    zarrgeno("rechunk", source, tmp_path / "pos.vcz", "--chunks", "5,3,2", "--verify")
    zarrgeno("rechunk", source, tmp_path / "named.vcz", "--chunks", "variants=3,samples=4")
    assert_same_views(source, tmp_path / "pos.vcz", tmp_path / "named.vcz")
    for name, variants, samples in (("pos.vcz", 5, 3), ("named.vcz", 3, 4)):
        for array, axis, length in (("variant_position", 0, variants), ("sample_id", 0, samples)):
            meta = json.loads((tmp_path / name / array / ".zarray").read_text())
            assert meta["chunks"][axis] == length, (name, array)
    zarr_python_equal(source, tmp_path / "named.vcz", "region_index")


@needs_zarr3
def test_vcf_zarr_in_format_3_with_shards_is_read_by_vcztools_and_zarr_python(
    tmp_path: Path,
) -> None:
    source, target = DATA / "bio2zarr_v2.vcz", tmp_path / "sharded.vcz"
    zarrgeno(
        "rechunk", source, target, "--chunks", "variants=5,samples=3", "--zarr-format", "3",
        "--shards", "variants=5,samples=3", "--verify",
    )  # fmt: skip
    assert_same_views(source, target)
    arrays = zarr_python_equal(source, target, "region_index")
    assert arrays["call_genotype"] == {
        "same": True, "chunks": [5, 3, 2], "shards": [5, 3, 2], "format": 3,
    }  # fmt: skip
    assert arrays["contig_id"]["shards"] is None  # no variants or samples dimension
    gt = json.loads((target / "call_genotype" / "zarr.json").read_text())
    sharding = gt["codecs"][0]["configuration"]
    assert [c["name"] for c in sharding["index_codecs"]] == ["bytes", "crc32c"]


@needs_zarr3
def test_a_bio2zarr_format_3_store_is_recompressed_and_rechunked(tmp_path: Path) -> None:
    source = DATA / "bio2zarr_v3.vcz"
    zarrgeno("recompress", source, tmp_path / "z.vcz", "--compressor", "zstd:5", "--verify")
    zarrgeno("rechunk", source, tmp_path / "r.vcz", "--chunks", "variants=2", "--verify")
    zarrgeno("rechunk", source, tmp_path / "r2.vcz", "--chunks", "variants=2", "--zarr-format", "2")
    assert (tmp_path / "r2.vcz" / ".zgroup").is_file()
    assert_same_views(source, tmp_path / "z.vcz", tmp_path / "r.vcz", tmp_path / "r2.vcz")
    arrays = zarr_python_equal(source, tmp_path / "z.vcz")
    gt = json.loads((tmp_path / "z.vcz" / "call_genotype" / "zarr.json").read_text())
    assert gt["codecs"][-1]["name"] == "zstd" and arrays["call_genotype"]["format"] == 3
    assert zarr_python_equal(source, tmp_path / "r.vcz", "region_index")["variant_id"][
        "chunks"
    ] == [2]


@needs_zarr3
def test_a_sharded_source_is_rewritten_with_and_without_shards(tmp_path: Path) -> None:
    source = DATA / "malariagen_v3_sharded.zarr"
    zarrgeno("recompress", source, tmp_path / "keep.zarr", "--compressor", "zstd:3", "--verify")
    zarrgeno("rechunk", source, tmp_path / "v2.zarr", "--chunks", "4,5,2", "--zarr-format", "2",
             "--verify")  # fmt: skip
    zarrgeno("rechunk", source, tmp_path / "v3.zarr", "--chunks", "4,5,2", "--shards", "12,5,2")
    kept = zarr_python_equal(source, tmp_path / "keep.zarr")
    assert kept["2L/calldata/GT"]["shards"] == [16, 6, 2]  # recompress keeps the shards
    assert zarr_python_equal(source, tmp_path / "v2.zarr")["2L/calldata/GT"]["format"] == 2
    assert zarr_python_equal(source, tmp_path / "v3.zarr")["3R/calldata/GT"]["shards"] == [12, 5, 2]
    zarrgeno("verify", source, tmp_path / "v3.zarr")


@needs_zarr3
def test_consolidated_format_3_is_what_zarr_python_reads(tmp_path: Path) -> None:
    """rechunk keeps a consolidated source consolidated; consolidate writes what
    zarr-python 3 reads from the root zarr.json, and nothing when it agrees."""
    source = DATA / "malariagen_v3.zarr"  # consolidated by zarr-python 3
    target = tmp_path / "r.zarr"
    zarrgeno("rechunk", source, target, "--chunks", "4,5,2")
    root = json.loads((target / "zarr.json").read_text())
    entries = root["consolidated_metadata"]["metadata"]
    gt = json.loads((target / "2L/calldata/GT/zarr.json").read_text())
    assert entries["2L/calldata/GT"] == gt
    copy = tmp_path / "plain.zarr"
    shutil.copytree(DATA / "malariagen_v3_sharded.zarr", copy)
    out = runner.invoke(app, ["consolidate", str(copy)])
    assert out.exit_code == 0 and "there was none" in out.stdout
    assert "up to date" in runner.invoke(app, ["consolidate", str(copy)]).stdout
    theirs = run_json(
        "import sys, json, zarr; g = zarr.open_consolidated(sys.argv[1]);"
        "print(json.dumps(sorted(g.metadata.consolidated_metadata.flattened_metadata)))",
        copy,
    )
    assert "2L/calldata/GT" in theirs and "samples" in theirs
    zarr_python_equal(DATA / "malariagen_v3_sharded.zarr", copy)


def test_format_3_stores_are_downloaded(tmp_path: Path) -> None:
    """Over HTTP from the metadata (consolidated, or each node's zarr.json) and from a
    listing; a sharded store's shards are checked when --verify decodes them."""
    with StoreServer(DATA) as server:
        for name in ("malariagen_v3.zarr", "malariagen_v3_sharded.zarr", "bio2zarr_v3.vcz"):
            dest = tmp_path / name
            result = runner.invoke(app, ["download", server.url(name), str(dest), "--verify"])
            assert result.exit_code == 0, result.stderr
            zarrgeno("verify", DATA / name, dest)
    local = tmp_path / "listed.zarr"
    zarrgeno("download", (DATA / "malariagen_v3_sharded.zarr").as_uri(), local)
    zarrgeno("verify", DATA / "malariagen_v3_sharded.zarr", local)


def test_format_3_and_vcf_zarr_refusals(tmp_path: Path) -> None:
    source = DATA / "bio2zarr_v2.vcz"
    target = tmp_path / "t.vcz"
    line = refused(2, "rechunk", source, target, "--chunks", "5,3,2", "--shards", "variants=5")
    assert "--shards needs Zarr format 3" in line
    line = refused(2, "rechunk", source, target, "--chunks", "5,3,2", "--array", "call_genotype")
    assert "would chunk variants by 5 in call_genotype and by 4 in" in line
    line = refused(
        2, "rechunk", DATA / "bio2zarr_v3.vcz", target, "--chunks", "variants=5",
        "--zarr-format", "3", "--shards", "variants=7",
    )  # fmt: skip
    assert "shard length 7 along variants is not a multiple of the inner chunk length 5" in line
    line = refused(
        2, "recompress", DATA / "malariagen_v3.zarr", target, "--compressor", "zstd:3",
        "--checksum", "crc32",
    )  # fmt: skip
    assert "filters ['crc32'] have no Zarr format 3 equivalent" in line
    assert not target.exists()


def test_shards_of_several_variants_chunks_are_written_with_a_warning(tmp_path: Path) -> None:
    """vcztools 0.2 cannot read them (tests/test_vcfzarr.py); zarr-python 3 can."""
    warning = zarrgeno(
        "rechunk", DATA / "bio2zarr_v3.vcz", tmp_path / "t.vcz", "--chunks", "variants=2",
        "--shards", "variants=4", "--verify",
    )  # fmt: skip
    assert warning.startswith("Warning: shards of more than one variants or samples chunk")
    assert "vcztools 0.2 does not" in warning


@pytest.mark.parametrize("command", ["rechunk", "recompress"])
def test_plan_names_the_format_and_shards(command: str, tmp_path: Path) -> None:
    extra = ["--chunks", "8,5,2"] if command == "rechunk" else ["--compressor", "zstd:1"]
    shards = "16,5,2" if command == "rechunk" else "16,6,2"  # recompress keeps (8, 3, 2)
    result = runner.invoke(
        app,
        [command, str(DATA / "malariagen_v3.zarr"), str(tmp_path / "t"), *extra,
         "--shards", shards, "--plan"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert "(Zarr format 3)" in result.stdout and "target shards" in result.stdout
    assert not (tmp_path / "t").exists()


# -- hostile inputs: one line, exit 4, nothing written, the source unchanged


def _shard(store: Path) -> tuple[Path, bytes, np.ndarray]:
    """The first shard of 2L's genotypes, its bytes and its decoded index table."""
    path = store / "2L/calldata/GT/c/0/0/0"
    raw = path.read_bytes()
    spec = ShardSpec((16, 6, 2), (8, 3, 2))
    table = np.frombuffer(raw[-spec.index_nbytes : -4], dtype="<u8").reshape(-1, 2).copy()
    return path, raw, table


def _with_table(raw: bytes, table: np.ndarray) -> bytes:
    spec = ShardSpec((16, 6, 2), (8, 3, 2))
    return raw[: -spec.index_nbytes] + encode_index(spec, table)


def _outside(raw: bytes, table: np.ndarray) -> bytes:
    table[0] = (len(raw), 10)
    return _with_table(raw, table)


def _overlapping(raw: bytes, table: np.ndarray) -> bytes:
    table[1] = (table[0][0] + 1, table[1][1])
    return _with_table(raw, table)


def _bad_crc(raw: bytes, table: np.ndarray) -> bytes:
    return raw[:-1] + bytes([raw[-1] ^ 0xFF])


SHARD_DAMAGE = [
    (_outside, "lies outside the shard's data"),
    (_overlapping, "overlap"),
    (_bad_crc, "index checksum (crc32c) does not match"),
]


@pytest.mark.hostile
@pytest.mark.parametrize(("damage", "message"), SHARD_DAMAGE, ids=["outside", "overlap", "crc"])
@pytest.mark.parametrize("command", ["rechunk", "stats", "verify"])
def test_a_damaged_shard_index_is_refused(
    tmp_path: Path, command: str, damage: Callable[[bytes, np.ndarray], bytes], message: str
) -> None:
    source = tmp_path / "src.zarr"
    shutil.copytree(DATA / "malariagen_v3_sharded.zarr", source)
    path, raw, table = _shard(source)
    path.write_bytes(damage(raw, table))
    target = tmp_path / "out" / "t.zarr"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "canary").write_text("x")
    before, canary = Tree(source), Tree(tmp_path / "out")
    args = {"rechunk": [target, "--chunks", "4,5,2"], "stats": [], "verify": []}[command]
    result = run_cli(command, source, *args)
    assert_refused(result, 4, says=("shard 2L/calldata/GT/c/0/0/0", message))
    before.assert_unchanged()
    canary.assert_unchanged()


@pytest.mark.hostile
def test_a_shard_shape_not_a_multiple_of_the_inner_chunks_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "src.zarr"
    shutil.copytree(DATA / "malariagen_v3_sharded.zarr", source)
    meta_path = source / "2L/calldata/GT/zarr.json"
    meta = json.loads(meta_path.read_text())
    meta["chunk_grid"]["configuration"]["chunk_shape"] = [12, 6, 2]
    meta_path.write_text(json.dumps(meta))
    before = Tree(source)
    for args in (["rechunk", source, tmp_path / "t", "--chunks", "4,5,2"], ["stats", source]):
        result = run_cli(*args)
        assert_refused(
            result, 4, says=("2L/calldata/GT", "shard shape (12, 6, 2) is not a multiple of")
        )
    before.assert_unchanged()
    assert not (tmp_path / "t").exists()


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("array", "dims", "message"),
    [
        ("variant_position", ["samples"], "disagree on the length of dimension 'samples'"),
        ("call_genotype_mask", ["variants", "samples"], "must name each of its 3 dimensions"),
        ("variant_length", None, "variant_length has no dimension names"),
    ],
)
def test_inconsistent_dimension_names_are_refused(
    tmp_path: Path, array: str, dims: list[str] | None, message: str
) -> None:
    source = tmp_path / "src.vcz"
    shutil.copytree(DATA / "bio2zarr_v2.vcz", source)
    attrs = source / array / ".zattrs"
    if dims is None:
        attrs.unlink()
    else:
        attrs.write_text(json.dumps({"_ARRAY_DIMENSIONS": dims}))
    before = Tree(source)
    result = run_cli("rechunk", source, tmp_path / "t.vcz", "--chunks", "variants=5")
    assert_refused(result, 4, says=message)
    before.assert_unchanged()
    assert not (tmp_path / "t.vcz").exists()


# -- --max-mem with shards: a shard is written whole, so its buffers are in the model

SHARD_ROWS = 400_000
#: What a zarrgeno process holds before it decodes a chunk, with room to spare.
BASELINE_MB = 110


@pytest.fixture(scope="module")
def big_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "s.zarr"
    root = zarr.open_group(zarr.DirectoryStore(str(path)), mode="w")
    gt = np.zeros((2 * SHARD_ROWS, 81, 2), dtype="i1")
    gt[::7, ::3] = 1
    root.create_dataset(
        "2L/calldata/GT", data=gt, chunks=(100_000, 81, 2),
        compressor=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    )  # fmt: skip
    return path


@pytest.mark.hostile
def test_max_mem_holds_with_shards(big_store: Path, tmp_path: Path) -> None:
    """A budget that fits chunks of 1.6 MB but not shards of 64.8 MB is refused before a
    byte is written; one that fits them holds, as the plan says."""
    args = ["rechunk", big_store, tmp_path / "t.zarr", "--chunks", "10000,81,2",
            "--zarr-format", "3", "--shards", f"{SHARD_ROWS},81,2"]  # fmt: skip
    assert_refused(run_cli(*args, "--max-mem", "60MB"), 2, says="--max-mem 60 MB is too small")
    assert not (tmp_path / "t.zarr").exists()
    plan = json.loads(run_cli(*args, "--max-mem", "300MB", "--plan", "--json").out)
    (job,) = plan["arrays"]
    assert job["shards"] == [SHARD_ROWS, 81, 2] and job["chunks"] == [10000, 81, 2]
    assert job["task_peak"] > SHARD_ROWS * 81 * 2  # a whole shard is held, and encoded
    result = run_cli(*args, "--max-mem", "300MB", "-w", "2", "--verify")
    assert result.code == 0, str(result)
    assert result.peak_rss_mb <= PROMISE_FACTOR * 300 + BASELINE_MB, str(result)


def _decoded_shards(path: Path) -> np.ndarray:
    """A sharded GT array of tests/data, decoded shard file by shard file."""
    meta = json.loads((path / "zarr.json").read_text())
    sharded = parse_sharded(meta, "GT", "fixture")
    layout = layout_of_document(meta, "GT", "fixture")
    inner = replace(layout, shard=None)
    shape, spec = layout.shape, sharded.spec
    out = np.full([-(-n // s) * s for n, s in zip(shape, spec.shard_shape, strict=True)], -1, "i1")
    for index in np.ndindex(*(-(-n // s) for n, s in zip(shape, spec.shard_shape, strict=True))):
        raw = (path / "c" / "/".join(map(str, index))).read_bytes()
        region = tuple(
            slice(i * s, (i + 1) * s) for i, s in zip(index, spec.shard_shape, strict=True)
        )
        out[region] = decode_shard(raw, spec, inner, str(index))
    return out[tuple(slice(0, n) for n in shape)]


def test_sharded_arrays_are_read_from_every_kind_of_store(tmp_path: Path) -> None:
    """A directory (ranged reads), a .zip, a URL and memory (whole shards): the same counts,
    those of the shards decoded file by file."""
    root = DATA / "malariagen_v3_sharded.zarr"
    archive = tmp_path / "sharded.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as zf:
        for path in sorted(root.rglob("*")):
            if path.is_file():
                zf.write(path, str(path.relative_to(root)))
    memory = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    with StoreServer(DATA) as server:
        results = [
            genotype_stats(source)
            for source in (str(root), str(archive), memory, server.url(root.name))
        ]
    for contig in ("2L", "3R"):
        expected = naive_counts(_decoded_shards(root / contig / "calldata/GT")).sample
        for result in results:
            np.testing.assert_array_equal(result.contig(contig).samples.counts, expected)
