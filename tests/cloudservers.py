"""Real object-store protocols on 127.0.0.1: Google Cloud Storage through
``gcp-storage-emulator`` and S3 through moto's server, each run as its own process (so a
test can stop or freeze it as a network outage would), with a :class:`Tap` in front that
records each request's head and can stop the emulator at a chosen request.

Clients reach them as they reach the real services: gcsfs through ``STORAGE_EMULATOR_HOST``,
s3fs (botocore) through ``AWS_ENDPOINT_URL_S3``; :meth:`Emulator.env` gives the variables.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

#: The environment of every client in these tests (None: unset): no credentials or settings
#: of the user's, and botocore never asks a cloud machine's metadata service for credentials.
CLEAN_ENV: dict[str, str | None] = {
    "AWS_EC2_METADATA_DISABLED": "true",
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": None,
    "AWS_SECRET_ACCESS_KEY": None,
    "AWS_SESSION_TOKEN": None,
    "AWS_PROFILE": None,
    "AWS_ENDPOINT_URL": None,
    "AWS_ENDPOINT_URL_S3": None,
    "STORAGE_EMULATOR_HOST": None,
    "GOOGLE_APPLICATION_CREDENTIALS": None,
    # zarrgeno's own: a chunk cache would answer chunks without a request.
    "ZARRGENO_CACHE": None,
    "ZARRGENO_HTTP_TIMEOUT": None,
    "ZARRGENO_HTTP_DEADLINE": None,
    "ZARRGENO_HTTP_RETRIES": None,
    "ZARRGENO_HTTP_BACKOFF": None,
}
#: The keys the S3 emulator is written with (moto accepts any).
S3_KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
BUCKET = "zarrgeno-test"


def merged_env(changes: dict[str, str | None]) -> dict[str, str]:
    """``os.environ`` with ``changes`` (None: unset)."""
    env = {**os.environ, **changes}
    return {k: v for k, v in env.items() if v is not None}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], seconds: float = 60) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"the emulator exited with code {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"the emulator did not listen on port {port} within {seconds:g} s")


class Tap:
    """A TCP proxy on 127.0.0.1 in front of ``upstream_port``: forwards every byte, keeps
    the head of each request (:attr:`requests`), and at the first request whose line
    matches ``trip`` calls ``on_trip`` before forwarding it. ``on_trip`` returns True to
    cut every connection and refuse new ones (a stopped server), False to go on
    forwarding (to a frozen one, which accepts and never answers)."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.requests: list[str] = []
        self.trip: re.Pattern[str] | None = None
        self.on_trip: Callable[[], bool] | None = None
        self.tripped = threading.Event()
        self.tripped_at = 0.0  # time.monotonic() of the trip
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, pattern: str, on_trip: Callable[[], bool]) -> None:
        with self._lock:
            self.trip, self.on_trip = re.compile(pattern), on_trip
            self.tripped.clear()

    def disarm(self) -> None:
        with self._lock:
            self.trip = self.on_trip = None

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._closed:
                    client.close()
                    upstream.close()
                    continue
                self._sockets.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, dest: socket.socket, outbound: bool) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                if outbound and self._look(data):
                    return
                dest.sendall(data)
        for sock in (source, dest):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _look(self, data: bytes) -> bool:
        """Record the request heads in ``data``; True when the tap has just cut."""
        text = data.decode("latin-1")
        for match in re.finditer(r"(?:^|\r\n)((?:GET|HEAD|PUT|POST|DELETE) [^\r\n]*)", text):
            head = text[match.start(1) :].split("\r\n\r\n", 1)[0]
            line = urllib.parse.unquote(match.group(1))
            with self._lock:
                self.requests.append(head)
                trip, on_trip = self.trip, self.on_trip
                fire = trip is not None and not self.tripped.is_set() and bool(trip.search(line))
                if fire:
                    self.tripped_at = time.monotonic()
                    self.tripped.set()
            if fire and on_trip is not None and on_trip():
                self.close()
                return True
        return False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = list(self._sockets)
        with contextlib.suppress(OSError):  # wakes the accept(): the port refuses at once
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def authorized(self) -> int:
        """How many requests carried an ``Authorization`` header."""
        return sum(bool(re.search(r"(?im)^authorization:", head)) for head in self.requests)


class Emulator:
    """One emulator process (``kind`` "gs" or "s3") on 127.0.0.1, behind a :class:`Tap`."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        if kind == "gs":
            argv = ["-m", "gcp_storage_emulator", "start", "--host", "127.0.0.1"]
            argv += ["--port", str(self.port), "--in-memory", "--default-bucket", BUCKET, "-q"]
        else:
            argv = ["-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)]
        self.proc = subprocess.Popen(
            [sys.executable, *argv],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=merged_env(CLEAN_ENV),
            start_new_session=True,
        )
        try:
            wait_listening(self.port, self.proc)
        except BaseException:
            self.stop()
            raise
        self.tap = Tap(self.port)

    @property
    def endpoint(self) -> str:
        """The URL clients use: the tap's."""
        return f"http://127.0.0.1:{self.tap.port}"

    def env(self, *, keys: bool = False) -> dict[str, str | None]:
        """The environment of a client of this emulator (S3 keys when ``keys``; None:
        unset)."""
        env = dict(CLEAN_ENV)
        if self.kind == "gs":
            env["STORAGE_EMULATOR_HOST"] = self.endpoint
        else:
            env["AWS_ENDPOINT_URL_S3"] = self.endpoint
            if keys:
                env.update(S3_KEYS)
        return env

    def url(self, path: str, bucket: str = BUCKET) -> str:
        return f"{self.kind}://{bucket}/{path}"

    def upload(self, local: Path, path: str, *, public: bool = True, bucket: str = BUCKET) -> str:
        """Copy directory ``local`` to ``path`` in ``bucket`` (readable by anyone when
        ``public``, S3 only: every object of the GCS emulator is); its URL."""
        if self.kind == "gs":
            from gcsfs.core import GCSFileSystem  # not gcsfs.GCSFileSystem: no gRPC probe

            fs = GCSFileSystem(token="anon", endpoint_url=f"http://127.0.0.1:{self.port}")
        else:
            import s3fs

            acl = {"ACL": "public-read"} if public else {}
            fs = s3fs.S3FileSystem(
                key="testing",
                secret="testing",
                endpoint_url=f"http://127.0.0.1:{self.port}",
                s3_additional_kwargs=acl,
                skip_instance_cache=True,
            )
            if not fs.exists(bucket):
                fs.mkdir(bucket)
        fs.put(str(local), f"{bucket}/{path}", recursive=True)
        return self.url(path, bucket)

    # Popen.send_signal signals only a process not yet reaped: never a reused pid.
    def freeze(self) -> None:
        """Stop the process where it is (SIGSTOP): connections open, nothing answered."""
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """Let a frozen emulator go on (SIGCONT)."""
        self.proc.send_signal(signal.SIGCONT)

    def stop(self) -> None:
        """Kill the emulator (it holds nothing worth a clean shutdown)."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        if getattr(self, "tap", None) is not None:
            self.tap.close()
