"""Empty stores (no variant, or no sample) open in every command and count as empty.

bio2zarr writes a VCF without records with ``region_index`` chunked ``[0, 6]`` (zarr-python
3 allows a chunk length of 0 along an axis of length 0) and ``call_genotype`` of ploidy 1,
as it does for a VCF without samples: no call tells it the ploidy. The fixtures in
``tests/data`` were made by bio2zarr itself (``make_fixtures.py``).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hostile import Tree, run_cli
from typer.testing import CliRunner

from zarrgeno.cli import app
from zarrgeno.io.store import open_store
from zarrgeno.io.validation import array_meta_problem

DATA = Path(__file__).parent / "data"
NO_VARIANTS = ("bio2zarr_no_variants.vcz", "bio2zarr_no_variants_v3.vcz")


def run(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result


def malariagen_empty(path: Path, n_variants: int, n_samples: int) -> Path:
    """The MalariaGEN layout with no variant or no sample, as zarr 2.18 writes it."""
    root = zarr.open_group(str(path), mode="w")
    for contig in ("2L", "X"):
        root.create_dataset(
            f"{contig}/calldata/GT", shape=(n_variants, n_samples, 2), chunks=(4, 3, 2), dtype="i1"
        )
        root.create_dataset(f"{contig}/variants/POS", shape=(n_variants,), chunks=(4,), dtype="i4")
    root.create_dataset("samples", data=np.array([f"S{j}" for j in range(n_samples)], dtype="S4"))
    return path


def test_the_fixtures_are_what_bio2zarr_writes_for_empty_vcfs() -> None:
    for name in NO_VARIANTS:
        _, root = open_store(DATA / name)  # zarr 2.18 reads no format 3; zarrgeno does
        assert root["call_genotype"].shape == (0, 3, 1)
    meta = json.loads((DATA / NO_VARIANTS[0] / "region_index" / ".zarray").read_text())
    assert (meta["shape"], meta["chunks"]) == ([0, 6], [0, 6])
    root = zarr.open_group(str(DATA / "bio2zarr_no_samples.vcz"), mode="r")
    assert root["call_genotype"].shape == (3, 0, 1)


def test_a_chunk_of_0_is_allowed_only_along_an_empty_axis() -> None:
    meta = {"zarr_format": 2, "dtype": "|i1", "compressor": None, "filters": None}
    assert array_meta_problem({**meta, "shape": [0, 6], "chunks": [0, 6]}) is None
    problem = array_meta_problem({**meta, "shape": [5, 6], "chunks": [0, 6]})
    assert problem == "chunks [0, 6] must be positive integers (0 only where shape [5, 6] is 0)"
    assert array_meta_problem({**meta, "shape": [0, 6], "chunks": [-1, 6]}) is not None


def _stats(store: Path) -> dict[str, Any]:
    return json.loads(run("stats", str(store), "--json", "--no-progress").stdout)


@pytest.mark.parametrize("name", NO_VARIANTS)
def test_a_store_without_variants_counts_as_empty(name: str) -> None:
    store = DATA / name
    text = run("info", str(store)).stdout
    assert "region_index (0, 6) int8" in text and "0x6" in text
    assert json.loads(run("info", str(store), "--json").stdout)["contigs"] == [
        {"contig": "all", "array": "call_genotype", "start": 0, "stop": 0, "n_variants": 0}
    ]
    doc = _stats(store)
    [contig] = doc["contigs"]
    assert (contig["contig"], contig["total_pos"], contig["n_calls"]) == ("all", 0, 0)
    assert [s["sample"] for s in contig["samples"]] == ["S1", "S2", "S3"]
    assert all(s["n_missing"] == s["n_het"] == 0 for s in contig["samples"])
    last = run("stats", str(store)).stdout.splitlines()[-1]
    assert last.split() == ["all", "0", "0", "0", "0", "0", "0", "n/a", "n/a"]
    assert "all chunks read and decoded" in run("verify", str(store)).stdout


def test_a_store_without_samples_counts_its_variants() -> None:
    doc = _stats(DATA / "bio2zarr_no_samples.vcz")
    assert [(c["contig"], c["total_pos"], c["n_calls"]) for c in doc["contigs"]] == [
        ("2L", 2, 0),
        ("X", 1, 0),
    ]
    assert doc["total"]["samples"] == [] and doc["total"]["n_missing"] == 0
    region = json.loads(
        run("stats", str(DATA / "bio2zarr_no_samples.vcz"), "--json", "--region", "2L:15-25").stdout
    )
    assert region["contigs"][0]["total_pos"] == 1


@pytest.mark.parametrize("shape", [(0, 3), (5, 0)])
def test_an_empty_malariagen_store_counts_as_empty(shape: tuple[int, int], tmp_path: Path) -> None:
    store = malariagen_empty(tmp_path / "empty.zarr", *shape)
    doc = _stats(store)
    assert [(c["contig"], c["total_pos"], c["n_calls"]) for c in doc["contigs"]] == [
        ("2L", shape[0], 0),
        ("X", shape[0], 0),
    ]


@pytest.mark.parametrize("name", [*NO_VARIANTS, "bio2zarr_no_samples.vcz"])
def test_every_command_opens_an_empty_store(name: str, tmp_path: Path) -> None:
    source = tmp_path / name
    shutil.copytree(DATA / name, source)
    tree = Tree(source)
    rechunked, recompressed = tmp_path / "rechunked.zarr", tmp_path / "recompressed.zarr"
    runs = [
        ("info", source, "--summary"),
        ("stats", source, "--semantics", "sgkit"),
        ("verify", source),
    ]
    if not name.endswith("_v3.vcz"):  # copies are written from Zarr format 2 stores
        runs += [
            ("rechunk", source, rechunked, "--chunks", "2,2,1", "--no-progress"),
            ("recompress", source, recompressed, "--compressor", "zstd", "--no-progress"),
            ("verify", source, rechunked),
            ("verify", source, recompressed),
            ("consolidate", recompressed),
            ("info", recompressed),
        ]
    for args in runs:
        result = run_cli(*args)
        assert result.code == 0 and "Traceback" not in result.err, result
    codecs = run_cli("codecs", source)
    assert (
        codecs.code == 4
        and codecs.err == "Error: call_genotype is empty; there is nothing to measure\n"
    )
    tree.assert_unchanged()


def test_download_mirrors_an_empty_store(tmp_path: Path) -> None:
    from httpserver import StoreServer
    from test_download import FAST

    from zarrgeno.download.fetch import download

    (tmp_path / "srv").mkdir()
    shutil.copytree(DATA / NO_VARIANTS[0], tmp_path / "srv" / "empty.vcz")
    dest = tmp_path / "mirror.vcz"
    with StoreServer(tmp_path / "srv") as server:
        download(server.url("empty.vcz"), dest, options=FAST)
    assert _stats(dest)["contigs"][0]["total_pos"] == 0
