"""gs:// and s3:// over their real protocols: a Google Cloud Storage emulator and moto's S3
server, started on 127.0.0.1 once per module and stopped after. ``info``, ``stats`` and
``download`` of a store uploaded there equal the same commands on the local copy; reads are
anonymous when there are no credentials (public buckets such as Ag1000G's) and signed when
there are; an emulator stopped or frozen in the middle of a run ends the command within the
deadline, in one line, with exit code 6."""

from __future__ import annotations

import importlib.util
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
import zarr
from typer.testing import CliRunner

from conftest import build_store

pytest.importorskip("gcsfs")
pytest.importorskip("s3fs")
for _emulator in ("moto", "gcp_storage_emulator"):  # run as processes: not imported here
    if importlib.util.find_spec(_emulator) is None:
        pytest.skip(f"{_emulator} is not installed", allow_module_level=True)

import s3fs  # noqa: E402
from cloudservers import Emulator  # noqa: E402
from hostile import assert_refused, run_cli  # noqa: E402

from zarrgeno.cli import app  # noqa: E402
from zarrgeno.io.remote import RemoteOptions, classify, describe  # noqa: E402

runner = CliRunner()
#: A chunk request, as each protocol spells its path (unquoted).
CHUNK = r"calldata/GT/\d"


class Cloud:
    """An emulator of protocol ``kind`` holding ``local`` as ``store.zarr`` (readable by
    anyone); started again, with the store, if a test stopped it."""

    def __init__(self, kind: str, local: Path) -> None:
        self.kind, self.local = kind, local
        self.emulator, self.url = self._start()

    def _start(self) -> tuple[Emulator, str]:
        emulator = Emulator(self.kind)
        try:
            return emulator, emulator.upload(self.local, "store.zarr")
        except BaseException:
            emulator.stop()
            raise

    def running(self) -> Emulator:
        if self.emulator.proc.poll() is not None:
            self.emulator, self.url = self._start()
            # An s3fs file system made in this process keeps the endpoint it was made with.
            s3fs.S3FileSystem.clear_instance_cache()
        return self.emulator


@pytest.fixture(scope="module")
def local_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' two-contig store with consolidated metadata, as Ag1000G's stores have."""
    path = tmp_path_factory.mktemp("cloud") / "store.zarr"
    build_store(str(path), contigs={"2L": 1000, "X": 450})
    zarr.consolidate_metadata(str(path))
    return path


@pytest.fixture(scope="module", params=["gs", "s3"])
def cloud(request: pytest.FixtureRequest, local_store: Path) -> Iterator[Cloud]:
    """One emulator per protocol for the module, holding the store (readable by anyone)."""
    cloud = Cloud(request.param, local_store)
    try:
        yield cloud
    finally:
        cloud.emulator.stop()


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str | None]) -> None:
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)


@pytest.fixture
def anonymous(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Cloud:
    """The emulator as a user without credentials reaches it; its request log cleared."""
    use_env(monkeypatch, cloud.running().env())
    cloud.emulator.tap.requests.clear()
    return cloud


def cli_json(*args: str) -> dict[str, Any]:
    result = runner.invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def without(doc: dict[str, Any], *names: str) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in names}


def test_info_equals_local_and_is_anonymous(anonymous: Cloud, local_store: Path) -> None:
    far = cli_json("info", anonymous.url)
    near = cli_json("info", str(local_store))
    assert far["location"] == anonymous.url
    for doc in (far, near):  # the store's class is named at the top and in each array
        doc["arrays"] = [without(a, "store_type") for a in doc["arrays"]]
    assert without(far, "location", "store_type") == without(near, "location", "store_type")
    assert far["consolidated"] and far["totals"] == near["totals"]
    tap = anonymous.emulator.tap
    assert tap.requests and tap.authorized() == 0  # token-less, as for a public bucket


@pytest.mark.parametrize("backend", ["threads", "dask"])
def test_stats_equal_local(anonymous: Cloud, local_store: Path, backend: str) -> None:
    far = cli_json("stats", anonymous.url, "--backend", backend)
    near = cli_json("stats", str(local_store), "--backend", backend)
    volatile = ("store", "elapsed_seconds")
    assert far["contigs"] and without(far, *volatile) == without(near, *volatile)
    lines = [unquote(head.split("\r\n", 1)[0]) for head in anonymous.emulator.tap.requests]
    assert len([line for line in lines if re.search(CHUNK, line)]) >= 12  # every chunk, read
    assert anonymous.emulator.tap.authorized() == 0


def files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_download_equals_local(anonymous: Cloud, local_store: Path, tmp_path: Path) -> None:
    dest = tmp_path / "mirror"
    result = runner.invoke(app, ["download", anonymous.url, str(dest)])
    assert result.exit_code == 0, result.output
    assert files(dest) == files(local_store)


@pytest.mark.parametrize("cloud", ["s3"], indirect=True)
def test_s3_credentials_sign_requests(
    cloud: Cloud, local_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With AWS credentials s3:// requests are signed, so a private bucket reads; without
    them the same store is refused in one line naming the 403."""
    url = cloud.running().upload(local_store, "private.zarr", public=False, bucket="private")
    use_env(monkeypatch, cloud.emulator.env(keys=True))
    tap = cloud.emulator.tap
    tap.requests.clear()
    assert cli_json("info", url)["totals"] == cli_json("info", str(local_store))["totals"]
    assert tap.authorized() == len(tap.requests) > 0
    use_env(monkeypatch, cloud.emulator.env())
    result = runner.invoke(app, ["info", url])
    assert result.exit_code == 6, result.output
    assert result.stderr.startswith(f"Error: {url}/") and "Forbidden" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.fault
