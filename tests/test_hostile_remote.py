"""Hostile and broken servers, met as a user meets them: the ``zarrgeno`` command run as a
process against a real HTTP server on 127.0.0.1 that trickles its answers a byte at a time,
sends a body without end, announces more bytes than a key may hold, or runs on past the
length it announced. Every command ends by itself, within a bound derived from the request
deadline, in one ``Error:`` line with its exit code and a bounded peak RSS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import zarr
from hostile import Tree, assert_refused, run_cli
from httpserver import Fault, StoreServer

from conftest import build_store

#: The request deadline of these tests (ZARRGENO_HTTP_DEADLINE), seconds.
DEADLINE = 3.0
#: The trickling server's pace: one byte every INTERVAL s, well inside the read timeout.
INTERVAL = 0.5
ENV = {
    "ZARRGENO_HTTP_TIMEOUT": "2",
    "ZARRGENO_HTTP_DEADLINE": f"{DEADLINE:g}",
    "ZARRGENO_HTTP_RETRIES": "1",
    "ZARRGENO_HTTP_BACKOFF": "0.01",
}
#: Start-up that is not the network's: the interpreter, imports, worker processes.
START = 25.0
#: A command on a hostile server ends within this: the documented bound (one deadline
#: after the request that meets it starts), three times over, plus start-up.
BOUND = 3 * DEADLINE + START
#: A command that hangs is killed after this (the test then fails).
HANG = 90.0

CHUNK = "2L/calldata/GT/1.0.0"
CHUNK_PATH = r"/2L/calldata/GT/1\.0\.0$"
METADATA_PATH = r"/\.zmetadata$"

#: Commands that read the chunk CHUNK, by name; ``{url}`` and ``{dest}`` are filled in.
CHUNK_READERS = {
    "stats-threads": ["stats", "{url}", "-b", "threads", "--workers", "2"],
    "stats-sequential": ["stats", "{url}", "-b", "sequential"],
    "stats-dask": ["stats", "{url}", "-b", "dask", "--workers", "2"],
    "stats-multiprocessing": ["stats", "{url}", "-b", "multiprocessing", "--workers", "1"],
    "download": ["download", "{url}", "{dest}"],
}
UNIT_TIMEOUT = ["stats", "{url}", "-b", "multiprocessing", "--workers", "1", "--unit-timeout"]
#: Commands that ask the server about the chunk CHUNK (info: its size), or stall on it.
CHUNK_REQUESTERS = {
    **CHUNK_READERS,
    "stats-unit-timeout": [*UNIT_TIMEOUT, "8"],
    "info": ["info", "{url}"],
    "verify": ["verify", "{url}"],
    "recompress": ["recompress", "{url}", "{dest}", "--compressor", "zstd:1"],
}


@pytest.fixture
def served(tmp_path: Path):
    """A consolidated store in tmp_path/srv/store.zarr over HTTP: (server, path)."""
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    with StoreServer(path.parent) as server:
        yield server, path


def _run(served, tmp_path: Path, args: list[str], env: dict[str, str] | None = None):
    """Run ``args`` against the served store; check that the source and the files beside
    DEST were left alone, and that DEST holds no partial file."""
    server, path = served
    source = Tree(path)
    (tmp_path / "canary").write_text("beside DEST")
    beside = Tree(tmp_path / "canary")
    dest = tmp_path / "mirror"
    filled = [a.format(url=server.url("store.zarr"), dest=dest) for a in args]
    result = run_cli(*filled, timeout=HANG, cwd=tmp_path, env={**ENV, **(env or {})})
    source.assert_unchanged()
    beside.assert_unchanged()
    if dest.exists():
        parts = [p for p in dest.rglob("*") if ".part-" in p.name]
        assert not parts, parts
    return result


@pytest.mark.hostile
@pytest.mark.parametrize("command", sorted(CHUNK_REQUESTERS))
def test_a_trickling_chunk_ends_at_the_deadline(served, tmp_path: Path, command: str) -> None:
    server, _ = served
    server.inject(Fault("trickle", CHUNK_PATH, interval=INTERVAL))
    result = _run(served, tmp_path, CHUNK_REQUESTERS[command])
    url = server.url(f"store.zarr/{CHUNK}")
    assert_refused(result, 6, says=(url, f"{DEADLINE:g} s"), max_seconds=BOUND)
    if command == "recompress":  # no target, no staging directory beside it
        assert sorted(p.name for p in tmp_path.iterdir()) == ["canary", "srv"]


@pytest.mark.hostile
def test_verify_stops_at_a_trickling_server(served, tmp_path: Path) -> None:
    """A server that trickles every chunk: verify stops at the first, it does not wait out
    each in turn (and a slow network is not a corrupt chunk)."""
    server, _ = served
    server.inject(Fault("trickle", r"/calldata/GT/\d", interval=INTERVAL))
    result = _run(served, tmp_path, ["verify", "{url}"])
    assert_refused(result, 6, says=(server.url("store.zarr"), "deadline"), max_seconds=BOUND)


@pytest.mark.hostile
def test_unit_timeout_and_deadline_compose(served, tmp_path: Path) -> None:
    """--unit-timeout below the deadline: the stalled unit is stopped by the unit timeout
    (exit 7, naming the chunk), whatever the deadline."""
    server, _ = served
    server.inject(Fault("trickle", CHUNK_PATH, interval=INTERVAL))
    result = _run(served, tmp_path, [*UNIT_TIMEOUT, "2"], env={"ZARRGENO_HTTP_DEADLINE": "600"})
    assert_refused(result, 7, says=(CHUNK, "within 2 s"), max_seconds=3 * 3 * 2 + START)


@pytest.mark.hostile
@pytest.mark.parametrize(
    "command",
    ["info", "verify", "download", "stats-threads", "stats-unit-timeout"],
)
def test_trickling_metadata_ends_at_the_deadline(served, tmp_path: Path, command: str) -> None:
    server, _ = served
    server.inject(Fault("trickle", METADATA_PATH, interval=INTERVAL))
    result = _run(served, tmp_path, CHUNK_REQUESTERS[command])
    url = server.url("store.zarr/.zmetadata")
    assert_refused(result, 6, says=(url, "deadline"), max_seconds=BOUND)


@pytest.mark.hostile
def test_a_trickling_chunk_ends_on_distributed(served, tmp_path: Path) -> None:
    server, _ = served
    server.inject(Fault("trickle", CHUNK_PATH, interval=INTERVAL))
    args = ["stats", "{url}", "-b", "distributed", "--workers", "1"]
    result = _run(served, tmp_path, args)
    # dask's worker logs the task's failure (with its traceback) before zarrgeno's line.
    last = result.err.strip().splitlines()[-1]
    assert not result.timed_out and result.code == 6, str(result)
    assert last.startswith("Error: ") and server.url(f"store.zarr/{CHUNK}") in last, str(result)
    assert "deadline" in last and result.seconds <= BOUND + 20, str(result)


#: Bodies past any bound: without end (chunked), or a Content-Length of 1 TiB.
BODIES = ("endless", "oversize")


@pytest.mark.hostile
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("command", sorted(CHUNK_READERS))
def test_a_chunk_body_past_its_bound_is_refused(
    served, tmp_path: Path, body: str, command: str
) -> None:
    server, _ = served
    server.inject(Fault(body, CHUNK_PATH))
    result = _run(served, tmp_path, CHUNK_READERS[command])
    url = server.url(f"store.zarr/{CHUNK}")
    assert_refused(result, 4, says=(url, "holds more than"), max_seconds=BOUND)


@pytest.mark.hostile
@pytest.mark.parametrize("body", BODIES)
def test_verify_lists_a_chunk_body_past_its_bound(served, tmp_path: Path, body: str) -> None:
    server, _ = served
    server.inject(Fault(body, CHUNK_PATH))
    result = _run(served, tmp_path, ["verify", "{url}", "--json"])
    assert result.code == 4 and "Traceback" not in result.err, str(result)
    assert result.peak_rss_mb <= 300 and not result.timed_out, str(result)
    (problem,) = json.loads(result.out)["problems"]
    assert problem["key"] == CHUNK and "holds more than" in problem["message"]


@pytest.mark.hostile
@pytest.mark.parametrize("body", BODIES)
@pytest.mark.parametrize("command", ["info", "stats-threads", "download"])
def test_metadata_past_the_metadata_cap_is_refused(
    served, tmp_path: Path, body: str, command: str
) -> None:
    server, _ = served
    server.inject(Fault(body, METADATA_PATH))
    env = {"ZARRGENO_MAX_METADATA_BYTES": "1000000"}
    result = _run(served, tmp_path, CHUNK_REQUESTERS[command], env=env)
    url = server.url("store.zarr/.zmetadata")
    assert_refused(result, 4, says=(url, "holds more than 1,000,000 bytes"), max_seconds=BOUND)


@pytest.mark.hostile
@pytest.mark.parametrize("command", ["stats-threads", "stats-multiprocessing", "download"])
def test_a_body_longer_than_announced_is_refused(served, tmp_path: Path, command: str) -> None:
    """Bytes past the Content-Length are never taken for data: the answer is not valid
    HTTP, it is retried on a new connection, then the command stops."""
    server, _ = served
    server.inject(Fault("overlong", CHUNK_PATH))
    result = _run(served, tmp_path, CHUNK_READERS[command])
    url = server.url(f"store.zarr/{CHUNK}")
    assert_refused(result, 6, says=(url, "not valid HTTP", "after 2 attempts"), max_seconds=BOUND)
    assert server.log.outcomes()["overlong"] == 2  # the first try and one retry


@pytest.mark.hostile
@pytest.mark.parametrize(
    ("command", "url"),
    [
        ("info", "ftp://127.0.0.1:1/store.zarr"),
        ("stats", "ftp://127.0.0.1:1/store.zarr"),
        ("download", "ftp://127.0.0.1:1/store.zarr"),
        ("info", "sftp://host/store.zarr"),  # fsspec opens it with paramiko, if installed
        ("download", "nope://x"),  # fsspec knows no such protocol
    ],
)
def test_an_unsupported_protocol_is_a_usage_error(tmp_path: Path, url: str, command: str) -> None:
    result = run_cli(command, url, *(["mirror"] if command == "download" else []), cwd=tmp_path)
    scheme = url.split("://")[0]
    assert_refused(result, 2, says=(f"{scheme}://", "https://", "gs://", "s3://"), max_seconds=60)
    assert sorted(p.name for p in tmp_path.iterdir()) == []
