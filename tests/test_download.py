"""`zarrgeno download` against a real HTTP server on 127.0.0.1 (and fsspec's memory://):
exact mirrors, the tutorial's exclusion, resumption, and injected network faults."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import fsspec
import numcodecs
import numpy as np
import pytest
import zarr
from httpserver import Fault, StoreServer
from typer.testing import CliRunner

from conftest import build_store
from zarrgeno.cli import app
from zarrgeno.download.fetch import (
    MARKER,
    TUTORIAL_EXCLUDE,
    default_dest,
    download,
    execute_download,
    plan_download,
)
from zarrgeno.errors import (
    BadDataError,
    MissingInputError,
    StoreIOError,
    TargetExistsError,
    UsageError,
)
from zarrgeno.io.inspection import inspect_store
from zarrgeno.io.remote import RemoteOptions

FAST = RemoteOptions(connect_timeout=2, read_timeout=2, retries=6, backoff=0.01, max_backoff=0.05)
runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout, res.stderr


def add_tutorial_arrays(path: Path) -> None:
    """AD, GQ and MQ beside each GT, and variants/POS, as in AG1000G-AO."""
    root = zarr.open_group(str(path), mode="a")
    rng = np.random.default_rng(1)
    for contig in ("2L", "X"):
        n, s, _ = root[f"{contig}/calldata/GT"].shape
        arrays = {"AD": ((n, s, 4), "i2"), "GQ": ((n, s), "i1"), "MQ": ((n, s), "f4")}
        for name, (shape, dtype) in arrays.items():
            root.create_dataset(
                f"{contig}/calldata/{name}",
                data=rng.integers(0, 60, size=shape).astype(dtype),
                chunks=(300, 5, *shape[2:]),
                compressor=numcodecs.Blosc("lz4", 5),
            )
        root.create_dataset(f"{contig}/variants/POS", data=np.arange(n, dtype="i4"), chunks=(300,))


def files_of(path: Path) -> dict[str, bytes]:
    """Every file under ``path``, zarrgeno's resume marker included, by relative path."""
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in path.rglob("*") if p.is_file()}


@pytest.fixture
def served(tmp_path: Path):
    """tmp_path/srv/store.zarr (consolidated, with AD/GQ/MQ) over HTTP: (server, path)."""
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path))
    add_tutorial_arrays(path)
    zarr.consolidate_metadata(str(path))
    with StoreServer(path.parent) as server:
        yield server, path


@pytest.fixture(autouse=True)
def _fast_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ZARRGENO_HTTP_TIMEOUT", "2")
    monkeypatch.setenv("ZARRGENO_HTTP_RETRIES", "6")
    monkeypatch.setenv("ZARRGENO_HTTP_BACKOFF", "0.01")


def test_download_is_an_exact_verified_copy(served, tmp_path: Path) -> None:
    server, path = served
    dest = tmp_path / "mirror"
    seen = [0, 0]

    def progress(files: int, nbytes: int) -> None:
        seen[0] += files
        seen[1] += nbytes

    report = download(server.url("store.zarr"), dest, options=FAST, progress=progress)
    assert files_of(dest) == files_of(path)
    assert seen == [report.fetched_files, report.fetched_bytes]
    assert report.fetched_files == len(files_of(path)) and report.complete_files == 0
    assert report.fetched_bytes == sum(map(len, files_of(path).values()))
    n_chunks = sum(1 for k in files_of(path) if re.search(r"/\d+(\.\d+)*$", k))
    assert report.verified_chunks == n_chunks
    assert not (dest / MARKER).exists()
    assert inspect_store(dest).to_dict()["arrays"] == [
        {**a, "store_type": "zarr.storage.DirectoryStore"}
        for a in inspect_store(server.url("store.zarr")).to_dict()["arrays"]
    ]


