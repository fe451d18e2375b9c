"""Opening stores read-only and discovering genotype arrays."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr

from conftest import build_store
from zarrgeno.errors import BadDataError, MissingInputError
from zarrgeno.io.store import (
    DEFAULT_STORE,
    StoreRef,
    default_store,
    find_genotypes,
    open_store,
    sample_names,
    select_genotypes,
)


def test_memory_store_layout(memory_store) -> None:
    store, written = memory_store
    ref, group = open_store(store)
    found = find_genotypes(group)
    assert [(g.contig, g.path, g.start, g.stop) for g in found] == [
        ("2L", "2L/calldata/GT", 0, 1000),
        ("X", "X/calldata/GT", 0, 450),
    ]
    assert found[0].chunks == (300, 5, 2) and found[0].n_samples == 7
    assert sample_names(group, 7)[:2] == ["S000", "S001"]
    np.testing.assert_array_equal(group["2L/calldata/GT"][:], written["2L"])
    assert ref.mapping is store


def test_directory_store_is_read_only_and_picklable(dir_store) -> None:
    path, _ = dir_store
    before = sorted(p.relative_to(path) for p in path.rglob("*"))
    ref, group = open_store(str(path))
    assert ref.location == str(path.absolute())
    with pytest.raises(zarr.errors.ReadOnlyError):
        group["2L/calldata/GT"][0, 0, 0] = 1
    clone = pickle.loads(pickle.dumps(ref))
    assert clone == ref and [g.contig for g in find_genotypes(clone.open())] == ["2L", "X"]
    assert sorted(p.relative_to(path) for p in path.rglob("*")) == before


def test_consolidated_and_zip(dir_store, tmp_path: Path) -> None:
    path, written = dir_store
    zarr.consolidate_metadata(str(path))
    _, group = open_store(path)
    assert isinstance(group.store, zarr.storage.ConsolidatedMetadataStore)
    np.testing.assert_array_equal(group["X/calldata/GT"][:], written["X"])
    archive = tmp_path / "store.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for f in path.rglob("*"):
            if f.is_file():
                zf.write(f, f.relative_to(path).as_posix())
    _, zgroup = open_store(archive)
    np.testing.assert_array_equal(zgroup["2L/calldata/GT"][:], written["2L"])


def test_fsspec_memory_url() -> None:
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    build_store(zarr.storage.FSStore("memory://zg-test"))
    try:
        _, group = open_store("memory://zg-test")
        assert [g.contig for g in find_genotypes(group)] == ["2L", "X"]
    finally:
        fs.rm("/zg-test", recursive=True)


@pytest.mark.hostile
def test_missing_store_is_not_created(tmp_path: Path) -> None:
    target = tmp_path / "nothing"
    with pytest.raises(MissingInputError, match="zarrgeno simulate"):
        open_store(target)
    assert not target.exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(MissingInputError, match="not a Zarr store"):
        open_store(empty)
    assert list(empty.iterdir()) == []


@pytest.mark.hostile
def test_file_that_is_not_a_store(tmp_path: Path) -> None:
    bogus = tmp_path / "genotypes.vcf"
    bogus.write_text("##fileformat=VCFv4.2\n")
    with pytest.raises(BadDataError, match="not a Zarr directory"):
        open_store(bogus)


def test_default_store_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert default_store() == DEFAULT_STORE
    monkeypatch.setenv("ZARRGENO_STORE", "/somewhere/else")
    assert default_store() == "/somewhere/else"


def test_vcf_zarr_layout() -> None:
    root = zarr.open_group(zarr.MemoryStore(), mode="w")
    gt = np.zeros((10, 3, 2), dtype="i1")
    root.create_dataset("call_genotype", data=gt, chunks=(4, 3, 2))
    root.create_dataset("contig_id", data=np.array(["chr1", "chr2", "chr3"], dtype="U4"))
    root.create_dataset("variant_contig", data=np.array([0] * 6 + [2] * 4, dtype="i2"), chunks=(3,))
    root.create_dataset("sample_id", data=np.array(["a", "b", "c"], dtype="U1"))
    found = find_genotypes(root)
    assert [(g.contig, g.path, g.start, g.stop) for g in found] == [
        ("chr1", "call_genotype", 0, 6),
        ("chr3", "call_genotype", 6, 10),
    ]
    assert sample_names(root, 3) == ["a", "b", "c"]


@pytest.mark.hostile
def test_vcf_zarr_unsorted_contigs_refused() -> None:
    root = zarr.open_group(zarr.MemoryStore(), mode="w")
    root.create_dataset("call_genotype", data=np.zeros((6, 2, 2), dtype="i1"))
    root.create_dataset("contig_id", data=np.array(["a", "b"]))
    root.create_dataset("variant_contig", data=np.array([0, 0, 1, 1, 0, 0], dtype="i1"))
    with pytest.raises(BadDataError, match="not sorted"):
        find_genotypes(root)


def test_select_genotypes(memory_store) -> None:
    _, group = open_store(memory_store[0])
    found = find_genotypes(group)
    assert [g.contig for g in select_genotypes(found, ["X"])] == ["X"]
    with pytest.raises(MissingInputError, match=r"no contig 3R .*found: 2L, X"):
        select_genotypes(found, ["3R"])


def test_relative_paths_are_made_absolute(dir_store, monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = dir_store
    monkeypatch.chdir(path.parent)
    ref = StoreRef.from_source(path.name)
    assert os.path.isabs(ref.location)
