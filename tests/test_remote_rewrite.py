"""verify, recompress and rechunk from a URL: the same result as from the local copy, each
chunk asked for once through a window of requests in flight, the window counted in
--max-mem, and an outage or Ctrl-C that ends the copy at once with nothing written
outside the target."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import zarr
from hostile import Tree, run_cli
from httpserver import Fault, StoreServer, interrupt_in_flight

from conftest import build_store
from zarrgeno.errors import BadDataError, StoreIOError, UsageError
from zarrgeno.io.chunks import ChunkLayout
from zarrgeno.io.remote import RemoteOptions
from zarrgeno.io.store import StoreRef
from zarrgeno.rewrite.execute import execute_store
from zarrgeno.rewrite.measure import sample_indices
from zarrgeno.rewrite.storeplan import plan_store
from zarrgeno.rewrite.verify import verify_stores

FAST = RemoteOptions(connect_timeout=2, read_timeout=2, retries=3, backoff=0.05, max_backoff=0.2)
CONTIGS = {"2L": 1000, "X": 450}
GENOTYPES = [f"{contig}/calldata/GT" for contig in CONTIGS]
ZARRGENO = [sys.executable, "-m", "zarrgeno"]
ZSTD = ["--compressor", "zstd:1"]


@pytest.fixture
def served(tmp_path: Path):
    """A consolidated store over HTTP whose every answer waits 20 ms, and a local zstd copy
    of it: (server, path, copy)."""
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path), contigs=CONTIGS)
    zarr.consolidate_metadata(str(path))
    copy = tmp_path / "copy.zarr"
    execute_store(plan_store(str(path), chunks=None, compressor="zstd:1"), copy)
    with StoreServer(path.parent, latency=0.02) as server:
        yield server, path, copy


def url_ref(server: StoreServer, **changes) -> StoreRef:
    opts = RemoteOptions(**{**FAST.__dict__, **changes})
    return StoreRef.from_source(server.url("store.zarr"), remote=opts)


def chunk_files(path: Path) -> set[str]:
    """Every chunk file of the store (of every array), as request paths."""
    return {
        "/store.zarr/" + p.relative_to(path).as_posix()
        for p in path.rglob("*")
        if p.is_file() and not p.name.startswith(".")
    }


def listings(path: Path) -> list[str]:
    """Every directory of the store, as request paths: the listing a copy of the other
    keys makes (one page each)."""
    dirs = [p.relative_to(path).as_posix() + "/" for p in path.rglob("*") if p.is_dir()]
    return ["/store.zarr/", *("/store.zarr/" + d for d in dirs)]


def copy_requests(path: Path) -> list[str]:
    """What a copy of the store from a URL asks for: the consolidated metadata, every chunk
    once, the two chunks per genotype array the plan measures compression on once more (its
    samples), and each directory's listing."""
    return sorted([*chunk_files(path), *sampled(path), *listings(path), "/store.zarr/.zmetadata"])


def sampled(path: Path) -> list[str]:
    """The chunks a rechunk or recompression plan measures compression on, as request paths."""
    group = zarr.open_group(str(path), mode="r")
    paths = []
    for name in GENOTYPES:
        layout = ChunkLayout.of(group[name])
        paths += ["/store.zarr/" + layout.key(i) for i in sample_indices(layout, 2)]
    return paths


def requested(server: StoreServer) -> list[str]:
    return [p for _, p, _ in server.log.entries]


def test_verify_from_a_url_reads_each_chunk_once_with_several_in_flight(served) -> None:
    server, path, copy = served
    local = verify_stores(str(path), str(copy))
    far = verify_stores(url_ref(server, fetch_concurrency=4), str(copy))
    assert [a.path for a in far.arrays] == [a.path for a in local.arrays]
    paths = requested(server)
    assert len(paths) == len(set(paths)), "a key was fetched twice"
    assert set(paths) == chunk_files(path) | {"/store.zarr/.zmetadata"}
    assert 2 < server.peak <= 4 + 1  # the window (one reader: its own request at most)


