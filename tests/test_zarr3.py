"""Zarr format 3 stores: read through zarrgeno's own chunk path, or refused by name.

Stores are built here key by key (zarr.json documents and numcodecs-encoded chunks, as the
format-3 spec lays them out), and tests/data holds stores zarr-python 3 wrote. The
expected counts come from decoding the chunk files directly, not through zarrgeno.
"""

from __future__ import annotations

import itertools
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
from hostile import Tree, assert_refused, run_cli
from httpserver import StoreServer
from test_stats_reference import naive_counts
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.store import find_genotypes, open_store
from zarrgeno.io.zarr3 import V3Store, is_zarr3
from zarrgeno.stats.api import genotype_stats, plan_stats

DATA = Path(__file__).parent / "data"
runner = CliRunner()

BLOSC = {
    "name": "blosc",
    "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "bitshuffle", "typesize": 1},
}
CODECS = {
    "blosc": BLOSC,
    "zstd": {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
    "gzip": {"name": "gzip", "configuration": {"level": 5}},
}
NUMCODECS = {
    "blosc": numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE),
    "zstd": numcodecs.Zstd(level=3),
    "gzip": numcodecs.GZip(level=5),
}


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def _doc(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta).encode()


def group_doc() -> bytes:
    return _doc({"zarr_format": 3, "node_type": "group", "attributes": {}})


def add_array(
    store: dict[str, bytes],
    path: str,
    data: np.ndarray,
    chunks: tuple[int, ...],
    *,
    codec: str | None = "blosc",
    encoding: tuple[str, str] = ("default", "/"),
    endian: str = "little",
    fill: int = -1,
    **extra: Any,
) -> None:
    """Write ``data`` at ``path`` as a format-3 array, with every parent group."""
    parts = path.split("/")
    store.setdefault("zarr.json", group_doc())
    for i in range(1, len(parts)):
        store.setdefault("/".join(parts[:i]) + "/zarr.json", group_doc())
    name, sep = encoding
    codecs: list[Any] = [{"name": "bytes", "configuration": {"endian": endian}}]
    if codec:
        codecs.append(CODECS[codec])
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(data.shape),
        "data_type": str(data.dtype),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": name, "configuration": {"separator": sep}},
        "fill_value": fill,
        "codecs": codecs,
        "attributes": {},
        **extra,
    }
    store[f"{path}/zarr.json"] = _doc(meta)
    dtype = data.dtype.newbyteorder(">" if endian == "big" else "<")
    grid = [range(math.ceil(s / c)) for s, c in zip(data.shape, chunks, strict=True)]
    for index in itertools.product(*grid):
        block = np.full(chunks, fill, dtype=dtype)
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))
        part = data[region]
        block[tuple(slice(0, n) for n in part.shape)] = part
        raw = block.tobytes()
        if codec:
            raw = bytes(NUMCODECS[codec].encode(raw))
        key = sep.join(map(str, index))
        store[f"{path}/{'c' + sep if name == 'default' else ''}{key}"] = raw


def genotypes(n: int, s: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.choice(np.array([0, 0, 1, -1, -2], dtype="i1"), size=(n, s, 2))


def decode_fixture(path: Path) -> np.ndarray:
    """A format-3 GT array of tests/data, decoded file by file with numcodecs alone."""
    meta = json.loads((path / "zarr.json").read_text())
    shape, chunks = meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"]
    codec = {"blosc": numcodecs.Blosc(), "zstd": numcodecs.Zstd()}[meta["codecs"][1]["name"]]
    dtype = np.dtype(meta["data_type"]).newbyteorder("<")  # the bytes codec's default
    out = np.empty(shape, dtype=dtype)
    for index in itertools.product(
        *(range(math.ceil(s / c)) for s, c in zip(shape, chunks, strict=True))
    ):
        raw = codec.decode((path / "c" / "/".join(map(str, index))).read_bytes())
        block = np.frombuffer(raw, dtype=dtype).reshape(chunks)
        region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(index, chunks, strict=True))
        out[region] = block[
            tuple(slice(0, len(range(s)[r])) for r, s in zip(region, shape, strict=True))
        ]
    return out


