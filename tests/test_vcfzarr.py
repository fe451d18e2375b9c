"""Chunks by dimension name (zarrgeno.chunkgrid) and the VCF Zarr rules (zarrgeno.vcfzarr):
one spec for a whole store, refusals of what would leave it invalid, bio2zarr's region index
rebuilt for new variants chunks; checked live with bio2zarr and vcztools (tests/zarr3venv.py)
on a store zarrgeno writes in Zarr format 3, rechunked and sharded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from zarr3store import write_array, write_group
from zarr3venv import needs_zarr3, run_json, run_python, run_tool, vcztools_views

from zarrgeno.chunkgrid import chunks_for, parse_chunks, parse_named, shards_for
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.io.store import open_store
from zarrgeno.vcfzarr import ArrayInfo, region_index, vcf_zarr_chunks, vcf_zarr_shards

DATA = Path(__file__).parent / "data"
GT_DIMS = ("variants", "samples", "ploidy")

# -- chunks and shards by dimension name


def test_parse_named() -> None:
    assert parse_named("variants=20000,samples=81") == {"variants": 20000, "samples": 81}
    assert parse_named(" variants = -1 ") == {"variants": -1}
    assert parse_named("20000,81,2") is None
    for spec, message in [
        ("variants=100,81", r"'81' is not NAME=LENGTH"),
        ("=5", r"'=5' is not NAME=LENGTH"),
        ("variants=1,variants=2", "dimension 'variants' is given twice"),
        ("variants=lots", "'lots' is not an integer"),
        ("variants=0", "variants=0 is not allowed"),
        ("samples=-2", "samples=-2 is not allowed"),
    ]:
        with pytest.raises(UsageError, match=message):
            parse_named(spec)


def test_chunks_for_one_array() -> None:
    shape, chunks = (48525747, 81, 2), (300000, 50, 2)
    assert chunks_for("variants=20000,samples=81", shape, chunks, GT_DIMS) == (20000, 81, 2)
    assert chunks_for("samples=1000", shape, chunks, GT_DIMS) == (300000, 81, 2)  # clamped
    assert chunks_for("100000,81,2", shape, chunks, None) == (100000, 81, 2)  # positional
    with pytest.raises(UsageError, match=r"^GT has no dimension 'sample' \(its dimensions: "):
        chunks_for("sample=10", shape, chunks, GT_DIMS, where="GT")
    with pytest.raises(UsageError, match=r"^GT has no dimension names .*give its chunks by"):
        chunks_for("variants=10", shape, chunks, None, where="GT")


@st.composite
def named_cases(draw: st.DrawFn) -> tuple[list[int], list[int], list[str], dict[str, int]]:
    ndim = draw(st.integers(1, 4))
    shape = [draw(st.integers(0, 200)) for _ in range(ndim)]
    chunks = [draw(st.integers(1, 60)) for _ in range(ndim)]
    dims = [f"d{i}" for i in range(ndim)]
    picked = draw(st.lists(st.sampled_from(dims), unique=True))
    named = {d: draw(st.sampled_from([-1, *range(1, 250)])) for d in picked}
    return shape, chunks, dims, named


@given(named_cases())
def test_named_spec_is_the_positional_spec_it_stands_for(
    case: tuple[list[int], list[int], list[str], dict[str, int]],
) -> None:
    shape, chunks, dims, named = case
    spec = ",".join(f"{d}={n}" for d, n in named.items()) or ",".join(map(str, chunks))
    positional = [named.get(d, c) for d, c in zip(dims, chunks, strict=True)]
    assert chunks_for(spec, shape, chunks, dims) == parse_chunks(positional, shape)


@given(named_cases())
def test_shards_are_whole_inner_chunks(
    case: tuple[list[int], list[int], list[str], dict[str, int]],
) -> None:
    shape, chunks, dims, named = case
    named = {d: (n if n == -1 else n * chunks[dims.index(d)]) for d, n in named.items()}
    spec = ",".join(f"{d}={n}" for d, n in named.items()) or ",".join(map(str, chunks))
    shards = shards_for(spec, shape, chunks, dims)
    for shard, chunk, length, dim in zip(shards, chunks, shape, dims, strict=True):
        assert shard % chunk == 0 and shard >= chunk
        assert shard <= max(chunk, -(-length // chunk) * chunk)  # never past the axis
        if dim not in named:
            assert shard == chunk


def test_shards_refused_when_not_whole_inner_chunks() -> None:
    with pytest.raises(UsageError, match=r"^GT: shard length 50000 along variants is not a mul"):
        shards_for("variants=50000", (10**6, 81, 2), (20000, 81, 2), GT_DIMS, where="GT")
    with pytest.raises(UsageError, match=r"shard length 30 along axis 1 is not a multiple"):
        shards_for("60000,30,2", (10**6, 81, 2), (20000, 20, 2), None, where="GT")
    assert shards_for("-1,-1,-1", (50, 81, 2), (20, 20, 2), None) == (60, 100, 2)


# -- the VCF Zarr rule for a whole store


def _store_arrays(path: Path) -> tuple[Any, list[ArrayInfo]]:
    _, group = open_store(str(path))
    infos = [
        ArrayInfo(name, a.shape, a.chunks, tuple(a.attrs.get("_ARRAY_DIMENSIONS") or ()) or None)
        for name, a in group.arrays()
    ]
    return group, infos


def test_bio2zarr_store_rechunked_by_name() -> None:
    _, arrays = _store_arrays(DATA / "bio2zarr_v3.vcz")
    result = vcf_zarr_chunks(arrays, "variants=3,samples=5")
    assert result.variants_chunk == 3 and result.rebuild_region_index
    assert "region_index" not in result.chunks
    for info in arrays:
        if info.name == "region_index":
            continue
        dims = info.dimensions or ()
        for dim, length, chunk in zip(dims, info.shape, result.chunks[info.name], strict=True):
            if dim == "variants":
                assert chunk == 3
            elif dim == "samples":
                assert chunk == 5
            else:
                assert chunk == min(info.chunks[dims.index(dim)], length)
    kept = vcf_zarr_chunks(arrays, "samples=-1")
    assert kept.variants_chunk == 4 and not kept.rebuild_region_index
    assert kept.chunks["region_index"] == (4, 6) and kept.chunks["sample_id"] == (6,)


def _arrays(**chunks: tuple[int, ...]) -> list[ArrayInfo]:
    base = {
        "call_genotype": ((100, 6, 2), GT_DIMS),
        "call_genotype_phased": ((100, 6), ("variants", "samples")),
        "variant_position": ((100,), ("variants",)),
        "sample_id": ((6,), ("samples",)),
    }
    return [
        ArrayInfo(name, shape, chunks.get(name, tuple(min(10, n) for n in shape)), dims)
        for name, (shape, dims) in base.items()
    ]


@pytest.mark.parametrize(
    ("arrays", "spec", "error", "message"),
    [
        (_arrays(), "variants=10,80", UsageError, r"'80' is not NAME=LENGTH"),
        (_arrays(), "50,6,2", UsageError, r"give a VCF Zarr store's --chunks by dimension name"),
        (_arrays(), "sample=3", UsageError, r"no array of the store has dimension 'sample'"),
        (
            _arrays(variant_position=(25,)),
            "samples=3",
            UsageError,
            r"would chunk variants by 10 in call_genotype and by 25 in variant_position, .*"
            r"give variants=N in --chunks",
        ),
        (
            _arrays(sample_id=(4,)),
            "variants=50",
            UsageError,
            r"would chunk samples by 6 in call_genotype and by 4 in sample_id",
        ),
        (
            [*_arrays(), ArrayInfo("call_DP", (100, 7), (10, 7), ("variants", "samples"))],
            "variants=50",
            BadDataError,
            r"call_genotype and call_DP disagree on the length of dimension 'samples' \(6 and 7\)",
        ),
        (
            [*_arrays(), ArrayInfo("call_DP", (100, 6), (10, 6), None)],
            "variants=50",
            BadDataError,
            r"call_DP has no dimension names \(_ARRAY_DIMENSIONS\)",
        ),
        (
            [
                *_arrays(),
                ArrayInfo(
                    "region_index", (10, 6), (10, 6), ("region_index_values", "region_index_fields")
                ),
            ],
            "variants=50",
            BadDataError,
            r"region_index cannot be rebuilt .* without variant_contig, variant_length",
        ),
    ],
)
def test_invalid_results_are_refused(
    arrays: list[ArrayInfo], spec: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        vcf_zarr_chunks(arrays, spec)


def test_inconsistent_source_is_mended_by_naming_the_dimension() -> None:
    arrays = _arrays(variant_position=(25,), sample_id=(4,))
    result = vcf_zarr_chunks(arrays, "variants=25,samples=-1")
    assert result.chunks == {
        "call_genotype": (25, 6, 2),
        "call_genotype_phased": (25, 6),
        "variant_position": (25,),
        "sample_id": (6,),
    }
    assert vcf_zarr_shards(arrays, result.chunks, "variants=100") == {
        "call_genotype": (100, 6, 2),
        "call_genotype_phased": (100, 6),
        "variant_position": (100,),
        "sample_id": (6,),
    }
    with pytest.raises(UsageError, match=r"--shards: no array of the store has dimension 'x'"):
        vcf_zarr_shards(arrays, result.chunks, "x=100")


# -- bio2zarr's region index


def bio2zarr_region_index(
    contig: np.ndarray, position: np.ndarray, length: np.ndarray, chunk: int
) -> np.ndarray:
    """bio2zarr 0.2.1's VcfZarrIndexer.create_index loop, on numpy blocks of ``chunk`` rows."""
    index = []
    for v_chunk in range(-(-len(position) // chunk)):
        block = slice(v_chunk * chunk, (v_chunk + 1) * chunk)
        c, p = contig[block], position[block]
        e = p + length[block] - 1
        d = np.diff(c, append=-1)
        c_start_idx = 0
        for c_end_idx in np.nonzero(d)[0]:
            index.append(
                (
                    v_chunk,
                    c[c_start_idx],
                    p[c_start_idx],
                    p[c_end_idx],
                    np.max(e[c_start_idx : c_end_idx + 1]),
                    c_end_idx - c_start_idx + 1,
                )
            )
            c_start_idx = c_end_idx + 1
    return np.array(index, dtype=position.dtype).reshape(-1, 6)


@settings(deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.integers(1, 10**6), st.integers(1, 50)), max_size=60),
    st.integers(1, 20),
    st.sampled_from(["i4", "i8"]),
)
def test_region_index_is_bio2zarrs(
    rows: list[tuple[int, int, int]], chunk: int, dtype: str
) -> None:
    contig = np.array([r[0] for r in rows], dtype="i1")
    position = np.array([r[1] for r in rows], dtype=dtype)
    length = np.array([r[2] for r in rows], dtype=dtype)
    ours = region_index(contig, position, length, chunk)
    assert ours.dtype == position.dtype
    np.testing.assert_array_equal(ours, bio2zarr_region_index(contig, position, length, chunk))


