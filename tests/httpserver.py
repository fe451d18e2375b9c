"""A real HTTP server on 127.0.0.1 serving a directory, with configurable fault injection.

Used by the remote-store tests instead of a mock of fsspec: requests go through aiohttp,
the loopback network and Python's ``http.server``, so timeouts, dropped connections and
short bodies behave as they do on the internet, only faster. Hostile servers too: one that
trickles its answer a byte at a time (each gap under any read timeout), an endless chunked
body, a Content-Length far above the file's size, and a body that runs on past the
Content-Length it announced.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import io
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: The faults a rule can inject: errors, a dropped connection, a stall of ``stall_seconds``,
#: half the body; and hostile answers: ``trickle`` (the whole answer, status line included,
#: one byte every ``interval`` seconds), ``endless`` (a chunked body that never ends),
#: ``oversize`` (a Content-Length of ``declared`` bytes, then silence) and
#: ``overlong`` (the true answer, then bytes without end past its Content-Length).
FAULTS = (
    "500",
    "503",
    "drop",
    "stall",
    "truncate",
    "404",
    "trickle",
    "endless",
    "oversize",
    "overlong",
)
#: What the hostile answers send without end: 64 KiB blocks of this byte.
_BLOCK = b"\x00" * 65536


@dataclass
class Fault:
    """Inject ``kind`` into requests whose path matches ``pattern``.

    Matching requests are counted; the fault hits request numbers ``first`` (1-based),
    then every ``every``-th after it, at most ``limit`` times (None: no limit).
    ``methods`` restricts the rule to GET and/or HEAD.
    """

    kind: str
    pattern: str = ".*"
    every: int = 1
    first: int = 1
    limit: int | None = None
    methods: tuple[str, ...] = ("GET", "HEAD")
    stall_seconds: float = 3.0
    interval: float = 2.0
    declared: int = 2**40
    seen: int = 0
    hits: int = 0

    def __post_init__(self) -> None:
        if self.kind not in FAULTS:
            raise ValueError(f"unknown fault {self.kind!r}; choose from {FAULTS}")
        self._regex = re.compile(self.pattern)

    def fires(self, method: str, path: str) -> bool:
        if method not in self.methods or not self._regex.search(path):
            return False
        self.seen += 1
        n = self.seen - self.first
        if n < 0 or n % self.every or (self.limit is not None and self.hits >= self.limit):
            return False
        self.hits += 1
        return True


@dataclass
class RequestLog:
    """What the server saw: one (method, path, outcome) per request, thread-safe."""

    entries: list[tuple[str, str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, method: str, path: str, outcome: str) -> None:
        with self.lock:
            self.entries.append((method, path, outcome))

    def outcomes(self) -> Counter[str]:
        with self.lock:
            return Counter(outcome for _, _, outcome in self.entries)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers: tests connection reuse too
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK add ~40 ms to every keep-alive response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _fault(self, method: str) -> Fault | None:
        with self.server.lock:
            for rule in self.server.faults:
                if rule.fires(method, self.path):
                    return rule
        return None

    def _serve(self, method: str) -> None:
        with self.server.lock:
            self.server.in_flight += 1
            self.server.peak = max(self.server.peak, self.server.in_flight)
        try:
            self._answer_request(method)
        finally:
            with self.server.lock:
                self.server.in_flight -= 1

    def _answer_request(self, method: str) -> None:
        if self.server.latency:
            time.sleep(self.server.latency)  # a distant server: every answer waits
        rule = self._fault(method)
        if rule is None:
            self.server.log.add(method, self.path, "ok")
            super_method = super().do_GET if method == "GET" else super().do_HEAD
            super_method()
            return
        self.server.log.add(method, self.path, rule.kind)
        if rule.kind in ("500", "503", "404"):
            self.send_error(int(rule.kind))
        elif rule.kind == "drop":
            self.close_connection = True
            self.connection.shutdown(2)  # no status line at all
        elif rule.kind == "stall":
            time.sleep(rule.stall_seconds)
            self.close_connection = True
        elif rule.kind == "truncate":
            self._truncated(method)
        else:
            self.close_connection = True
            with contextlib.suppress(OSError):  # until the client gives up
                getattr(self, f"_{rule.kind}")(method, rule)

    def _answer(self, method: str) -> bytes:
        """The whole answer (status line, headers, body) the plain server would send."""
        wfile, self.wfile = self.wfile, io.BytesIO()
        try:
            super().do_GET() if method == "GET" else super().do_HEAD()
            return self.wfile.getvalue()  # type: ignore[attr-defined]
        finally:
            self.wfile = wfile

    def _trickle(self, method: str, rule: Fault) -> None:
        """The true answer, one byte every ``rule.interval`` seconds: never silent for as
        long as a read timeout, never done."""
        answer = self._answer(method)
        for i in range(len(answer)):
            self.wfile.write(answer[i : i + 1])
            self.wfile.flush()
            time.sleep(rule.interval)

    def _endless(self, method: str, rule: Fault) -> None:
        """A chunked body that never ends."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        while method == "GET":
            self.wfile.write(b"%x\r\n%s\r\n" % (len(_BLOCK), _BLOCK))

    def _oversize(self, method: str, rule: Fault) -> None:
        """A Content-Length of ``rule.declared`` bytes, then no byte for
        ``rule.stall_seconds``: a client that waits for the body, rather than refusing the
        length at once, runs into its timeouts."""
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(rule.declared))
        self.end_headers()
        time.sleep(rule.stall_seconds if method == "GET" else 0)

    def _overlong(self, method: str, rule: Fault) -> None:
        """The true answer, then bytes without end past its Content-Length (the first
        of them in the same write, so that they arrive with the answer)."""
        self.wfile.write(self._answer(method) + (_BLOCK if method == "GET" else b""))
        while method == "GET":
            self.wfile.write(_BLOCK)

    def _truncated(self, method: str) -> None:
        """Announce the full Content-Length, send half the body, close the connection."""
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            self.send_error(404)
            return
        body = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if method == "GET":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
        self.close_connection = True
        self.connection.shutdown(2)

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    def handle(self) -> None:
        # The client gave up (a timeout) or we dropped the connection on purpose.
        with contextlib.suppress(OSError):
            super().handle()


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a stalled handler must not hold up shutdown

    def __init__(self, directory: Path, latency: float = 0.0):
        handler = functools.partial(_Handler, directory=str(directory))
        super().__init__(("127.0.0.1", 0), handler)
        self.latency = latency
        self.faults: list[Fault] = []
        self.lock = threading.Lock()
        self.log = RequestLog()
        #: Requests being answered now, and the most there were at once.
        self.in_flight = self.peak = 0

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # connection resets during injected faults are expected