@pytest.mark.parametrize("codec", [None, "blosc", "zstd", "gzip"])
@pytest.mark.parametrize("encoding", [("default", "/"), ("default", "."), ("v2", "."), ("v2", "/")])
def test_stats_equal_the_reference_for_every_codec_and_key_encoding(
    codec: str | None, encoding: tuple[str, str]
) -> None:
    store: dict[str, bytes] = {}
    gt = genotypes(23, 7, seed=3)
    add_array(store, "2L/calldata/GT", gt, (8, 5, 2), codec=codec, encoding=encoding)
    pos = np.arange(23, dtype=">i4") * 10
    add_array(store, "2L/variants/POS", pos, (10,), codec=codec, endian="big", fill=0)
    _, group = open_store(store)
    assert group["2L/variants/POS"][:].tolist() == pos.tolist()  # big-endian bytes codec
    for semantics in ("tutorial", "sgkit"):
        result = genotype_stats(store, semantics=semantics)
        ref = naive_counts(gt, semantics)
        np.testing.assert_array_equal(result.contig("2L").variant_counts, ref.variant)
        np.testing.assert_array_equal(result.contig("2L").samples.counts, ref.sample)


@pytest.mark.parametrize("backend", ["multiprocessing", "dask"])
def test_parallel_backends_read_a_format3_store(backend: str) -> None:
    store: dict[str, bytes] = {}
    gt = genotypes(40, 6, seed=4)
    add_array(store, "X/calldata/GT", gt, (9, 4, 2), codec="zstd")
    result = genotype_stats(store, backend=backend, workers=2)
    np.testing.assert_array_equal(result.contig("X").samples.counts, naive_counts(gt).sample)


def test_the_malariagen_fixture_equals_its_chunk_files() -> None:
    for backend in ("sequential", "multiprocessing", "dask"):
        result = genotype_stats(DATA / "malariagen_v3.zarr", backend=backend, semantics="sgkit")
        assert [c.contig for c in result.contigs] == ["2L", "3R"]
        assert result.sample_names == ("AB0000", "AB0001", "AB0002", "AB0003", "AB0004")
        for contig in ("2L", "3R"):
            gt = decode_fixture(DATA / "malariagen_v3.zarr" / contig / "calldata" / "GT")
            ref = naive_counts(gt, "sgkit")
            np.testing.assert_array_equal(result.contig(contig).variant_counts, ref.variant)
            np.testing.assert_array_equal(result.contig(contig).samples.counts, ref.sample)


def test_info_says_format_3_in_text_and_json() -> None:
    code, out, err = run("info", str(DATA / "malariagen_v3.zarr"))
    assert code == 0, err
    assert out.splitlines()[0].startswith(f"Store: {DATA / 'malariagen_v3.zarr'} (")
    assert "Zarr format 3, read by zarrgeno from each node's zarr.json)" in out.splitlines()[0]
    assert "Compressor         : Zstd(level=3)" in out
    assert "Contigs: 2L 23 variants (2L/calldata/GT 0-23), 3R 17 variants" in out
    code, out, _ = run("info", "--json", str(DATA / "malariagen_v3.zarr"))
    data = json.loads(out)
    assert data["zarr_format"] == 3
    gt = next(a for a in data["arrays"] if a["path"] == "2L/calldata/GT")
    assert (gt["shape"], gt["chunks"], gt["nchunks_initialized"]) == ([23, 5, 2], [8, 3, 2], 6)
    assert gt["compressor_spec"] == "blosc:lz4:5:bitshuffle"
    assert gt["nbytes_stored"] > 0


def test_verify_reads_every_chunk_of_a_format3_store() -> None:
    code, out, err = run("verify", str(DATA / "malariagen_v3.zarr"))
    assert code == 0, err
    assert "all chunks read and decoded" in out


def test_verify_counts_the_chunks_zarr_python_3_left_out_and_names_them_when_required() -> None:
    """bio2zarr (zarr-python 3) writes no chunk equal to the fill value."""
    code, out, err = run("verify", str(DATA / "bio2zarr_v3.vcz"))
    assert code == 0, err
    assert "2 chunks not stored (fill value, as the writer intends)" in out
    code, out, err = run("verify", str(DATA / "bio2zarr_v3.vcz"), "--require-chunks")
    assert code == 4
    assert "missing: chunk call_genotype_phased/c/2/1 is missing" in out
    assert "missing: chunk variant_contig/c/0 is missing" in out
    assert "2 bad chunk(s) of 49" in err


