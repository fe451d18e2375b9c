"""Shared fixtures: small genotype stores built in memory (zarr MemoryStore) or in tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
import pytest
import zarr
from hypothesis import settings

pytest_plugins = ["pytester"]  # tests/test_reliability_report.py runs pytest on a tiny suite

# CI runs the same examples every time (a red CI must be reproducible); local runs explore.
# No per-example deadline anywhere: on a shared, loaded machine it fails correct code.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("local", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "local")

#: Two small contigs with a partial last chunk and samples split across chunks (5 + 2).
SMALL_CONTIGS = {"2L": 1000, "X": 450}
SMALL_SAMPLES = 7
SMALL_CHUNKS = (300, 5, 2)


def random_genotypes(n_variants: int, n_samples: int, seed: int) -> np.ndarray:
    """Genotypes with hom-ref, het, hom-alt, missing (-1,-1) and partial (-1, 1) calls."""
    rng = np.random.default_rng(seed)
    gt = rng.choice(
        np.array([0, 1, 2, -1], dtype="i1"),
        p=[0.8, 0.1, 0.02, 0.08],
        size=(n_variants, n_samples, 2),
    )
    missing = rng.random((n_variants, n_samples)) < 0.05
    gt[missing] = -1
    return gt


def build_store(
    store: zarr.storage.BaseStore | str,
    *,
    contigs: dict[str, int] | None = None,
    n_samples: int = SMALL_SAMPLES,
    chunks: tuple[int, int, int] = SMALL_CHUNKS,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Write a MalariaGEN-layout store and return the genotypes written, by contig."""
    if isinstance(store, str):  # zarr would read '::' or '://' in a path as an fsspec URL
        store = zarr.DirectoryStore(store)
    root = zarr.open_group(store, mode="w")
    root.attrs["description"] = "test store"
    written = {}
    for i, (contig, n) in enumerate((contigs or SMALL_CONTIGS).items()):
        gt = random_genotypes(n, n_samples, seed + i)
        root.create_dataset(
            f"{contig}/calldata/GT",
            data=gt,
            chunks=chunks,
            compressor=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
            fill_value=-1,
        )
        written[contig] = gt
    root.create_dataset(
        "samples", data=np.array([f"S{i:03d}".encode() for i in range(n_samples)], dtype="|S24")
    )
    return written


@pytest.fixture
def memory_store() -> tuple[zarr.MemoryStore, dict[str, np.ndarray]]:
    """A small two-contig store in a zarr MemoryStore, and its genotypes."""
    store = zarr.MemoryStore()
    return store, build_store(store)


@pytest.fixture
def dir_store(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    """The same small store as a directory on disk, for CLI and multiprocessing tests."""
    path = tmp_path / "store.zarr"
    return path, build_store(str(path))


@pytest.fixture(autouse=True)
def _no_store_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Tests never pick up a user's $ZARRGENO_STORE."""
    monkeypatch.delenv("ZARRGENO_STORE", raising=False)
    yield


# --------------------------------------------------------------------------------------
# The reliability figures of docs/reliability.md: `pytest -m "hostile or fault"
# --reliability-report` counts the cases of each kind and how they ended.

RELIABILITY_KINDS = {
    "hostile": "hostile or malformed inputs refused with a clear error",
    "fault": (
        "faults injected (full disk, SIGKILL, Ctrl-C, SIGTERM, killed workers, failing servers)"
    ),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--reliability-report",
        action="store_true",
        help="print how many hostile-input and fault-injection cases ran and how they ended",
    )


class _ReliabilityTally:
    """Outcome of every test case marked hostile or fault (a case = one parametrisation)."""

    def __init__(self) -> None:
        self.outcomes: dict[str, dict[str, str]] = {k: {} for k in RELIABILITY_KINDS}
        self.kinds: dict[str, list[str]] = {}

    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        for item in items:
            kinds = [k for k in RELIABILITY_KINDS if item.get_closest_marker(k)]
            if kinds:
                self.kinds[item.nodeid] = kinds

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for kind in self.kinds.get(report.nodeid, ()):
            seen = self.outcomes[kind]
            if report.failed:
                seen[report.nodeid] = "failed"
            elif report.skipped:
                seen.setdefault(report.nodeid, "skipped")
            elif report.when == "call":
                seen.setdefault(report.nodeid, "passed")

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        write = terminalreporter.write_line
        write("")
        write("reliability figures (cases = test items, parametrisations counted one by one):")
        for kind, what in RELIABILITY_KINDS.items():
            seen = list(self.outcomes[kind].values())
            write(
                f"  {kind:8s} {len(seen):4d} cases: {seen.count('passed')} passed, "
                f"{seen.count('failed')} failed, {seen.count('skipped')} skipped  ({what})"
            )


def pytest_configure(config: pytest.Config) -> None:
    if config.getoption("--reliability-report"):
        config.pluginmanager.register(_ReliabilityTally(), "zarrgeno-reliability")
