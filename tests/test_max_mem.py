"""--max-mem holds from the first byte: a budget too small for one task is refused from
metadata alone, before any chunk is decoded; verify and stats fit their workers to it."""

from __future__ import annotations

from pathlib import Path

import numcodecs
import numpy as np
import pytest
import zarr
from hostile import assert_refused, run_cli

from zarrgeno.defaults import PROMISE_FACTOR

pytestmark = pytest.mark.hostile

#: 64.8 MB per chunk: decoding one would lift a process far above the refusal's footprint.
CHUNKS = (400_000, 81, 2)
#: What a zarrgeno process holds before it decodes a chunk, with room to spare.
BASELINE_MB = 110


@pytest.fixture(scope="module")
def big_chunks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("big") / "s.zarr"
    root = zarr.open_group(zarr.DirectoryStore(str(path)), mode="w")
    gt = np.zeros((2 * CHUNKS[0], 81, 2), dtype="i1")
    gt[::7, ::3] = 1
    root.create_dataset(
        "2L/calldata/GT",
        data=gt,
        chunks=CHUNKS,
        compressor=numcodecs.Blosc("lz4", 5, numcodecs.Blosc.SHUFFLE),
    )
    return path


@pytest.mark.parametrize(
    "args",
    [
        ["rechunk", "{src}", "{out}", "--chunks", "100000,81,2"],
        ["rechunk", "{src}", "{out}", "--chunks", "100000,81,2", "--plan"],
        ["recompress", "{src}", "{out}", "--compressor", "zstd:3"],
        ["verify", "{src}"],
        ["verify", "{src}", "{src}"],
        ["stats", "{src}"],
        ["stats", "{src}", "-b", "sequential"],
    ],
    ids=lambda a: " ".join(x for x in a if not x.startswith("{")),
)
def test_a_budget_too_small_is_refused_before_a_chunk_is_decoded(
    big_chunks: Path, tmp_path: Path, args: list[str]
) -> None:
    argv = [a.format(src=big_chunks, out=tmp_path / "out.zarr") for a in args]
    result = run_cli(*argv, "--max-mem", "20MB")
    assert_refused(result, 2, says="--max-mem 20 MB is too small", max_rss_mb=BASELINE_MB)
    assert "or more" in result.err or "is needed" in result.err
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.parametrize("backend", ["threads", "dask", "sequential"])
def test_stats_fits_its_workers_to_the_budget(big_chunks: Path, backend: str) -> None:
    budget_mb = 200  # one worker's buffers (two 64.8 MB chunks and its counts), not two
    result = run_cli("stats", big_chunks, "-b", backend, "-w", "2", "--max-mem", "200MB")
    if backend == "sequential":  # one worker only: nothing to fit, nothing said
        assert result.code == 2 and "--workers does not apply" in result.err, str(result)
        result = run_cli("stats", big_chunks, "-b", backend, "--max-mem", "200MB")
    else:
        assert "--max-mem 200 MB fits 1 of 2 workers" in result.err, str(result)
    assert result.code == 0, str(result)
    assert result.peak_rss_mb <= PROMISE_FACTOR * budget_mb + BASELINE_MB, str(result)


def test_verify_checks_fewer_chunks_at_once_within_the_budget(big_chunks: Path) -> None:
    budget_mb = 200
    result = run_cli("verify", big_chunks, "--max-mem", f"{budget_mb}MB")
    assert result.code == 0, str(result)
    assert result.peak_rss_mb <= PROMISE_FACTOR * budget_mb + BASELINE_MB, str(result)