def test_tutorial_exclude_matches_gsutil_semantics(served, tmp_path: Path) -> None:
    server, path = served
    dest = tmp_path / "data" / "AG1000G-AO"
    result = runner.invoke(
        app, ["download", server.url("store.zarr"), str(dest), "--exclude", TUTORIAL_EXCLUDE]
    )
    assert result.exit_code == 0, result.output
    source = files_of(path)
    pattern = re.compile(TUTORIAL_EXCLUDE)
    expected = {k: v for k, v in source.items() if not pattern.match(k)}
    mirrored = files_of(dest)
    assert set(mirrored) == set(expected)
    assert not any(re.search(r"calldata/(AD|GQ|MQ)", k) for k in mirrored)
    assert all(mirrored[k] == v for k, v in expected.items() if k != ".zmetadata")
    # The excluded arrays are dropped from .zmetadata too, so zarr does not show them.
    entries = json.loads(mirrored[".zmetadata"])["metadata"]
    assert set(entries) == {
        k for k in json.loads(source[".zmetadata"])["metadata"] if not pattern.match(k)
    }
    info = inspect_store(dest)
    assert info.consolidated_agrees is True
    assert {a.path for a in info.arrays} == {
        "2L/calldata/GT",
        "X/calldata/GT",
        "2L/variants/POS",
        "X/variants/POS",
        "samples",
    }
    assert re.search(rf"^excluded\s+{len(source) - len(expected)}$", result.stdout, re.M)
    assert "dropped the 6 entries of excluded documents" in result.stdout


def test_dry_run_lists_sizes_and_writes_nothing(served, tmp_path: Path) -> None:
    server, path = served
    dest = tmp_path / "mirror"
    result = runner.invoke(
        app,
        ["download", server.url("store.zarr"), str(dest), "-n", "-x", TUTORIAL_EXCLUDE, "--json"],
    )
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    source = files_of(path)
    wanted = {k: len(v) for k, v in source.items() if not re.match(TUTORIAL_EXCLUDE, k)}
    assert {f["key"]: f["size"] for f in plan["fetch"]} == wanted
    assert plan["fetch_bytes"] == sum(wanted.values())
    assert plan["excluded_files"] == len(source) - len(wanted) and plan["mode"] == "new"
    assert not dest.exists()
    table = runner.invoke(app, ["download", server.url("store.zarr"), str(dest), "--dry-run"])
    assert "2L/calldata/GT" in table.stdout and f"would fetch {len(source)} files" in table.stdout
    assert not dest.exists()


def test_include_keeps_group_metadata_and_the_sample_names(served, tmp_path: Path) -> None:
    server, _ = served
    dest = tmp_path / "only-gt"
    download(server.url("store.zarr"), dest, include=[r".*/calldata/GT/"], options=FAST)
    mirrored = files_of(dest)
    assert {".zgroup", ".zmetadata", "2L/.zgroup", "2L/calldata/.zgroup"} <= set(mirrored)
    assert not any("/AD/" in k or "/POS/" in k for k in mirrored)
    arrays = ["2L/calldata/GT", "X/calldata/GT", "samples"]
    assert sorted(a.path for a in inspect_store(dest).arrays) == arrays
    code, out, err = run("stats", str(dest), "--per-sample", "-c", "2L")
    assert code == 0, err
    assert "S000" in out and "sample_0" not in out


def test_include_says_what_it_keeps_and_exclude_drops_it(served, tmp_path: Path) -> None:
    server, _ = served
    url = server.url("store.zarr")
    result = runner.invoke(app, ["download", url, str(tmp_path / "a"), "-i", "2L/", "-n"])
    assert result.exit_code == 0, result.stderr
    assert "also fetching samples: the store needs them" in result.stderr
    plan = plan_download(url, tmp_path / "b", include=["2L/"], exclude=["samples"], options=FAST)
    assert plan.kept == () and not any(f.key.startswith("samples") for f in plan.fetch)


@pytest.mark.fault
def test_faults_are_retried_to_a_verified_copy(served, tmp_path: Path) -> None:
    server, path = served
    chunk = r"/(\d+\.)*\d+$"
    # 12 faults in all, as many as the retries: no file can exhaust them, whatever the order.
    server.inject(
        Fault("503", chunk, every=3, limit=4),
        Fault("500", r"/\.z", every=4, limit=2),
        Fault("drop", chunk, every=5, first=2, limit=2),
        Fault("truncate", chunk, every=4, first=3, limit=3),
        Fault("stall", chunk, every=17, limit=1, stall_seconds=1.0),
    )
    options = RemoteOptions(**{**FAST.__dict__, "retries": 12})
    dest = tmp_path / "mirror"
    report = download(server.url("store.zarr"), dest, options=options)
    assert files_of(dest) == files_of(path)
    faults = server.log.outcomes()
    assert (faults["503"], faults["500"], faults["truncate"], faults["stall"]) == (4, 2, 3, 1)
    assert report.retries >= faults["503"] + faults["500"] + faults["truncate"]


