"""Remote stores over a real HTTP server on 127.0.0.1: same answers as the local copy, and
every injected network fault either survived by a retry or reported as an error."""

from __future__ import annotations

import json
import pickle
import re
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import zarr
from httpserver import Fault, StoreServer
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.errors import BadDataError, StoreIOError, UsageError
from zarrgeno.io.chunks import ChunkLayout, read_raw
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.integrity import check_store
from zarrgeno.io.remote import ChunkCache, RemoteOptions, RemoteStore, classify
from zarrgeno.io.store import StoreRef, open_store
from zarrgeno.rewrite.blockcopy import read_region

#: Fast enough for tests, slow enough that loopback never times out by accident; the tests
#: of timeouts lower the read timeout below the server's injected stall (STALL).
FAST = RemoteOptions(connect_timeout=2, read_timeout=2, retries=6, backoff=0.01, max_backoff=0.05)
CHUNKS = r"/calldata/GT/\d"


@pytest.fixture
def served(tmp_path: Path):
    """A small store in tmp_path/srv/store.zarr, served over HTTP; yields (server, dir, data)."""
    root = tmp_path / "srv"
    written = build_store(str(root / "store.zarr"))
    with StoreServer(root) as server:
        yield server, root / "store.zarr", written


STALL = {"read_timeout": 0.5}


def remote(server: StoreServer, options: RemoteOptions = FAST, **changes) -> StoreRef:
    opts = RemoteOptions(**{**options.__dict__, **changes})
    return StoreRef.from_source(server.url("store.zarr"), remote=opts)


def read_all(store, group: zarr.hierarchy.Group, contig: str) -> np.ndarray:
    """A contig's genotypes through zarrgeno's checked chunk reads."""
    layout = ChunkLayout.of(group[f"{contig}/calldata/GT"])
    out = np.empty(layout.shape, dtype=layout.dtype)
    read_region(store, layout, tuple(slice(0, n) for n in layout.shape), out)
    return out


def test_info_matches_the_local_copy(served) -> None:
    server, path, _ = served
    far = inspect_store(remote(server)).to_dict()
    near = inspect_store(str(path)).to_dict()
    assert far["store_type"] == "zarrgeno.io.remote.RemoteStore"
    for info in (far, near):
        info.pop("location"), info.pop("store_type")
        for arr in info["arrays"]:
            arr.pop("store_type")
    assert far == near
    assert near["totals"]["nbytes_stored"] > 0 and near["consolidated"] is False


