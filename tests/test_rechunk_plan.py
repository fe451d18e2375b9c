"""The pure rechunk plan: chunks at each step, files, temp store and the memory model."""

from __future__ import annotations

import math
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrgeno.errors import UsageError
from zarrgeno.rewrite.arrayplan import (
    MAX_CHUNK_BYTES,
    TASK_ALLOWANCE,
    Codecs,
    _aligned,
    _contiguous_in,
    _is_tiling,
    plan_rechunk,
)
from zarrgeno.sizes import format_size, parse_size

FULL_2L = (48_525_747, 81, 2)
AG_CHUNKS = (300_000, 50, 2)
TUTORIAL = (12_131_437, 81, 2)
#: Compressed fractions of simulated genotypes (ratio ~17) with the 1.25 margin.
GENOTYPE_CODECS = Codecs(0.075, 0.075, 0.1)


def test_tutorial_chunks_fit_4gb_as_one_direct_task_at_a_time() -> None:
    plan = plan_rechunk(
        FULL_2L,
        AG_CHUNKS,
        TUTORIAL,
        1,
        parse_size("4GB"),
        concurrency=2,
        codecs=GENOTYPE_CODECS,
        path="2L/calldata/GT",
    )
    assert plan.write_chunks == TUTORIAL and plan.intermediate_chunks is None
    assert plan.output_chunks == 4 and plan.temp_bytes == 0
    assert plan.concurrency == 1  # two 2 GB tasks would not fit in 4 GB
    assert [(s.name, s.tasks) for s in plan.stages] == [("copy", 4)]
    # The block is one target chunk; the rest is one decoded source chunk and codec buffers.
    assert plan.stages[0].block == math.prod(TUTORIAL)
    assert math.prod(TUTORIAL) < plan.expected_peak <= 4_000_000_000


@pytest.mark.hostile
def test_too_small_max_mem_names_the_minimum() -> None:
    with pytest.raises(UsageError) as info:
        plan_rechunk(
            FULL_2L,
            AG_CHUNKS,
            TUTORIAL,
            1,
            parse_size("1GB"),
            codecs=GENOTYPE_CODECS,
            path="2L/calldata/GT",
        )
    message = str(info.value)
    assert message.startswith("2L/calldata/GT: --max-mem 1 GB is too small")
    minimum = message.split("pass --max-mem ")[1].split(" ")[0]
    assert parse_size(minimum) > math.prod(TUTORIAL)
    # The named minimum is enough.
    plan = plan_rechunk(
        FULL_2L, AG_CHUNKS, TUTORIAL, 1, parse_size(minimum), codecs=GENOTYPE_CODECS
    )
    assert plan.expected_peak <= parse_size(minimum)


def test_parallelism_is_limited_by_memory_not_exceeded() -> None:
    small = (1000, 81, 2)
    roomy = plan_rechunk(
        FULL_2L, AG_CHUNKS, small, 1, parse_size("2GB"), concurrency=2, codecs=GENOTYPE_CODECS
    )
    assert roomy.concurrency == 2 and roomy.expected_peak <= 2_000_000_000
    # Blocks straddling source chunks would decode them twice: they are aligned to them.
    assert roomy.write_chunks[0] % 300_000 == 0
    tight = plan_rechunk(
        FULL_2L, AG_CHUNKS, small, 1, parse_size("100MB"), concurrency=8, codecs=GENOTYPE_CODECS
    )
    assert 1 <= tight.concurrency < 8 and tight.expected_peak <= 100_000_000


def test_transposing_plan_uses_an_intermediate_and_reports_its_size() -> None:
    plan = plan_rechunk(
        FULL_2L, AG_CHUNKS, (FULL_2L[0], 1, 2), 1, parse_size("1GB"), codecs=GENOTYPE_CODECS
    )
    assert plan.intermediate_chunks is not None
    assert [s.name for s in plan.stages] == ["to-temp", "from-temp"]
    assert plan.temp_bytes == math.prod(FULL_2L)
    assert plan.output_chunks == 81
    assert plan.expected_peak <= 1_000_000_000


@pytest.mark.hostile
def test_refuses_chunks_that_blosc_cannot_hold() -> None:
    with pytest.raises(UsageError, match="allow at most"):
        plan_rechunk(FULL_2L, AG_CHUNKS, (FULL_2L[0], 81, 2), 1, 10**11)
    assert MAX_CHUNK_BYTES == 2**31 - 16


@pytest.mark.hostile
@pytest.mark.parametrize("bad", [(0, 81, 2), (-1, 81, 2), (100, 81)])
def test_refuses_unresolved_or_wrong_chunks(bad: tuple[int, ...]) -> None:
    with pytest.raises(UsageError):
        plan_rechunk(FULL_2L, AG_CHUNKS, bad, 1, 10**9)