@pytest.mark.fault
def test_failure_stops_cleanly_and_rerun_resumes(served, tmp_path: Path) -> None:
    server, path = served
    url, dest = server.url("store.zarr"), tmp_path / "mirror"
    server.inject(Fault("503", r"/X/calldata/GT/1\.0\.0$"))
    options = RemoteOptions(**{**FAST.__dict__, "retries": 2})
    with pytest.raises(StoreIOError) as excinfo:
        download(url, dest, options=options, jobs=4)
    message = str(excinfo.value)
    assert "X/calldata/GT/1.0.0: HTTP 503 Service Unavailable after 3 attempts" in message
    assert "rerun the same command to resume" in message
    source = files_of(path)
    first = files_of(dest)
    assert json.loads(first.pop(MARKER))["source"] == url, "unfinished: the marker stays"
    assert "X/calldata/GT/1.0.0" not in first and len(first) < len(source)
    assert all(source[k] == v for k, v in first.items()), "every file kept is complete"
    assert not list(dest.rglob("*.part-*"))

    server.clear_faults()
    server.log.clear()
    plan = plan_download(url, dest, options=FAST)
    assert plan.mode == "resume" and {f.key for f in plan.complete} == set(first)
    report = execute_download(plan)
    assert files_of(dest) == source
    gets = {p.split("store.zarr/", 1)[1] for m, p, _ in server.log.entries if m == "GET"}
    # Only what was missing, and .zmetadata, read again to enumerate the store.
    assert gets == set(source) - set(first) | {".zmetadata"}
    assert report.complete_files == len(first) and report.fetched_files == len(source) - len(first)


@pytest.mark.fault
def test_truncated_body_never_lands_under_its_name(served, tmp_path: Path) -> None:
    server, _ = served
    server.inject(Fault("truncate", r"/2L/calldata/GT/0\.0\.0$"))
    dest = tmp_path / "mirror"
    options = RemoteOptions(**{**FAST.__dict__, "retries": 0})
    with pytest.raises(StoreIOError, match=r"2L/calldata/GT/0\.0\.0: the response body was cut"):
        download(server.url("store.zarr"), dest, options=options, jobs=1)
    assert not (dest / "2L/calldata/GT/0.0.0").exists()
    assert not list(dest.rglob("*.part-*"))


@pytest.mark.fault
def test_stale_partial_files_of_dead_runs_are_removed(served, tmp_path: Path) -> None:
    server, path = served
    dest = tmp_path / "mirror"
    plan = plan_download(server.url("store.zarr"), dest, options=FAST)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (dest / "2L/calldata/GT").mkdir(parents=True)
    leftover = dest / f"2L/calldata/GT/0.0.0.part-{dead}-1"
    leftover.write_bytes(b"half a chunk")
    execute_download(plan)
    assert not leftover.exists() and files_of(dest) == files_of(path)


@pytest.mark.hostile
def test_corrupt_remote_chunk_is_refused_unless_no_verify(served, tmp_path: Path) -> None:
    server, path = served
    chunk = path / "X/calldata/GT/0.1.0"
    data = bytearray(chunk.read_bytes())
    data[16:] = bytes(len(data) - 16)  # same length, valid Blosc header, garbage body
    chunk.write_bytes(bytes(data))
    url = server.url("store.zarr")
    result = runner.invoke(app, ["download", url, str(tmp_path / "a")])
    assert result.exit_code == 4 and "X/calldata/GT/0.1.0" in result.stderr
    result = runner.invoke(app, ["download", url, str(tmp_path / "b"), "--no-verify"])
    assert result.exit_code == 0 and files_of(tmp_path / "b") == files_of(path)