def test_info_command_on_a_url(served, monkeypatch: pytest.MonkeyPatch) -> None:
    server, path, _ = served
    zarr.consolidate_metadata(str(path))
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "2,1")
    result = CliRunner().invoke(app, ["info", server.url("store.zarr"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["consolidated"] is True and data["consolidated_agrees"] is True
    assert [a["path"] for a in data["arrays"]] == ["2L/calldata/GT", "X/calldata/GT", "samples"]
    text = CliRunner().invoke(app, ["info", server.url("store.zarr"), "--summary"]).stdout
    assert "consolidated metadata, agrees with the per-array metadata" in text


def test_consolidated_store_needs_few_requests(served) -> None:
    server, path, written = served
    zarr.consolidate_metadata(str(path))
    _, group = open_store(remote(server))
    np.testing.assert_array_equal(group["X/calldata/GT"][:], written["X"])
    metadata_gets = [p for m, p, _ in server.log.entries if m == "GET" and "/." in p]
    assert len(metadata_gets) == len(set(metadata_gets)), "a metadata document fetched twice"


@pytest.mark.fault
@pytest.mark.parametrize("kind", ["500", "503", "drop", "truncate", "stall"])
def test_each_fault_is_retried_and_data_is_exact(served, kind: str) -> None:
    server, _, written = served
    ref = remote(server, **(STALL if kind == "stall" else {}))
    _, group = open_store(ref)
    # At most as many faults as retries, so no key can exhaust them: the test is exact.
    limit = 4 if kind == "stall" else FAST.retries
    server.inject(Fault(kind, CHUNKS, every=2, limit=limit, stall_seconds=1.0))
    store = ref.mapping_store()
    np.testing.assert_array_equal(read_all(store, group, "2L"), written["2L"])
    np.testing.assert_array_equal(group["X/calldata/GT"][:], written["X"])  # zarr's own path
    faults = server.log.outcomes()[kind]
    zarr_store = group.chunk_store if group.chunk_store is not None else group.store
    stores = {id(s): s for s in (store, zarr_store)}  # one store when the reference shares it
    retried = sum(s.client.retried for s in stores.values())
    assert faults >= 4
    if kind == "drop":  # aiohttp itself retries a request whose reused connection was dropped
        assert retried <= faults
    else:
        assert retried == faults  # one retry per injected fault, none lost, none extra


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("503", "HTTP 503"),
        ("500", "HTTP 500"),
        ("drop", "closed the connection"),
        ("truncate", "cut short"),
        ("stall", "timed out (no data for 0.5 s)"),
    ],
)
@pytest.mark.fault
def test_persistent_fault_is_an_error_never_the_fill_value(served, kind, reason) -> None:
    server, _, _ = served
    ref = remote(server, retries=1, **STALL)
    _, group = open_store(ref)
    server.inject(Fault(kind, r"/2L/calldata/GT/1\.0\.0$", stall_seconds=1.0))
    with pytest.raises(StoreIOError, match=re.escape(reason)) as excinfo:
        read_all(ref.mapping_store(), group, "2L")
    assert "2L/calldata/GT/1.0.0" in str(excinfo.value) and "after 2 attempts" in str(excinfo.value)
    with pytest.raises(StoreIOError, match=re.escape(reason)):
        group["2L/calldata/GT"][300:600]  # zarr would read a failed chunk as fill value


@pytest.mark.fault
def test_a_404_chunk_is_reported_missing(served) -> None:
    server, _, _ = served
    ref = remote(server)
    _, group = open_store(ref)
    server.inject(Fault("404", r"/2L/calldata/GT/2\.1\.0$"))
    with pytest.raises(BadDataError, match=r"chunk 2L/calldata/GT/2\.1\.0 is missing"):
        read_all(ref.mapping_store(), group, "2L")
    assert server.log.outcomes()["404"] == 1, "a 404 is an answer, not retried"


@pytest.mark.fault
def test_failed_listing_is_an_error_not_an_empty_store(served) -> None:
    server, _, _ = served
    server.inject(Fault("503", r"/$"))  # directory index pages
    with pytest.raises(StoreIOError, match="HTTP 503"):
        inspect_store(remote(server, retries=1))


@pytest.mark.fault
def test_failed_metadata_probe_is_an_error(served) -> None:
    server, path, _ = served
    zarr.consolidate_metadata(str(path))
    server.inject(Fault("503", r"/\.zmetadata$"))
    with pytest.raises(StoreIOError, match=r"\.zmetadata: HTTP 503"):
        open_store(remote(server, retries=2))


def test_cache_avoids_a_second_fetch_and_survives_the_server(served, tmp_path: Path) -> None:
    server, _, written = served
    ref = remote(server, cache_dir=str(tmp_path / "cache"))
    _, group = open_store(ref)
    store = ref.mapping_store()
    np.testing.assert_array_equal(read_all(store, group, "2L"), written["2L"])
    first = sum(1 for m, p, _ in server.log.entries if m == "GET" and re.search(CHUNKS, p))
    assert first == 8  # 4 variant chunks x 2 sample chunks, each fetched once
    cached = [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]
    assert len(cached) == 8 and not any(".part-" in p.name for p in cached)
    server.stop()
    np.testing.assert_array_equal(read_all(store, group, "2L"), written["2L"])
    fresh = RemoteStore(server.url("store.zarr"), ref.remote)
    assert fresh["2L/calldata/GT/0.0.0"] == store["2L/calldata/GT/0.0.0"]


def test_remote_store_and_ref_pickle(served) -> None:
    server, _, written = served
    ref = remote(server)
    clone = pickle.loads(pickle.dumps(ref))
    assert clone == ref and clone.remote == FAST
    store = pickle.loads(pickle.dumps(ref.mapping_store()))
    _, group = open_store(clone)
    np.testing.assert_array_equal(read_all(store, group, "X"), written["X"])


def test_options_from_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "3,7")
    monkeypatch.setenv("ZARRGENO_HTTP_RETRIES", "2")
    monkeypatch.setenv("ZARRGENO_CACHE", str(tmp_path))
    opts = StoreRef.from_source("https://example.org/store.zarr").remote
    assert opts is not None
    assert (opts.connect_timeout, opts.read_timeout, opts.retries) == (3, 7, 2)
    assert opts.cache_dir == str(tmp_path)
    assert StoreRef.from_source(str(tmp_path)).remote is None
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "10")
    assert RemoteOptions.from_env().connect_timeout == RemoteOptions.from_env().read_timeout == 10
    for name, value in [("ZARRGENO_HTTP_TIMEOUT", "soon"), ("ZARRGENO_HTTP_RETRIES", "1.5")]:
        monkeypatch.setenv(name, value)
        with pytest.raises(UsageError, match=name):
            RemoteOptions.from_env()
        monkeypatch.delenv(name)
    with pytest.raises(UsageError, match="positive"):
        RemoteOptions(read_timeout=0)