@pytest.mark.parametrize("outage", ["frozen", "stopped"])
def test_emulator_lost_mid_run(cloud: Cloud, outage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The emulator is frozen (SIGSTOP: connections open, nothing answered) or killed
    (connections cut, then refused) when the first chunk is asked for, after the metadata
    was read: the command ends within about one deadline with one line and exit code 6,
    however many requests gcsfs or zarrgeno would otherwise retry."""
    emulator = cloud.running()
    use_env(monkeypatch, emulator.env())

    def lose() -> bool:
        if outage == "stopped":
            emulator.stop()
            return True
        emulator.freeze()
        return False

    emulator.tap.requests.clear()
    emulator.tap.arm(CHUNK, lose)
    deadline = 3
    try:
        result = run_cli(
            "stats",
            cloud.url,
            "--backend",
            "threads",
            env={"ZARRGENO_HTTP_DEADLINE": str(deadline)},
            timeout=120,
        )
    finally:
        emulator.thaw()
        emulator.tap.disarm()
        # A frozen emulator still holds the requests that were in flight (up to the read-ahead
        # window): the next test gets a fresh one, not their backlog.
        emulator.stop()
    ended = time.monotonic()
    lines = [head.split("\r\n", 1)[0] for head in emulator.tap.requests]
    assert emulator.tap.tripped.is_set(), f"{result}\nrequests: {lines}"
    says = [f"{cloud.url}/", "calldata/GT/"]
    if outage == "frozen":
        says.append(f"within the {deadline} s deadline")
    assert_refused(result, 6, says=tuple(says), max_seconds=deadline + 60)
    if cloud.kind == "s3" and outage == "stopped":  # the last attempt may meet the deadline
        assert "cannot connect to 127.0.0.1:" in result.err or "deadline" in result.err
    # Ended by the deadline, not by a read timeout (30 s) or gcsfs' own retries (minutes);
    # the margin is for the process to exit on a loaded machine.
    assert ended - emulator.tap.tripped_at <= deadline + 10, str(result)


def test_botocore_network_errors_are_retried() -> None:
    """botocore's connection errors are not OSError: zarrgeno retries them all the same."""
    from botocore import exceptions

    refused = exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9/b/k")
    assert classify(refused) == "retry"
    assert describe(refused, RemoteOptions()) == "cannot connect to 127.0.0.1:9"
    assert classify(exceptions.ConnectionClosedError(endpoint_url="http://127.0.0.1:9")) == "retry"
    assert classify(exceptions.NoCredentialsError()) == "fatal"