@pytest.mark.hostile
def test_destination_rules(served, tmp_path: Path) -> None:
    server, path = served
    url = server.url("store.zarr")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    for overwrite in (False, True):  # --overwrite never deletes a directory of other files
        with pytest.raises(TargetExistsError, match=r"holds no unfinished download of .* 1 file"):
            plan_download(url, other, overwrite=overwrite)
    assert (other / "notes.txt").exists()
    (other / "notes.txt").unlink()
    report = download(url, other, overwrite=True, options=FAST)
    assert report.fetched_files == len(files_of(path))
    # A finished mirror keeps no marker: a rerun is refused like any existing directory.
    for overwrite in (False, True):
        with pytest.raises(TargetExistsError, match=r"a genotype store .*remove it yourself"):
            plan_download(url, other, overwrite=overwrite)
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / MARKER).write_text(json.dumps({"source": url}))
    with pytest.raises(TargetExistsError, match="holds an unfinished download of"):
        plan_download(url + "-elsewhere", unfinished)
    assert plan_download(url, unfinished).mode == "resume"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert plan_download(url, empty).mode == "new"
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(TargetExistsError, match="is a file"):
        plan_download(url, tmp_path / "a-file")
    assert default_dest("gs://vo_agam_release/v3/snp_genotypes/all/AG1000G-AO/") == Path(
        "data/AG1000G-AO"
    )


@pytest.mark.hostile
def test_cli_errors_are_one_line(served, tmp_path: Path) -> None:
    server, path = served
    cases = [
        (["download", str(path), str(tmp_path / "x")], 2, "is not a URL"),
        (["download", server.url("nothing"), str(tmp_path / "x")], 3, "not a Zarr store"),
        (["download", server.url("store.zarr"), str(tmp_path / "x"), "-x", "("], 2, "regular"),
        (["download", server.url("store.zarr"), "https://example.org/x"], 2, "local"),
    ]
    for args, code, text in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == code, (args, result.output)
        assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


@pytest.mark.hostile
def test_deadline_option_stops_a_trickling_file(served, tmp_path: Path) -> None:
    """--deadline bounds each file, retries included: a server that sends one byte every
    0.3 s (never silent for the 2 s read timeout) is stopped after a second."""
    server, _ = served
    server.inject(Fault("trickle", r"/2L/calldata/GT/1\.0\.0$", interval=0.3))
    dest = tmp_path / "mirror"
    result = runner.invoke(
        app, ["download", server.url("store.zarr"), str(dest), "--deadline", "1"]
    )
    assert result.exit_code == 6, result.output
    (line,) = result.stderr.strip().splitlines()
    assert server.url("store.zarr/2L/calldata/GT/1.0.0") in line and "1 s deadline" in line
    assert "rerun the same command to resume" in line
    assert (dest / MARKER).is_file() and not list(dest.rglob("*.part-*"))


def test_help_has_the_tutorial_example() -> None:
    result = runner.invoke(app, ["download", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "Example: zarrgeno download gs://vo_agam_release" in result.stdout
    assert TUTORIAL_EXCLUDE in result.stdout


def test_metadata_walk_without_zmetadata_and_absent_chunks(tmp_path: Path) -> None:
    """No .zmetadata: found through .zgroup/.zarray and directory pages; a chunk the store
    does not have (written without empty chunks) is reported absent, not an error."""
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path))
    (path / "2L/calldata/GT/3.1.0").unlink()
    with StoreServer(path.parent) as server:
        report = download(server.url("store.zarr"), tmp_path / "m", options=FAST)
    assert report.absent == ("2L/calldata/GT/3.1.0",)
    assert files_of(tmp_path / "m") == files_of(path)


def test_listing_mode_memory_url(tmp_path: Path) -> None:
    """Non-HTTP file systems list the store, with sizes, as gs:// and s3:// do."""
    url = "memory://zarrgeno-download-test/store.zarr"
    build_store(zarr.storage.FSStore(url))
    fs = fsspec.filesystem("memory")
    try:
        plan = plan_download(url, tmp_path / "m", exclude=[r"X/"], options=FAST)
        assert plan.enumeration == "listing" and plan.fetch_bytes is not None
        report = execute_download(plan)
        assert report.fetched_bytes == plan.fetch_bytes
        assert sorted(os.listdir(tmp_path / "m")) == [
            ".zattrs",
            ".zgroup",
            "2L",
            "samples",
        ]
        with pytest.raises(MissingInputError):
            plan_download("memory://zarrgeno-download-test/none", tmp_path / "n")
    finally:
        fs.rm("/zarrgeno-download-test", recursive=True)


