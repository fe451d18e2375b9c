"""The writing commands the fault tests stop (tests/test_kill_points.py, tests/test_enospc.py):
their arguments, where they are half-way, and what an uninterrupted run writes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import zarr
from killing import digest
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app

runner = CliRunner()


@dataclass(frozen=True)
class Writer:
    """A writing command: its arguments for (source, target), the regular expression of
    a file written about half-way (its path in the output), and the files an
    uninterrupted run writes differently each time (timings)."""

    name: str
    target: str
    args: Callable[[Path, Path], list[str]]
    middle: str
    volatile: tuple[str, ...] = ()


def _rechunk(source: Path, target: Path) -> list[str]:
    return ["rechunk", str(source), str(target), "--chunks", "100,7,2", "--backend", "sequential"]


def _recompress(source: Path, target: Path) -> list[str]:
    args = ["recompress", "--compressor", "zstd:3", "--backend", "sequential"]
    return [*args, "--", str(source), str(target)]


def _simulate(source: Path, target: Path) -> list[str]:
    args = ["simulate", "-c", "2L", "-c", "X", "--scale", "0.0001", "--samples", "8"]
    return [*args, "--chunks", "1000,8,2", "--seed", "2", "--", str(target)]


def _stats(source: Path, target: Path) -> list[str]:
    return ["stats", str(source), "--output", str(target)]


WRITERS = {
    w.name: w
    for w in (
        # 5 of the 10 chunks of 2L are written (one task, in the main thread).
        Writer("rechunk", "out.zarr", _rechunk, r"2L/calldata/GT/5\.0\.0"),
        # 4 of the 8 chunks of 2L are written.
        Writer("recompress", "out.zarr", _recompress, r"2L/calldata/GT/2\.0\.0"),
        # 2L is complete, X not begun (chunks are written by worker threads, groups not).
        Writer("simulate", "out.zarr", _simulate, r"X/"),
        # The counts of 2L are written, those of X not; the summary holds elapsed_seconds.
        Writer("stats-zarr", "counts.zarr", _stats, r"X/", volatile=(".zattrs", ".zmetadata")),
        # variants.tsv is complete, samples.tsv not begun.
        Writer("stats-tsv", "counts.tsv", _stats, r"samples\.tsv"),
    )
}


def small_source(path: Path) -> Path:
    """The small two-contig store of conftest.build_store, consolidated, at ``path``."""
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    return path


def run(args: list[str]):
    """``zarrgeno ARGS`` in this process; its result (exit_code, stdout, stderr)."""
    return runner.invoke(app, args)


class References:
    """What each writer writes from ``source`` when nothing stops it, made on first use."""

    def __init__(self, source: Path, root: Callable[[str], Path]):
        self.source, self.root, self.made = source, root, {}

    def __call__(self, name: str) -> Path:
        if name not in self.made:
            writer = WRITERS[name]
            target = self.root(f"reference-{name}") / writer.target
            result = run(writer.args(self.source, target))
            assert result.exit_code == 0, result.output
            self.made[name] = target
        return self.made[name]


def same_output(writer: Writer, target: Path, expected: Path) -> None:
    """``target`` holds the same files, byte for byte, as ``expected`` (timings aside)."""
    got, want = digest(target), digest(expected)
    for name in writer.volatile:
        assert name in got and name in want
        del got[name], want[name]
    assert got == want
