"""verify: chunk-aligned comparison in bounded memory, naming the first differing region."""

from __future__ import annotations

import json
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import zarr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.rewrite.verify import verify_stores

runner = CliRunner()
GT = "2L/calldata/GT"


def _copy(store: zarr.MemoryStore) -> zarr.MemoryStore:
    twin = zarr.MemoryStore()
    twin.update({k: store[k] for k in store})
    return twin


def test_identical_stores_pass(memory_store) -> None:
    store, _ = memory_store
    report = verify_stores(store, _copy(store))
    assert [a.path for a in report.arrays] == ["2L/calldata/GT", "X/calldata/GT", "samples"]
    assert report.nbytes == (1000 + 450) * 7 * 2 + 7 * 24
    assert report.to_dict()["identical"] is True


def test_first_difference_is_named(memory_store) -> None:
    store, _ = memory_store
    other = _copy(store)
    gt = zarr.open_array(other, path=GT)
    gt[650, 6, 1] = 7  # variants chunk 600-900, samples chunk 5-7
    gt[900, 0, 0] = 7  # a later difference is not the one reported
    with pytest.raises(BadDataError) as info:
        verify_stores(store, other)
    assert str(info.value) == (
        "2L/calldata/GT: contents differ in variants 600-900, samples 5-7 "
        f"(first at [650, 6, 1]: source {store_value(store, (650, 6, 1))}, target 7)"
    )


def store_value(store: zarr.MemoryStore, index: tuple[int, ...]) -> int:
    return int(zarr.open_array(store, path=GT, mode="r")[index])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda g: g.pop("X/calldata/GT/.zarray"),
            "array X/calldata/GT is missing from the target",
        ),
        (lambda g: zarr.open_group(g)["X"].create_dataset("extra", shape=(1,)), "'X/extra'"),
        (lambda g: zarr.open_array(g, path=GT).attrs.put({"a": 1}), "attributes differ"),
        (lambda g: zarr.open_group(g).attrs.put({}), "group /: attributes differ"),
        (lambda g: zarr.open_array(g, path=GT).resize(999, 7, 2), "shape differs"),
    ],
)
def test_metadata_differences(memory_store, change, message: str) -> None:
    store, _ = memory_store
    other = _copy(store)
    change(other)
    with pytest.raises(BadDataError, match=message):
        verify_stores(store, other)


def test_fill_value_and_dtype_differences() -> None:
    a, b, c = zarr.MemoryStore(), zarr.MemoryStore(), zarr.MemoryStore()
    for store, fill, dtype in ((a, -1, "i1"), (b, 0, "i1"), (c, -1, "i2")):
        zarr.open_group(store, mode="w").create_dataset(
            "x", data=np.zeros(10, dtype), chunks=5, fill_value=fill
        )
    with pytest.raises(BadDataError, match="fill value differs"):
        verify_stores(a, b)
    with pytest.raises(BadDataError, match="dtype differs"):
        verify_stores(a, c)


def test_missing_chunk_is_a_difference_unless_allowed(memory_store) -> None:
    store, _ = memory_store
    other = _copy(store)
    zarr.open_array(other, path="X/calldata/GT")[300:450] = -1  # all fill value...
    del other["X/calldata/GT/1.0.0"], other["X/calldata/GT/1.1.0"]  # ...then the chunks go
    source = _copy(other)
    with pytest.raises(BadDataError, match=r"X/calldata/GT/1\.0\.0 is missing"):
        verify_stores(source, other)
    verify_stores(source, other, allow_missing=True)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(1, 300),
    a=st.integers(1, 120),
    b=st.integers(1, 120),
    cols=st.integers(1, 5),
    where=st.floats(0, 1, exclude_max=True),
    budget=st.integers(3_000, 60_000),
)
def test_any_chunkings_and_budget_find_the_difference(n, a, b, cols, where, budget) -> None:
    data = np.arange(n * cols, dtype="<i4").reshape(n, cols)
    src, tgt = zarr.MemoryStore(), zarr.MemoryStore()
    zarr.open_group(src, mode="w").create_dataset("x", data=data, chunks=(a, 2))
    out = zarr.open_group(tgt, mode="w").create_dataset("x", data=data, chunks=(b, cols))
    row = int(where * n)
    out[row, cols - 1] = -5
    # The budget check uses the chunks' measured compressibility, so it is decided on the
    # data being compared: a budget is either refused up front or the difference is found.
    with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):  # tiny arrays, tiny budgets
        try:
            verify_stores(src, tgt, max_mem=budget)
        except UsageError as exc:
            assert "is too small" in str(exc)
            return
        except BadDataError as exc:
            info = exc
        else:
            raise AssertionError("the changed element was not found")
    lo = row // a * a
    assert f"variants {lo}-{min(lo + a, n)}" in str(info)
    assert f"first at [{row}, {cols - 1}]" in str(info)


def test_too_small_budget_names_the_minimum(memory_store) -> None:
    store, _ = memory_store
    with pytest.raises(UsageError, match=r"--max-mem 1 kB is too small .* at least"):
        verify_stores(store, _copy(store), max_mem="1kB")


def test_cli(tmp_path: Path) -> None:
    src, same, changed = tmp_path / "a.zarr", tmp_path / "b.zarr", tmp_path / "c.zarr"
    for path in (src, same, changed):
        build_store(str(path))
    zarr.open_array(str(changed / GT))[10, 2, 0] = 9
    ok = runner.invoke(app, ["verify", str(src), str(same)])
    assert ok.exit_code == 0 and ok.stdout.startswith("identical: 3 array(s)")
    data = json.loads(runner.invoke(app, ["verify", str(src), str(same), "--json"]).stdout)
    assert data["identical"] and len(data["arrays"]) == 3
    bad = runner.invoke(app, ["verify", str(src), str(changed)])
    assert bad.exit_code == 4 and bad.stdout == ""
    assert bad.stderr.startswith("Error: 2L/calldata/GT: contents differ in variants 0-300")
    one = runner.invoke(app, ["verify", str(src), str(changed), "--array", "X/calldata/GT"])
    assert one.exit_code == 0
    nope = runner.invoke(app, ["verify", str(src), str(tmp_path / "nope")])
    assert nope.exit_code == 3