@pytest.mark.hostile
def test_unsafe_keys_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "srv" / "store.zarr"
    build_store(str(path))
    zarr.consolidate_metadata(str(path))
    doc = json.loads((path / ".zmetadata").read_text())
    doc["metadata"]["../../escape/.zattrs"] = {}
    (path / ".zmetadata").write_text(json.dumps(doc))
    with StoreServer(path.parent) as server, pytest.raises(BadDataError, match="unsafe key"):
        plan_download(server.url("store.zarr"), tmp_path / "m", options=FAST)
    assert not (tmp_path / "escape").exists()


@pytest.mark.hostile
def test_zip_url_says_what_to_do_instead(tmp_path: Path) -> None:
    """A .zip store is one file: over HTTP its keys cannot be fetched one by one."""
    path = tmp_path / "srv" / "store.zip"
    path.parent.mkdir()
    with zarr.ZipStore(str(path), mode="w") as store:
        build_store(store)
    with StoreServer(path.parent) as server:
        url = server.url("store.zip")
        result = runner.invoke(app, ["download", url, str(tmp_path / "m")])
    assert result.exit_code == 2, result.output
    assert result.stderr.strip().splitlines() == [
        f"Error: {url}: a .zip store over HTTP is not supported; download the file with any "
        f"HTTP client (curl -O {url}) and open it locally (zarrgeno info store.zip)"
    ]
    assert not (tmp_path / "m").exists()
    with pytest.raises(UsageError, match=r"\.zip store over s3:// is not supported"):
        plan_download("s3://bucket/ag/STORE.ZIP/", tmp_path / "m")
    with pytest.raises(UsageError, match=r"open a \.zip where it is"):
        plan_download(f"file://{path}", tmp_path / "m")


def test_moved_unfinished_mirror_resumes_where_it_is(served, tmp_path: Path) -> None:
    """The resume marker travels with the half-done mirror, so a move keeps the resume."""
    server, path = served
    url, first = server.url("store.zarr"), tmp_path / "first"
    server.inject(Fault("503", r"/X/calldata/GT/1\.0\.0$"))
    with pytest.raises(StoreIOError):
        download(url, first, options=RemoteOptions(**{**FAST.__dict__, "retries": 0}))
    server.clear_faults()
    moved = tmp_path / "elsewhere" / "mirror"
    moved.parent.mkdir()
    first.rename(moved)
    plan = plan_download(url, moved, options=FAST)
    assert plan.mode == "resume" and plan.complete
    execute_download(plan)
    assert files_of(moved) == files_of(path)


def test_a_listed_marker_is_not_mirrored(tmp_path: Path) -> None:
    """A source that holds zarrgeno's marker (an unfinished mirror served as it is, or one
    made by 0.1.0) is mirrored without it: it is zarrgeno's, not the store's. (Over HTTP
    the files come from the metadata, which never names it.)"""
    url = "memory://zarrgeno-download-marker/store.zarr"
    store = zarr.storage.FSStore(url)
    build_store(store)
    store[MARKER] = json.dumps({"source": "gs://elsewhere"}).encode()
    try:
        plan = plan_download(url, tmp_path / "m", options=FAST)
        assert plan.excluded == (MARKER,) and plan.mode == "new"
        execute_download(plan)
        assert set(files_of(tmp_path / "m")) == set(store) - {MARKER}
    finally:
        fsspec.filesystem("memory").rm("/zarrgeno-download-marker", recursive=True)


def test_rerun_on_a_mirror_that_kept_its_marker_removes_it(served, tmp_path: Path) -> None:
    """A mirror made by zarrgeno 0.1.0 kept its marker (``"completed": true``): the same
    command resumes it, finds every file complete, and leaves the source's files only."""
    server, path = served
    url, dest = server.url("store.zarr"), tmp_path / "mirror"
    download(url, dest, options=FAST)
    (dest / MARKER).write_text(json.dumps({"source": url, "completed": True}))
    server.log.clear()
    plan = plan_download(url, dest, options=FAST)
    assert plan.mode == "resume" and [f.key for f in plan.fetch] == []
    execute_download(plan)
    assert files_of(dest) == files_of(path)
    assert [p for m, p, _ in server.log.entries if m == "GET"] == ["/store.zarr/.zmetadata"]