@pytest.mark.hostile
def test_a_missing_or_corrupt_chunk_is_named_by_its_own_key(tmp_path: Path) -> None:
    copy = tmp_path / "v3.zarr"
    shutil.copytree(DATA / "malariagen_v3.zarr", copy)
    (copy / "2L/calldata/GT/c/1/0/0").unlink()
    code, _, err = run("stats", str(copy), "--contig", "2L")
    assert code == 0, err  # zarr-python 3, the only writer of format 3, leaves out fill chunks
    code, _, err = run("stats", str(copy), "--contig", "2L", "--require-chunks")
    assert code != 0
    assert "chunk 2L/calldata/GT/c/1/0/0 is missing" in err
    raw = (copy / "3R/calldata/GT/c/0/1/0").read_bytes()
    (copy / "3R/calldata/GT/c/0/1/0").write_bytes(raw[:20])
    code, _, err = run("stats", str(copy), "--contig", "3R")
    assert code != 0 and "chunk 3R/calldata/GT/c/0/1/0: cannot decode" in err
    assert "Traceback" not in err


def _meta(**changes: Any) -> dict[str, bytes]:
    store: dict[str, bytes] = {}
    add_array(store, "2L/calldata/GT", genotypes(4, 3, 1), (2, 3, 2))
    meta = json.loads(store["2L/calldata/GT/zarr.json"])
    meta.update(changes)
    store["2L/calldata/GT/zarr.json"] = _doc({k: v for k, v in meta.items() if v is not None})
    return store


