"""How remote stores are read: connect and read timeouts, the deadline of each request,
retries with back-off, and where the local chunk cache lives, from defaults, the
``ZARRGENO_HTTP_*`` and
``ZARRGENO_CACHE`` environment variables and explicit overrides. Only plain values live
here, so that the options can be parsed, compared and pickled into worker tasks without
importing any file-system library.
"""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from zarrgeno.defaults import (
    CACHE_ENV,
    DEFAULT_FETCH_CONCURRENCY,
    FETCH_CONCURRENCY_ENV,
    MAX_FETCH_CONCURRENCY,
)
from zarrgeno.errors import UsageError

TIMEOUT_ENV = "ZARRGENO_HTTP_TIMEOUT"
RETRIES_ENV = "ZARRGENO_HTTP_RETRIES"
BACKOFF_ENV = "ZARRGENO_HTTP_BACKOFF"
DEADLINE_ENV = "ZARRGENO_HTTP_DEADLINE"


@dataclass(frozen=True)
class RemoteOptions:
    """How remote stores are read: timeouts, retries and an optional local chunk cache.

    ``connect_timeout`` bounds opening a connection, ``read_timeout`` the longest silence
    while waiting for data. A failed request is tried ``retries`` more times, waiting
    ``backoff`` seconds, then twice as long each time (at most ``max_backoff``, with jitter).
    ``deadline`` bounds the whole request, retries and waits included: a server that
    answers a byte at a time, never silent for as long as ``read_timeout``, is stopped
    there too. ``fetch_concurrency`` chunk requests are kept in flight ahead of their
    use by each process (and bound how many bodies it holds at once).
    """

    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    deadline: float = 120.0
    retries: int = 4
    backoff: float = 0.5
    max_backoff: float = 10.0
    cache_dir: str | None = None
    fetch_concurrency: int = DEFAULT_FETCH_CONCURRENCY

    def __post_init__(self) -> None:
        if not 1 <= self.fetch_concurrency <= MAX_FETCH_CONCURRENCY:
            raise UsageError(
                f"the fetch concurrency must be 1 to {MAX_FETCH_CONCURRENCY}, "
                f"got {self.fetch_concurrency}"
            )
        if not (self.connect_timeout > 0 and self.read_timeout > 0 and self.deadline > 0):
            raise UsageError("timeouts and the deadline must be positive numbers of seconds")
        if self.retries < 0 or self.backoff < 0 or self.max_backoff < 0:
            raise UsageError("retries and back-off must not be negative")
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", str(Path(self.cache_dir).expanduser().absolute()))

    @classmethod
    def from_env(cls, **overrides: Any) -> RemoteOptions:
        """Defaults, then ``$ZARRGENO_HTTP_TIMEOUT`` (``READ`` or ``CONNECT,READ`` seconds),
        ``$ZARRGENO_HTTP_DEADLINE`` (seconds), ``$ZARRGENO_HTTP_RETRIES``,
        ``$ZARRGENO_HTTP_BACKOFF``, ``$ZARRGENO_FETCH_CONCURRENCY``, ``$ZARRGENO_CACHE``,
        then ``overrides`` whose value is not None."""
        values: dict[str, Any] = {}
        text = os.environ.get(TIMEOUT_ENV, "").strip()
        if text:
            parts = [_number(TIMEOUT_ENV, p) for p in text.split(",")]
            if len(parts) > 2:
                raise UsageError(f"{TIMEOUT_ENV}={text!r}: give READ or CONNECT,READ seconds")
            values["connect_timeout"], values["read_timeout"] = parts[0], parts[-1]
        if os.environ.get(DEADLINE_ENV, "").strip():
            values["deadline"] = _number(DEADLINE_ENV, os.environ[DEADLINE_ENV])
        if os.environ.get(RETRIES_ENV, "").strip():
            retries = _number(RETRIES_ENV, os.environ[RETRIES_ENV])
            if retries != int(retries):
                raise UsageError(f"{RETRIES_ENV} must be a whole number")
            values["retries"] = int(retries)
        if os.environ.get(BACKOFF_ENV, "").strip():
            values["backoff"] = _number(BACKOFF_ENV, os.environ[BACKOFF_ENV])
        if os.environ.get(FETCH_CONCURRENCY_ENV, "").strip():
            window = _number(FETCH_CONCURRENCY_ENV, os.environ[FETCH_CONCURRENCY_ENV])
            if window != int(window):
                raise UsageError(f"{FETCH_CONCURRENCY_ENV} must be a whole number")
            values["fetch_concurrency"] = int(window)
        if os.environ.get(CACHE_ENV, "").strip():
            values["cache_dir"] = os.environ[CACHE_ENV].strip()
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_timeout(self, seconds: float | None) -> RemoteOptions:
        """Both timeouts set to ``seconds`` (unchanged when None)."""
        if seconds is None:
            return self
        return replace(self, connect_timeout=seconds, read_timeout=seconds)

    def delay(self, attempt: int) -> float:
        """Seconds to wait before retry number ``attempt`` (1, 2, ...): doubling, jittered."""
        return min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1)


def _number(name: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"{name}={text!r} must be a finite, non-negative number")
    return value