def test_classify() -> None:
    aiohttp = pytest.importorskip("aiohttp")
    info = aiohttp.RequestInfo(url=None, method="GET", headers={}, real_url=None)  # type: ignore[arg-type]

    def status(code: int) -> Exception:
        return aiohttp.ClientResponseError(info, (), status=code, message="x")

    assert [classify(status(c)) for c in (404, 410, 429, 500, 503, 403, 400)] == [
        "missing",
        "missing",
        "retry",
        "retry",
        "retry",
        "fatal",
        "fatal",
    ]
    assert classify(FileNotFoundError()) == "missing"
    assert classify(TimeoutError()) == "retry"
    assert classify(aiohttp.ServerDisconnectedError()) == "retry"
    assert classify(PermissionError()) == "fatal"
    assert classify(ValueError()) == "fatal"


@pytest.mark.parametrize("url", ["gs://bucket/store.zarr", "s3://bucket/store.zarr"])
def test_missing_cloud_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, url: str) -> None:
    for module in ("gcsfs", "gcsfs.core", "s3fs"):
        monkeypatch.setitem(sys.modules, module, None)
    result = CliRunner().invoke(app, ["info", url])
    assert result.exit_code == 2
    assert "pip install 'zarrgeno[remote]'" in result.stderr
    package = "gcsfs" if url.startswith("gs") else "s3fs"
    assert f"stores need {package}: pip" in result.stderr  # the package, not gcsfs.core
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.fault
def test_unreachable_server_is_one_line_exit_6(monkeypatch: pytest.MonkeyPatch) -> None:
    with StoreServer(Path(".")) as server:
        url = server.url("store.zarr")
    monkeypatch.setenv("ZARRGENO_HTTP_RETRIES", "1")
    monkeypatch.setenv("ZARRGENO_HTTP_BACKOFF", "0.01")
    result = CliRunner().invoke(app, ["info", url])
    assert result.exit_code == 6
    assert result.stderr.startswith(f"Error: {url}/") and "cannot connect" in result.stderr


def test_deadline_option_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert RemoteOptions().deadline == 120
    monkeypatch.setenv("ZARRGENO_HTTP_DEADLINE", "7.5")
    assert RemoteOptions.from_env().deadline == 7.5
    assert RemoteOptions.from_env(deadline=3).deadline == 3
    for value in ("soon", "-1"):
        monkeypatch.setenv("ZARRGENO_HTTP_DEADLINE", value)
        with pytest.raises(UsageError, match="ZARRGENO_HTTP_DEADLINE"):
            RemoteOptions.from_env()
    with pytest.raises(UsageError, match="deadline"):
        RemoteOptions(deadline=0)


@pytest.mark.fault
def test_the_deadline_bounds_a_request_retries_included(served) -> None:
    """Stalls each shorter than nothing the server sends, retried: without a deadline, 21
    tries of 0.5 s; with one of 2 s, the read ends at 2 s, naming the chunk."""
    server, _, _ = served
    ref = remote(server, retries=20, read_timeout=0.5, deadline=2.0)
    _, group = open_store(ref)
    server.inject(Fault("stall", r"/2L/calldata/GT/1\.0\.0$", stall_seconds=5.0))
    start = time.monotonic()
    with pytest.raises(StoreIOError, match=r"2L/calldata/GT/1\.0\.0: .* after \d+ attempts"):
        read_all(ref.mapping_store(), group, "2L")
    assert time.monotonic() - start < 4.5
    assert server.log.outcomes()["stall"] <= 5


