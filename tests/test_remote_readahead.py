"""Remote chunks fetched ahead, a window at a time: each chunk and metadata document asked
for once (consolidated metadata first, no HEAD, no listing), several requests in flight,
the same counts as the local copy on every backend, and an outage that ends the run
within its deadline after a bounded number of requests, however wide the window."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import zarr
from hostile import run_cli
from httpserver import Fault, StoreServer, interrupt_in_flight

from conftest import build_store
from zarrgeno.errors import StoreIOError, UsageError
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.remote import RemoteOptions
from zarrgeno.io.store import StoreRef

stats_api = pytest.importorskip("zarrgeno.stats.api")
results = pytest.importorskip("zarrgeno.stats.results")

FAST = RemoteOptions(connect_timeout=2, read_timeout=2, retries=3, backoff=0.05, max_backoff=0.2)
CONTIGS = {"2L": 1000, "X": 450}


@pytest.fixture
def served(tmp_path: Path):
    """A consolidated store over HTTP whose every answer waits 20 ms: (server, path)."""
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path), contigs=CONTIGS)
    zarr.consolidate_metadata(str(path))
    with StoreServer(path.parent, latency=0.02) as server:
        yield server, path


def url_ref(server: StoreServer, **changes) -> StoreRef:
    opts = RemoteOptions(**{**FAST.__dict__, **changes})
    return StoreRef.from_source(server.url("store.zarr"), remote=opts)


def chunk_files(path: Path) -> set[str]:
    """The chunk files of every genotype array, as request paths."""
    return {
        "/store.zarr/" + str(p.relative_to(path))
        for contig in CONTIGS
        for p in (path / contig / "calldata" / "GT").iterdir()
        if not p.name.startswith(".")
    }


def test_requests_are_the_chunks_and_the_consolidated_metadata(served) -> None:
    server, path = served
    result = stats_api.genotype_stats(url_ref(server), backend="threads", workers=2)
    assert results.same_counts(stats_api.genotype_stats(str(path)), result)
    entries = server.log.entries
    assert {method for method, _, _ in entries} == {"GET"}  # no HEAD before a GET
    paths = [p for _, p, _ in entries]
    assert len(paths) == len(set(paths)), "a key was fetched twice"
    samples = {"/store.zarr/" + str(p.relative_to(path)) for p in (path / "samples").glob("[0-9]*")}
    assert set(paths) == chunk_files(path) | samples | {"/store.zarr/.zmetadata"}
    assert paths[0] == "/store.zarr/.zmetadata"  # consolidated metadata first


def test_several_chunk_requests_are_in_flight(served) -> None:
    server, _ = served
    stats_api.genotype_stats(url_ref(server, fetch_concurrency=8), backend="sequential")
    assert 2 < server.peak <= 8 + 1  # the window, and nothing more


def test_a_window_of_one_reads_one_chunk_at_a_time(served) -> None:
    server, path = served
    result = stats_api.genotype_stats(url_ref(server, fetch_concurrency=1), backend="sequential")
    assert results.same_counts(stats_api.genotype_stats(str(path)), result)
    assert server.peak <= 2  # the window's request and the sequential reader's own


@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing", "dask"])
def test_counts_equal_the_local_store_on_every_backend(served, backend: str) -> None:
    server, path = served
    local = stats_api.genotype_stats(str(path))
    far = stats_api.genotype_stats(url_ref(server, fetch_concurrency=4), backend=backend)
    assert results.same_counts(local, far)
    assert far.to_dict()["total"] == local.to_dict()["total"]


@pytest.mark.slow
def test_counts_equal_the_local_store_on_distributed(served) -> None:
    pytest.importorskip("distributed")
    server, path = served
    local = stats_api.genotype_stats(str(path))
    far = stats_api.genotype_stats(url_ref(server), backend="distributed", workers=1)
    assert results.same_counts(local, far)


@pytest.mark.fault
def test_an_outage_costs_the_retries_once_not_once_per_request(served) -> None:
    """Every chunk answers 503: the run stops after ``retries`` rounds, within the deadline;
    the requests are the window's first round and one probe per retry, not the window's
    size times the retries."""
    server, _ = served
    server.inject(Fault("503", r"/calldata/GT/\d"))
    window, retries = 16, 3
    ref = url_ref(server, fetch_concurrency=window, retries=retries, deadline=20)
    start = time.monotonic()
    with pytest.raises(StoreIOError, match="HTTP 503"):
        stats_api.genotype_stats(ref, backend="threads", workers=2)
    assert time.monotonic() - start < 20
    failed = server.log.outcomes()["503"]
    assert failed <= window + 2 + retries  # the window, the two readers' own, the probes
    assert failed < window * (retries + 1)


@pytest.mark.fault
def test_a_transient_fault_in_a_window_is_retried_and_counts_are_exact(served) -> None:
    server, path = served
    server.inject(Fault("503", r"/calldata/GT/\d", every=3, limit=6))
    far = stats_api.genotype_stats(url_ref(server, retries=8), backend="threads", workers=2)
    assert results.same_counts(stats_api.genotype_stats(str(path)), far)
    assert server.log.outcomes()["503"] == 6


@pytest.mark.fault
def test_ctrl_c_with_requests_in_flight_exits_at_once(served, tmp_path: Path) -> None:
    """Ctrl-C while a window of slow requests is in flight: exit 130 at once, not when the
    requests end (each waits 20 s here)."""
    server, _ = served
    server.inject(Fault("stall", r"/calldata/GT/\d", stall_seconds=20))
    interrupt_in_flight(
        server, [sys.executable, "-m", "zarrgeno", "stats", server.url("store.zarr")], tmp_path
    )


def test_the_window_counts_in_max_mem(served) -> None:
    """A window of 256 chunk bodies does not fit a budget that one worker alone fits: the
    run is refused before any chunk is read, naming --fetch-concurrency; a window of one
    fits."""
    server, path = served
    wide = stats_api.plan_stats(url_ref(server, fetch_concurrency=256))
    alone = stats_api.worker_memory(wide, "threads")
    window = stats_api.read_ahead_memory(wide, "threads")
    assert window == 256 * wide.readers[0].layout.raw_cap
    budget = alone + window // 2
    server.log.clear()
    with pytest.raises(UsageError, match="--fetch-concurrency"):
        stats_api.compute_stats(wide, backend="threads", workers=1, max_mem=budget)
    assert not server.log.entries  # refused before any chunk was read
    narrow = stats_api.plan_stats(url_ref(server, fetch_concurrency=1))
    result = stats_api.compute_stats(narrow, backend="threads", workers=1, max_mem=budget)
    assert results.same_counts(stats_api.genotype_stats(str(path)), result)
    assert stats_api.read_ahead_memory(stats_api.plan_stats(str(path)), "threads") == 0


def test_a_format3_store_is_fetched_ahead_too() -> None:
    """Zarr format 3 over HTTP: the chunks of the run go out together, each once."""
    data = Path(__file__).parent / "data"
    with StoreServer(data, latency=0.05) as server:
        url = server.url("malariagen_v3.zarr")
        ref = StoreRef.from_source(url, remote=FAST)
        far = stats_api.genotype_stats(ref, contigs=["3R"], backend="sequential")
        chunks = [p for _, p, _ in server.log.entries if "/3R/calldata/GT/c/" in p]
        peak = server.peak
    local = stats_api.genotype_stats(data / "malariagen_v3.zarr", contigs=["3R"])
    assert results.same_counts(local, far)
    assert len(chunks) == len(set(chunks)) == 6
    assert peak >= 3  # six chunks, read one at a time by the sequential backend


def test_info_still_compares_the_consolidated_metadata_with_each_document(served) -> None:
    """Reads take the node documents from .zmetadata; info still fetches each one to say
    where a stale .zmetadata disagrees."""
    server, path = served
    assert inspect_store(server.url("store.zarr")).consolidated_agrees is True
    root = zarr.open_group(str(path), mode="a")
    root.attrs["release"] = "v3"  # written to .zattrs only: .zmetadata is now stale
    info = inspect_store(server.url("store.zarr"))
    assert info.consolidated_agrees is False
    assert info.consolidated_mismatches == ((".zattrs", "differs"),)


@pytest.mark.hostile
@pytest.mark.parametrize("value", ["0", "257", "x"])
def test_a_bad_fetch_concurrency_is_refused_in_one_line(served, value: str) -> None:
    server, _ = served
    for how in (["--fetch-concurrency", value], []):
        result = run_cli(
            "stats", server.url("store.zarr"), *how, env={"ZARRGENO_FETCH_CONCURRENCY": value}
        )
        assert result.code == 2 and "--fetch-concurrency" in result.err, str(result)
        assert "Traceback" not in result.err
    assert not server.log.entries  # refused before any request