def test_region_index_refusals() -> None:
    with pytest.raises(BadDataError, match=r"variant_contig holds -1, not a contig"):
        region_index(np.array([0, -1]), np.array([1, 2]), np.array([1, 1]), 5)
    with pytest.raises(BadDataError, match=r"have 2, 3 and 2 rows"):
        region_index(np.array([0, 0]), np.array([1, 2, 3]), np.array([1, 1]), 5)


def test_region_index_equals_the_one_bio2zarr_wrote() -> None:
    group, _ = _store_arrays(DATA / "bio2zarr_v3.vcz")
    columns = [group[n][:] for n in ("variant_contig", "variant_position", "variant_length")]
    rebuilt = region_index(*columns, group["variant_position"].chunks[0])
    np.testing.assert_array_equal(rebuilt, group["region_index"][:])


BIO2ZARR_INDEX = """
import sys, json, numpy as np, zarr
from bio2zarr.vcz import VcfZarrIndexer
source = zarr.open_group(sys.argv[1], mode="r")
out = {}
for chunk in range(1, 13):
    path = f"{sys.argv[2]}/{chunk}"
    root = zarr.open_group(path, mode="w", zarr_format=3)
    for name in ("variant_contig", "variant_position", "variant_length"):
        root.create_array(name, data=source[name][:], chunks=(chunk,))
    VcfZarrIndexer(path).create_index()
    out[chunk] = zarr.open_group(path, mode="r")["region_index"][:].tolist()
print(json.dumps(out))
"""