HOSTILE = [
    ({"codecs": [{"name": "transpose", "configuration": {"order": [2, 1, 0]}}]}, "transpose"),
    ({"codecs": [{"name": "bytes"}, {"name": "crc32c"}]}, "codec crc32c is not supported"),
    ({"codecs": [{"name": "bytes"}, BLOSC, CODECS["zstd"]]}, "more than one compression"),
    ({"codecs": []}, "codecs must be a non-empty list"),
    ({"data_type": "r16"}, "data_type 'r16' is not supported"),
    ({"data_type": "string"}, "needs codec vlen-utf8"),
    ({"chunk_grid": {"name": "rectilinear"}}, "chunk_grid 'rectilinear'"),
    ({"chunk_key_encoding": {"name": "fancy"}}, "chunk_key_encoding 'fancy'"),
    ({"storage_transformers": [{"name": "x"}]}, "storage_transformers are not supported"),
    ({"fill_value": "zero"}, "fill_value 'zero' does not fit data_type int8"),
    ({"shape": [4, 3]}, "do not match"),
    ({"shape": [4, -3, 2]}, "shape"),
    ({"shape": [2**40, 2**20, 2]}, "implausibly large"),
    ({"chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2**30, 3, 2]}}}, "2 GiB"),
    ({"my_extension": {"a": 1}}, "extension 'my_extension' is not supported"),
    ({"node_type": "link"}, "node_type 'link'"),
    ({"zarr_format": 2}, "not Zarr format 3"),
    (
        {"codecs": [{"name": "bytes"}, {"name": "blosc", "configuration": {"cname": "x"}}]},
        "cname 'x'",
    ),
]


@pytest.mark.hostile
@pytest.mark.parametrize(("changes", "message"), HOSTILE)
def test_metadata_without_a_format2_equivalent_is_refused_by_name(
    changes: dict[str, Any], message: str
) -> None:
    # Refused when opened, or when a command needs the array (the others still open).
    with pytest.raises(BadDataError, match="2L/calldata/GT") as info:
        plan_stats(_meta(**changes))
    assert message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.hostile
def test_an_ignorable_extension_is_ignored_and_bad_json_refused() -> None:
    store = _meta(my_extension={"must_understand": False, "x": 1})
    assert [g.contig for g in find_genotypes(open_store(store)[1])] == ["2L"]
    store["2L/calldata/GT/zarr.json"] = b"{not json"
    with pytest.raises(BadDataError, match="is not valid JSON"):
        open_store(store)


@pytest.mark.hostile
def test_a_root_array_is_not_a_genotype_store() -> None:
    store = {"zarr.json": _meta()["2L/calldata/GT/zarr.json"]}
    with pytest.raises(BadDataError, match=r"root zarr\.json is not a group"):
        open_store(store)


def test_the_format2_view_is_read_only_and_lists_like_zarr() -> None:
    store: dict[str, bytes] = {}
    add_array(store, "2L/calldata/GT", genotypes(5, 3, 2), (2, 2, 2), encoding=("default", "."))
    assert is_zarr3(store)
    view = V3Store(store, "mem")
    assert view.listdir("") == [".zattrs", ".zgroup", "2L"]
    assert view.listdir("2L/calldata/GT")[:2] == [".zarray", ".zattrs"]
    assert len(view.listdir("2L/calldata/GT")) == 2 + 3 * 2
    assert view["2L/calldata/GT/2.1.0"] == store["2L/calldata/GT/c.2.1.0"]
    assert ".zmetadata" not in view and "2L/.zarray" not in view
    with pytest.raises(UsageError, match="read-only"):
        view["2L/calldata/GT/0.0.0"] = b""
    before = dict(store)
    genotype_stats(store)
    assert store == before


def test_format3_over_http_reads_through_the_same_view() -> None:
    with StoreServer(DATA) as server:
        result = genotype_stats(server.url("malariagen_v3.zarr"), contigs=["3R"])
        remote = inspect_store(server.url("malariagen_v3.zarr"))
    local = inspect_store(DATA / "malariagen_v3.zarr")
    assert remote.zarr_format == 3
    assert [(a.path, a.nbytes_stored, a.nchunks_initialized) for a in remote.arrays] == [
        (a.path, a.nbytes_stored, a.nchunks_initialized) for a in local.arrays
    ]
    gt = decode_fixture(DATA / "malariagen_v3.zarr" / "3R" / "calldata" / "GT")
    np.testing.assert_array_equal(result.contig("3R").samples.counts, naive_counts(gt).sample)


#: The sample names of the ``|S24`` fixtures (tests/data/make_fixtures.py s24): the last one
#: is exactly 24 bytes, so ``null_terminated_bytes`` stores it with no terminator.
S24_NAMES = (*(f"AR{i:04d}-C" for i in range(5)), "AR0005-CW-LONGEST-NAME24")


@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing", "dask"])
def test_s24_sample_names_of_a_zarr_python_3_store_are_read(backend: str) -> None:
    """zarr-python 3 stores numpy ``|S24`` as ``null_terminated_bytes`` (MalariaGEN's
    sample names); the store opens and stats name each sample. X is int16."""
    path = DATA / "malariagen_v3_s24.zarr"
    result = genotype_stats(path, backend=backend, workers=2 if backend != "sequential" else None)
    assert result.sample_names == S24_NAMES
    assert [c.contig for c in result.contigs] == ["2L", "3R", "X"]
    for contig in ("2L", "3R", "X"):
        gt = decode_fixture(path / contig / "calldata" / "GT")
        assert gt.dtype == np.dtype("i2" if contig == "X" else "i1")
        ref = naive_counts(gt)
        np.testing.assert_array_equal(result.contig(contig).variant_counts, ref.variant)
        np.testing.assert_array_equal(result.contig(contig).samples.counts, ref.sample)


def test_info_and_stats_show_s24_samples_of_a_format3_store() -> None:
    path = str(DATA / "malariagen_v3_s24.zarr")
    code, out, err = run("info", "--json", path)
    assert code == 0, err
    samples = next(a for a in json.loads(out)["arrays"] if a["path"] == "samples")
    assert (samples["dtype"], samples["shape"]) == ("|S24", [6])
    code, out, err = run("stats", path, "--per-sample", "-b", "sequential")
    assert code == 0, err
    assert all(f"\n{name} " in out for name in S24_NAMES)
    code, out, err = run("verify", path)
    assert code == 0 and "all chunks read and decoded" in out, err


def _samples_store(data_type: Any, fill: Any = "", names: tuple[bytes, ...] = ()) -> dict:
    """A format-3 store: ``samples`` with ``data_type`` (raw bytes codec), and a GT array."""
    store: dict[str, bytes] = {}
    add_array(store, "2L/calldata/GT", genotypes(4, len(names) or 3, 1), (2, 3, 2))
    store["samples/zarr.json"] = _doc(
        {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [len(names) or 3],
            "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
            "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
            "fill_value": fill,
            "codecs": [{"name": "bytes"}],
            "attributes": {},
        }
    )
    data = np.array(names, dtype="|S8")
    for i in range(0, len(names), 2):
        block = np.zeros(2, dtype="|S8")
        block[: len(data[i : i + 2])] = data[i : i + 2]
        store[f"samples/c/{i // 2}"] = block.tobytes()
    return store


def test_null_terminated_bytes_map_to_their_format2_dtype_and_fill() -> None:
    """``|S8`` with a base64 fill (``TkE=`` is ``NA``), names of 1 to 8 bytes, no compressor."""
    s8 = {"name": "null_terminated_bytes", "configuration": {"length_bytes": 8}}
    store = _samples_store(s8, "TkE=", (b"A", b"BB-12345", b"C"))
    zarray = json.loads(V3Store(store, "mem")["samples/.zarray"])
    assert (zarray["dtype"], zarray["fill_value"]) == ("|S8", "TkE=")
    assert open_store(store)[1]["samples"].fill_value == b"NA"
    result = genotype_stats(store, backend="sequential")
    assert result.sample_names == ("A", "BB-12345", "C")


NULL_TERMINATED = "null_terminated_bytes"
HOSTILE_BYTES = [
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 0}}, "", "positive integer"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": -1}}, "", "positive integer"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": "8"}}, "", "positive integer"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": True}}, "", "positive integer"),
    ({"name": NULL_TERMINATED}, "", "positive integer"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 8, "x": 1}}, "", "positive"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 2**30}}, "", "2 GiB"),
    ({"name": "raw_bytes", "configuration": {"length_bytes": 8}}, "", "raw_bytes"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 8}}, "not base64!", "base64"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 2}}, "TkFO", "at most 2 bytes"),
    ({"name": NULL_TERMINATED, "configuration": {"length_bytes": 8}}, 0, "base64"),
]


