"""Genotype statistics on a store served over HTTP: the same counts as on the local copy, on
three backends, with and without injected faults; a fault that outlasts the retries is an
error, never a wrong count."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from httpserver import Fault, StoreServer
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import StoreIOError
from zarrgeno.io.remote import RemoteOptions
from zarrgeno.io.store import StoreRef

runner = CliRunner()
stats_api = pytest.importorskip("zarrgeno.stats.api")
results = pytest.importorskip("zarrgeno.stats.results")

FAST = RemoteOptions(connect_timeout=2, read_timeout=2, retries=12, backoff=0.01, max_backoff=0.05)
CHUNKS = r"/calldata/GT/\d"


#: Every kind of fault, 12 in all (= FAST.retries, so no key can exhaust its retries: the
#: outcome is exact whatever the interleaving of the workers' requests).
def mixed_faults() -> tuple[Fault, ...]:
    return (
        Fault("503", CHUNKS, every=3, limit=4),
        Fault("500", CHUNKS, every=5, first=2, limit=3),
        Fault("drop", CHUNKS, every=4, limit=2),
        Fault("truncate", CHUNKS, every=2, limit=2),
        Fault("stall", CHUNKS, every=11, limit=1, stall_seconds=1.0),
    )


@pytest.fixture
def served(tmp_path: Path):
    root = tmp_path / "srv"
    build_store(str(root / "store.zarr"), contigs={"2L": 1000, "X": 450})
    with StoreServer(root) as server:
        yield server, root / "store.zarr"


def url_ref(server: StoreServer, **changes) -> StoreRef:
    opts = RemoteOptions(**{**FAST.__dict__, **changes})
    return StoreRef.from_source(server.url("store.zarr"), remote=opts)


@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing"])
def test_remote_stats_equal_local(served, backend: str) -> None:
    server, path = served
    local = stats_api.genotype_stats(str(path))
    far = stats_api.genotype_stats(url_ref(server), backend=backend)
    assert results.same_counts(local, far)
    assert far.to_dict()["total"] == local.to_dict()["total"]


@pytest.mark.fault
@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing"])
def test_remote_stats_survive_faults(served, backend: str) -> None:
    server, path = served
    local = stats_api.genotype_stats(str(path))
    server.inject(*mixed_faults())
    far = stats_api.genotype_stats(url_ref(server), backend=backend)
    assert results.same_counts(local, far)
    outcomes = server.log.outcomes()
    assert sum(outcomes.values()) - outcomes["ok"] == 12, outcomes  # every fault happened


@pytest.mark.fault
@pytest.mark.parametrize("kind", ["503", "truncate", "stall"])
def test_remote_stats_fail_rather_than_miscount(served, kind: str) -> None:
    server, _ = served
    ref = url_ref(server, retries=1, read_timeout=0.5)  # below the 1 s stall
    server.inject(Fault(kind, r"/X/calldata/GT/1\.1\.0$", stall_seconds=1.0))
    with pytest.raises(StoreIOError, match=r"X/calldata/GT/1\.1\.0"):
        stats_api.genotype_stats(ref)


def _counts(output: str) -> dict:
    data = json.loads(output)
    return {"contigs": data["contigs"], "total": data["total"]}


@pytest.mark.parametrize("backend", ["sequential", "threads", "multiprocessing"])
def test_stats_command_on_a_url(served, backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    server, path = served
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("ZARRGENO_HTTP_RETRIES", "12")
    monkeypatch.setenv("ZARRGENO_HTTP_BACKOFF", "0.01")
    local = runner.invoke(app, ["stats", str(path), "-b", "sequential", "--json"])
    assert local.exit_code == 0, local.output
    server.inject(*mixed_faults())
    far = runner.invoke(app, ["stats", server.url("store.zarr"), "-b", backend, "--json"])
    assert far.exit_code == 0, far.output
    assert _counts(far.stdout) == _counts(local.stdout)
    outcomes = server.log.outcomes()
    assert sum(outcomes.values()) - outcomes["ok"] == 12, outcomes


def test_cache_option_fetches_each_chunk_once(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, _ = served
    # `--cache` sets ZARRGENO_CACHE in this process for its workers; setenv first records
    # the variable, so that the value the command sets is undone after the test too.
    monkeypatch.setenv("ZARRGENO_CACHE", "")
    monkeypatch.delenv("ZARRGENO_CACHE")
    cache = tmp_path / "cache"
    url = server.url("store.zarr")
    args = ["--cache", str(cache), "stats", url, "-b", "multiprocessing", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    chunk_gets = [p for m, p, _ in server.log.entries if m == "GET" and re.search(CHUNKS, p)]
    assert sorted(chunk_gets) == sorted(set(chunk_gets)) and len(chunk_gets) == 12
    cached = {p.relative_to(cache).as_posix().split("/", 1)[1] for p in cache.rglob("*/*")}
    assert {"samples/0", "2L/calldata/GT/3.1.0"} <= cached and not any(".part" in c for c in cached)
    server.log.clear()
    second = runner.invoke(app, args)
    assert _counts(second.stdout) == _counts(first.stdout)
    assert not [p for m, p, _ in server.log.entries if re.search(CHUNKS, p)]