def test_verify_from_a_url_still_names_a_difference(served) -> None:
    server, _, copy = served
    gt = zarr.open_array(str(copy / "2L" / "calldata" / "GT"), mode="r+")
    gt[700, 3, 1] = 1 - gt[700, 3, 1]
    with pytest.raises(BadDataError, match="2L/calldata/GT: contents differ in variants"):
        verify_stores(url_ref(server), str(copy))


@pytest.mark.parametrize("backend", ["sequential", "dask"])
def test_recompress_from_a_url_equals_the_local_copy(served, tmp_path: Path, backend) -> None:
    """Byte for byte the same chunks; each chunk fetched once, but for the two per array
    the plan measures compression on (fetched again by the copy); several in flight."""
    server, path, _ = served
    local, far = tmp_path / "local.zarr", tmp_path / "far.zarr"
    execute_store(plan_store(str(path), chunks=None, compressor="zstd:3", backend=backend), local)
    ref = url_ref(server, fetch_concurrency=4)
    plan = plan_store(ref, chunks=None, compressor="zstd:3", backend=backend, workers=2)
    execute_store(plan, far)
    verify_stores(str(local), str(far))
    for name in GENOTYPES:
        for chunk in (local / name).iterdir():
            assert (far / name / chunk.name).read_bytes() == chunk.read_bytes(), chunk
    paths = requested(server)
    assert sorted(paths) == copy_requests(path)
    assert 2 < server.peak <= 4 + 2  # the window, and each task's own request at most


def test_rechunk_from_a_url_equals_the_local_copy(served, tmp_path: Path) -> None:
    server, path, _ = served
    local, far = tmp_path / "local.zarr", tmp_path / "far.zarr"
    execute_store(plan_store(str(path), chunks="300,4,2"), local)
    execute_store(plan_store(url_ref(server), chunks="300,4,2"), far)
    verify_stores(str(local), str(far))
    paths = requested(server)
    assert sorted(paths) == copy_requests(path)
    assert server.peak > 2


def test_the_window_counts_in_the_copy_plan(served) -> None:
    """The plan counts the window once per process (per task on distributed); a budget
    that one task fits but not with the window is refused before any chunk is read,
    naming --fetch-concurrency; a local source has no window."""
    server, path, _ = served
    assert plan_store(str(path), chunks=None, compressor="zstd:1").jobs[0].plan.read_ahead == 0
    plan = plan_store(url_ref(server, fetch_concurrency=8), chunks=None, compressor="zstd:1")
    job = plan.jobs[0].plan
    layout = ChunkLayout.of(zarr.open_group(str(path), mode="r")[job.path])
    assert job.read_ahead == 8 * layout.raw_cap
    assert job.expected_peak == job.concurrency * job.task_peak + job.read_ahead
    budget = job.task_peak + job.read_ahead
    server.log.clear()
    with pytest.raises(UsageError, match="--fetch-concurrency"):
        plan_store(url_ref(server, fetch_concurrency=256), chunks=None, max_mem=budget)
    assert requested(server) == ["/store.zarr/.zmetadata"]  # no chunk was read
    narrow = plan_store(url_ref(server, fetch_concurrency=1), chunks=None, max_mem=budget)
    assert narrow.expected_peak <= budget


def test_the_window_counts_in_verify_max_mem(served) -> None:
    server, _, copy = served
    with pytest.raises(UsageError, match="--fetch-concurrency"):
        verify_stores(url_ref(server, fetch_concurrency=256), str(copy), max_mem="24MB")
    verify_stores(url_ref(server, fetch_concurrency=1), str(copy), max_mem="24MB")


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["recompress", "rechunk"])
def test_the_cli_refuses_a_window_the_budget_cannot_hold(served, tmp_path, command) -> None:
    server, _, _ = served
    args = ["--compressor", "zstd:1"] if command == "recompress" else ["--chunks", "300,4,2"]
    result = run_cli(
        command,
        server.url("store.zarr"),
        tmp_path / "out",
        *args,
        "--fetch-concurrency",
        "256",
        "--max-mem",
        "24MB",
        cwd=tmp_path,
    )
    assert result.code == 2 and "--fetch-concurrency" in result.err, str(result)
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    assert not (tmp_path / "out").exists()