@pytest.mark.hostile
@pytest.mark.parametrize(("data_type", "fill", "message"), HOSTILE_BYTES)
def test_bad_null_terminated_bytes_are_refused_by_name(
    data_type: Any, fill: Any, message: str
) -> None:
    # Refused when opened, or when a command needs the array (stats needs sample names).
    with pytest.raises(BadDataError, match="samples") as info:
        plan_stats(_samples_store(data_type, fill))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_a_format2_store_written_by_zarr_python_3_agrees_with_its_consolidated_copy(
    tmp_path: Path,
) -> None:
    """zarr-python 3 adds ``consolidated_metadata`` to each subgroup's ``.zmetadata`` entry;
    zarr 2.18 reads only ``zarr_format`` of a ``.zgroup``, so the copies agree."""
    source = DATA / "malariagen_v2_zarr3.zarr"
    entries = json.loads((source / ".zmetadata").read_text())["metadata"]
    assert "consolidated_metadata" in entries["2L/calldata/.zgroup"]  # what the writer does
    code, out, err = run("info", str(source), "--summary")
    assert code == 0, err
    assert "consolidated metadata, agrees with the per-array metadata" in out.splitlines()[0]
    result = genotype_stats(source, backend="sequential")
    assert result.sample_names == S24_NAMES
    copy = tmp_path / "copy.zarr"
    shutil.copytree(source, copy)
    before = (copy / ".zmetadata").read_bytes()
    code, out, err = run("consolidate", str(copy))
    assert code == 0 and "up to date" in out, err
    assert (copy / ".zmetadata").read_bytes() == before
    # a key zarr ignores is no disagreement; one it reads still is
    gt_meta = copy / "2L" / "calldata" / "GT" / ".zarray"
    gt_meta.write_text(json.dumps({**json.loads(gt_meta.read_text()), "written_by": "x"}))
    open_store(copy)
    gt_meta.write_text(json.dumps({**json.loads(gt_meta.read_text()), "chunks": [4, 4, 2]}))
    with pytest.raises(BadDataError, match="consolidated metadata disagrees"):
        open_store(copy)
    code, _, err = run("info", str(copy))
    assert code == 4 and "2L/calldata/GT: consolidated metadata disagrees" in err


@pytest.mark.hostile
@pytest.mark.parametrize("case", [0, 8, 9])
def test_bad_null_terminated_bytes_are_one_error_line_from_the_cli(
    tmp_path: Path, case: int
) -> None:
    data_type, fill, message = HOSTILE_BYTES[case]
    path = tmp_path / "bad.zarr"
    for key, value in _samples_store(data_type, fill).items():
        (path / key).parent.mkdir(parents=True, exist_ok=True)
        (path / key).write_bytes(value)
    tree = Tree(tmp_path)
    for command in ("info", "stats"):
        assert_refused(run_cli(command, path), 4, says=(f"{path}/samples", message))
    tree.assert_unchanged()