@needs_zarr3
def test_region_index_equals_bio2zarrs_own(tmp_path: Path) -> None:
    theirs = run_json(BIO2ZARR_INDEX, DATA / "bio2zarr_v3.vcz", tmp_path)
    group, _ = _store_arrays(DATA / "bio2zarr_v3.vcz")
    columns = [group[n][:] for n in ("variant_contig", "variant_position", "variant_length")]
    for chunk, rows in theirs.items():
        assert region_index(*columns, int(chunk)).tolist() == rows, chunk


# -- live: zarrgeno writes a VCF Zarr store in format 3, rechunked and sharded; vcztools reads it


def write_vcf_zarr(source: Path, target: Path, chunks: str, shards: str | None) -> dict[str, Any]:
    """Every array of ``source`` written to ``target`` by zarrgeno's pure modules with the new
    chunks (and shards), the region index rebuilt; returns the plan's chunks and shards."""
    group, arrays = _store_arrays(source)
    plan = vcf_zarr_chunks(arrays, chunks)
    sharding = vcf_zarr_shards(arrays, plan.chunks, shards) if shards else {}
    write_group(target, "", dict(group.attrs))
    for info in arrays:
        source_array = group[info.name]
        attrs = dict(source_array.attrs)
        if info.name == "region_index" and plan.rebuild_region_index:
            columns = [
                group[n][:] for n in ("variant_contig", "variant_position", "variant_length")
            ]
            assert plan.variants_chunk is not None
            data = region_index(*columns, plan.variants_chunk)
            write_array(
                target, info.name, data, data.shape, attributes=attrs, fill_value=0,
                compressor=numcodecs.Blosc(cname="zstd", clevel=9, shuffle=0),
            )  # fmt: skip
            continue
        write_array(
            target,
            info.name,
            source_array[:],
            plan.chunks[info.name],
            compressor=source_array.compressor,
            fill_value=source_array.fill_value,
            attributes=attrs,
            shards=sharding.get(info.name),
        )
    return {"chunks": plan.chunks, "shards": sharding}