@pytest.mark.fault
def test_an_outage_mid_copy_fails_in_one_line_within_the_deadline(served, tmp_path) -> None:
    """Every chunk past the planning answers 503: recompress stops after the retries,
    well within the deadline, after a bounded number of requests; nothing is left at or
    beside the target, and the source is untouched."""
    server, path, _ = served
    source, canary = Tree(path), tmp_path / "canary"
    canary.write_text("beside the target")
    window, retries = 16, 3
    # The plan's three samples (two of 2L, one of X) pass; the copy's requests fail.
    server.inject(Fault("503", r"/calldata/GT/\d", first=len(sampled(path)) + 1))
    env = {
        "ZARRGENO_FETCH_CONCURRENCY": str(window),
        "ZARRGENO_HTTP_RETRIES": str(retries),
        "ZARRGENO_HTTP_BACKOFF": "0.05",
        "ZARRGENO_HTTP_DEADLINE": "20",
    }
    out = tmp_path / "out"
    start = time.monotonic()
    result = run_cli(
        "recompress", server.url("store.zarr"), out, "--compressor", "zstd:1", cwd=tmp_path, env=env
    )
    assert time.monotonic() - start < 20 + 15
    assert result.code == 6 and "HTTP 503" in result.err, str(result)
    assert len(result.err.strip().splitlines()) == 1 and "Traceback" not in result.err
    failed = server.log.outcomes()["503"]
    assert failed <= window + 2 + retries  # the window, the two tasks' own, the probes
    source.assert_unchanged()
    assert canary.read_text() == "beside the target"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "copy.zarr", "srv"]


def test_a_transient_fault_mid_copy_is_retried_and_the_copy_is_exact(served, tmp_path) -> None:
    server, path, _ = served
    server.inject(Fault("503", r"/calldata/GT/\d", every=3, limit=4))
    execute_store(
        plan_store(url_ref(server, retries=8), chunks=None, compressor="zstd:1"), tmp_path / "o"
    )
    verify_stores(str(path), str(tmp_path / "o"))
    assert server.log.outcomes()["503"] == 4


@pytest.mark.fault
def test_ctrl_c_during_a_remote_copy_exits_at_once(served, tmp_path: Path) -> None:
    """Ctrl-C while the copy's window of slow requests is in flight: exit 130 at once, not
    when the requests end (each waits 20 s here), and no staging directory is left."""
    server, path, _ = served
    first = len(sampled(path)) + 1  # the plan's samples pass; the copy's requests stall
    server.inject(Fault("stall", r"/calldata/GT/\d", first=first, stall_seconds=20))
    argv = [*ZARRGENO, "recompress", server.url("store.zarr"), "out", *ZSTD, "--no-progress"]
    interrupt_in_flight(server, argv, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.zarr", "srv"]


def test_a_store_error_is_raised_not_read_as_fill(served, tmp_path: Path) -> None:
    server, _, copy = served
    server.inject(Fault("500", r"/X/calldata/GT/0\.0\.0$"))
    with pytest.raises(StoreIOError, match="HTTP 500"):
        verify_stores(url_ref(server, retries=1), str(copy))


@pytest.mark.slow
def test_recompress_from_a_url_on_distributed(served, tmp_path: Path) -> None:
    """Each worker process reads with a store of its own; each task announces its chunks."""
    pytest.importorskip("distributed")
    server, path, copy = served
    ref = url_ref(server, fetch_concurrency=4)
    plan = plan_store(ref, chunks=None, compressor="zstd:1", backend="distributed", workers=1)
    assert plan.jobs[0].plan.read_ahead_per_task
    execute_store(plan, tmp_path / "far.zarr")
    verify_stores(str(copy), str(tmp_path / "far.zarr"))
    paths = requested(server)
    assert sorted(paths) == copy_requests(path)