def test_to_dict_is_json_ready() -> None:
    plan = plan_rechunk((1000, 7, 2), (300, 5, 2), (100, 7, 2), 1, 10**8, path="a")
    data = plan.to_dict()
    assert data["path"] == "a" and data["expected_peak"] == plan.expected_peak
    assert data["stages"][0]["name"] == "copy" and data["output_chunks"] == 10


@pytest.mark.parametrize(
    ("text", "value"),
    [("4GB", 4 * 10**9), ("500MB", 5 * 10**8), ("2GiB", 2**31), ("1000", 1000), (" 1 kB ", 1000)],
)
def test_parse_size(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.hostile
@pytest.mark.parametrize("text", ["", "lots", "4 parsecs", "-1GB", "0"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(UsageError, match="size"):
        parse_size(text)


def test_format_size() -> None:
    assert format_size(1_965_292_794) == "1.97 GB"
    assert format_size(4e9) == "4 GB"
    assert format_size(999) == "999 B"
    assert format_size(250e6) == "250 MB"


def test_block_helpers() -> None:
    assert _contiguous_in((10, 81, 2), (100, 81, 2))
    assert not _contiguous_in((10, 50, 2), (100, 81, 2))
    assert _contiguous_in((1, 1, 2), (1, 81, 2))
    assert _is_tiling((600, 10, 2), (300, 5, 2), (1000, 10, 2))
    assert not _is_tiling((600, 9, 2), (300, 5, 2), (1000, 10, 2))
    assert _aligned((1500, 7, 2), (300, 5, 2), (1000, 7, 2), (5000, 7, 2)) == (1500, 7, 2)
    assert _aligned((3500, 7, 2), (300, 5, 2), (1000, 7, 2), (5000, 7, 2)) == (3000, 7, 2)


@st.composite
def _problems(draw: st.DrawFn) -> tuple:
    ndim = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 400)) for _ in range(ndim))
    source = tuple(draw(st.integers(1, s + 20)) for s in shape)
    target = tuple(draw(st.integers(1, s)) for s in shape)
    itemsize = draw(st.sampled_from([1, 2, 8]))
    max_mem = draw(st.integers(1, 400_000))
    concurrency = draw(st.integers(1, 4))
    fractions = draw(st.tuples(*[st.floats(0.01, 1.0)] * 3))
    filters = draw(st.tuples(st.integers(0, 1), st.integers(0, 1)))
    return shape, source, target, itemsize, max_mem, concurrency, Codecs(*fractions, *filters)


@settings(max_examples=300, deadline=None)
@given(_problems())
def test_plan_invariants(problem: tuple) -> None:
    shape, source, target, itemsize, max_mem, concurrency, codecs = problem
    try:
        # small arrays, small budgets
        with mock.patch("zarrgeno.rewrite.arrayplan.TASK_ALLOWANCE", 0):
            plan = plan_rechunk(
                shape, source, target, itemsize, max_mem, concurrency=concurrency, codecs=codecs
            )
    except UsageError as exc:
        # Only a budget below one task's minimum is refused, and the minimum is named.
        assert "is too small" in str(exc) and "pass --max-mem" in str(exc)
        return
    assert plan.expected_peak <= max_mem
    assert 1 <= plan.concurrency <= concurrency
    assert plan.output_chunks == math.prod(
        math.ceil(s / t) for s, t in zip(shape, target, strict=True)
    )
    for w, t, s in zip(plan.write_chunks, target, shape, strict=True):
        assert w % t == 0 or w >= s  # write blocks are whole target chunks
    if plan.intermediate_chunks is None:
        assert plan.temp_bytes == 0 and len(plan.stages) == 1
    else:
        inter = plan.intermediate_chunks
        assert all(
            i <= min(r, w)
            for i, r, w in zip(inter, plan.read_chunks, plan.write_chunks, strict=True)
        )
        assert plan.temp_bytes == math.prod(shape) * itemsize
        first = plan.stages[0]
        assert _is_tiling(first.key_chunks, inter, shape)
    for stage in plan.stages:
        for k, d, s in zip(stage.key_chunks, stage.dst_chunks, shape, strict=True):
            assert k % d == 0 or k >= s  # every task writes whole destination chunks


def test_allowance_is_counted_once_per_task_and_idle_threads_are_not() -> None:
    # 1 GB of 100 MB chunks: blocks of at most 256 MB, so five tasks for three threads.
    plan = plan_rechunk((10_000, 10**5), (1000, 10**5), (1000, 10**5), 1, 10**10, concurrency=3)
    assert plan.task_peak >= TASK_ALLOWANCE
    assert plan.concurrency == 3 and plan.expected_peak == 3 * plan.task_peak
    one_task = plan_rechunk((10, 10), (10, 10), (10, 10), 1, 10**9, concurrency=3)
    assert one_task.concurrency == 1 and one_task.expected_peak == one_task.task_peak


@pytest.mark.parametrize(
    "module", ["zarrgeno.rewrite.arrayplan", "zarrgeno.sizes", "zarrgeno.rewrite.recompress"]
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