VIEWS = [[], ["-r", "X:1-20"], ["-r", "2L:35-60"], ["-r", "2L:1-1000,X:30-40"], ["-s", "S2,S5"]]


@needs_zarr3
@pytest.mark.parametrize(
    ("chunks", "shards"),
    [("variants=3,samples=4", "variants=3,samples=4"), ("variants=1,samples=1", None),
     ("variants=5", "variants=5")],
)  # fmt: skip
def test_vcztools_reads_the_store_zarrgeno_wrote(
    tmp_path: Path, chunks: str, shards: str | None
) -> None:
    source, target = DATA / "bio2zarr_v3.vcz", tmp_path / "out.vcz"
    plan = write_vcf_zarr(source, target, chunks, shards)
    outputs = vcztools_views(*([*v, source] for v in VIEWS), *([*v, target] for v in VIEWS))
    assert outputs[len(VIEWS) :] == outputs[: len(VIEWS)]
    assert outputs[0].count("\n2L\t") == 7 and outputs[1].count("\nX\t") == 2
    stored = json.loads((target / "call_genotype/zarr.json").read_text())
    grid = stored["chunk_grid"]["configuration"]["chunk_shape"]
    gt_shards = plan["shards"].get("call_genotype")
    assert tuple(grid) == (gt_shards or plan["chunks"]["call_genotype"])
    assert (stored["codecs"][0]["name"] == "sharding_indexed") == bool(shards)


ZARR_PYTHON_SHARDED = """
import sys, zarr
source = zarr.open_group(sys.argv[1], mode="r")
target = zarr.open_group(sys.argv[2], mode="w", zarr_format=3, attributes=dict(source.attrs))
for name, arr in source.arrays():
    dims = arr.metadata.dimension_names
    shards = (8, *arr.chunks[1:]) if dims and dims[0] == "variants" else None
    target.create_array(name, data=arr[:], chunks=arr.chunks, shards=shards,
                        dimension_names=dims, attributes=dict(arr.attrs))
"""


@needs_zarr3
def test_vcztools_cannot_read_shards_of_several_variants_chunks(tmp_path: Path) -> None:
    """vcztools 0.2.0 reads ``Array.blocks[i]`` with ``i`` counted in inner chunks
    (``Array.chunks``), but zarr-python 3.1 counts ``blocks`` in shards: a VCF Zarr store
    whose shards hold several variants (or samples) chunks fails, whoever wrote it."""
    source = DATA / "bio2zarr_v3.vcz"
    write_vcf_zarr(source, tmp_path / "ours.vcz", "variants=4", "variants=8")
    run_python(ZARR_PYTHON_SHARDED, source, tmp_path / "theirs.vcz")
    for name in ("ours.vcz", "theirs.vcz"):
        result = run_tool("vcztools", "view", str(tmp_path / name))
        assert result.returncode != 0, name
        assert "BoundsCheckError: index out of bounds" in result.stderr, name


@needs_zarr3
def test_vcztools_refuses_a_store_the_rule_would_refuse(tmp_path: Path) -> None:
    """Why the rule exists: call_* arrays with two variants chunk lengths break vcztools."""
    source, target = DATA / "bio2zarr_v3.vcz", tmp_path / "bad.vcz"
    shutil.copytree(source, target)
    group, arrays = _store_arrays(source)
    mask = group["call_genotype_mask"]
    shutil.rmtree(target / "call_genotype_mask")
    write_array(
        target, "call_genotype_mask", mask[:], (2, 4, 2), compressor=mask.compressor,
        fill_value=False, attributes=dict(mask.attrs),
    )  # fmt: skip
    result = run_tool("vcztools", "view", str(target))
    assert result.returncode != 0
    assert "call_* fields must share a single variants chunk size" in result.stderr
    changed = [a if a.name != "call_genotype_mask" else ArrayInfo(a.name, a.shape, (2, 4, 2),
               a.dimensions) for a in arrays]  # fmt: skip
    with pytest.raises(UsageError, match="would chunk variants by 4 in call_genotype and by 2"):
        vcf_zarr_chunks(changed, "samples=-1")