@pytest.mark.fault
def test_a_server_that_failed_for_good_is_not_asked_again(served) -> None:
    """Once one key has spent its retries the run stops: verify does not wait out every
    other chunk of a server that keeps failing (nor calls them unreadable chunks)."""
    server, _, _ = served
    server.inject(Fault("503", CHUNKS))
    with pytest.raises(StoreIOError, match=r"HTTP 503 .* after 2 attempts; stopped reading"):
        check_store(remote(server, retries=1, fetch_concurrency=4), threads=2)
    # The window's four chunks and the two threads' own in flight, then one probe (the
    # retries are the run's, not each request's); the store has 18 chunks.
    assert server.log.outcomes()["503"] <= 4 + 2 + 1


@pytest.mark.hostile
@pytest.mark.parametrize("fault", ["endless", "oversize"])
def test_a_chunk_is_read_only_up_to_its_bound(served, fault: str) -> None:
    """A body without end is stopped past the array's encoded-size bound; a Content-Length
    above it is refused before a byte of the body is read (the server then sends none)."""
    server, _, _ = served
    ref = remote(server, retries=3)
    _, group = open_store(ref)
    layout = ChunkLayout.of(group["2L/calldata/GT"])
    server.inject(Fault(fault, r"/2L/calldata/GT/1\.0\.0$", stall_seconds=10.0))
    start = time.monotonic()
    url = re.escape(server.url("store.zarr/2L/calldata/GT/1.0.0"))
    with pytest.raises(BadDataError, match=f"chunk {url} holds more than {layout.raw_cap:,}"):
        read_raw(ref.mapping_store(), "2L/calldata/GT/1.0.0", limit=layout.raw_cap)
    assert time.monotonic() - start < 5
    assert server.log.outcomes()[fault] == 1, "a body past its bound is not retried"


@pytest.mark.hostile
def test_metadata_is_read_only_up_to_the_metadata_cap(
    served, monkeypatch: pytest.MonkeyPatch
) -> None:
    server, path, _ = served
    zarr.consolidate_metadata(str(path))
    size = (path / ".zmetadata").stat().st_size
    monkeypatch.setenv("ZARRGENO_MAX_METADATA_BYTES", str(size - 1))
    url = re.escape(server.url("store.zarr/.zmetadata"))
    with pytest.raises(BadDataError, match=f"metadata {url} holds more than {size - 1:,} bytes"):
        open_store(remote(server))
    monkeypatch.setenv("ZARRGENO_MAX_METADATA_BYTES", str(size))
    open_store(remote(server))


@pytest.mark.fault
def test_the_cache_keeps_only_whole_bodies_within_their_bound(served, tmp_path: Path) -> None:
    server, path, written = served
    cache = tmp_path / "cache"
    ref = remote(server, retries=0, cache_dir=str(cache))
    _, group = open_store(ref)
    layout = ChunkLayout.of(group["2L/calldata/GT"])
    store = ref.mapping_store()
    server.inject(
        Fault("truncate", r"/2L/calldata/GT/0\.0\.0$"),
        Fault("endless", r"/2L/calldata/GT/1\.0\.0$"),
    )
    with pytest.raises(StoreIOError, match="cut short"):
        read_raw(store, "2L/calldata/GT/0.0.0", limit=layout.raw_cap)
    store = RemoteStore(server.url("store.zarr"), ref.remote)  # that one stopped: it failed
    with pytest.raises(BadDataError, match="holds more than"):
        read_raw(store, "2L/calldata/GT/1.0.0", limit=layout.raw_cap)
    assert not [p for p in cache.rglob("*") if p.is_file()], "a partial body was cached"
    # A cached file past the bound (put there by other means) is fetched again instead.
    root = ChunkCache(str(cache), server.url("store.zarr")).root
    bogus = root / "2L" / "calldata" / "GT" / "2.0.0"
    bogus.parent.mkdir(parents=True)
    bogus.write_bytes(b"\0" * (layout.raw_cap + 1))
    server.clear_faults()
    store = RemoteStore(server.url("store.zarr"), ref.remote)
    np.testing.assert_array_equal(read_all(store, group, "2L"), written["2L"])
    assert bogus.read_bytes() == (path / "2L/calldata/GT/2.0.0").read_bytes()