class StoreServer:
    """Serve ``directory`` over HTTP on 127.0.0.1 from a daemon thread; ``latency``
    seconds are added to every response, as by a distant server.

    >>> with StoreServer(tmp_path) as server:            # doctest: +SKIP
    ...     server.inject(Fault("503", r"/GT/", every=3))
    ...     url = server.url("store.zarr")
    """

    def __init__(self, directory: Path, *, latency: float = 0.0):
        self.directory = Path(directory)
        self._server = _Server(self.directory, latency)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def __enter__(self) -> StoreServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    @property
    def log(self) -> RequestLog:
        return self._server.log

    @property
    def peak(self) -> int:
        """The most requests the server was answering at once."""
        return self._server.peak

    def inject(self, *faults: Fault) -> None:
        with self._server.lock:
            self._server.faults.extend(faults)

    def clear_faults(self) -> None:
        with self._server.lock:
            self._server.faults.clear()

    @property
    def faults(self) -> list[Fault]:
        return self._server.faults


def interrupt_in_flight(server: StoreServer, argv: list[str], cwd: Path) -> str:
    """Run ``argv`` (a zarrgeno command) with a window of 8 requests, wait until four of
    the server's stalled requests are in flight, press Ctrl-C and return its stderr, having
    checked that it exits 130 at once (not when the requests end) without a traceback."""
    env = {
        **{k: v for k, v in os.environ.items() if k != "ZARRGENO_STORE"},
        "ZARRGENO_FETCH_CONCURRENCY": "8",
        "ZARRGENO_HTTP_TIMEOUT": "60",
    }
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd, env=env
    )
    try:
        deadline = time.monotonic() + 60
        while server.log.outcomes()["stall"] < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.log.outcomes()["stall"] >= 4, "the requests never went out"
        process.send_signal(signal.SIGINT)
        start = time.monotonic()
        _, err = process.communicate(timeout=15)
        assert time.monotonic() - start < 5, "waited for the requests in flight"
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130 and "Error: interrupted" in err
    assert "Traceback" not in err
    return err
