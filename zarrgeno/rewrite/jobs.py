"""The types of a store rewrite plan, shared by the planner and the executor.

:class:`StorePlan` (every array's :class:`ArrayJob`) is built by zarrgeno.rewrite.storeplan and
carried out by zarrgeno.rewrite.execute; :data:`TEMP_COMPRESSOR` is both the codec the executor
writes temporary arrays with and the one the planner measures to budget them. Living here,
below both, neither module imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numcodecs
import numpy as np

from zarrgeno.io.compression import codec_from_config, format_codec
from zarrgeno.io.store import StoreRef
from zarrgeno.rewrite.arrayplan import ArrayPlan

#: The temporary store is written once and read once: the fastest Blosc setting.
TEMP_COMPRESSOR = numcodecs.Blosc(cname="lz4", clevel=1, shuffle=numcodecs.Blosc.SHUFFLE)


@dataclass(frozen=True)
class ArrayJob:
    """An array's plan plus the metadata its target array is created with."""

    plan: ArrayPlan
    dtype: str
    compressor: dict[str, Any] | None
    filters: tuple[dict[str, Any], ...] | None
    fill_value: Any
    separator: str
    #: The chunks written (inside each shard when sharded); ``plan.target_chunks`` are
    #: the shards then, which the copy tasks write whole.
    chunks: tuple[int, ...] | None = None
    #: Zarr format 3 shards (``sharding_indexed``), or None.
    shards: tuple[int, ...] | None = None

    @property
    def inner_chunks(self) -> tuple[int, ...]:
        """The chunks of the written array (the inner chunks when sharded)."""
        return self.chunks if self.chunks is not None else self.plan.target_chunks

    @property
    def compressor_spec(self) -> str:
        return format_codec(codec_from_config(self.compressor) if self.compressor else None)

    @property
    def filters_spec(self) -> str:
        return ",".join(f["id"] for f in self.filters) if self.filters else "none"

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.plan.to_dict(),
            "dtype": self.dtype,
            "compressor": self.compressor,
            "filters": list(self.filters) if self.filters else None,
            "fill_value": _jsonable(self.fill_value),
            "chunks": list(self.inner_chunks),
            "shards": list(self.shards) if self.shards else None,
        }


@dataclass(frozen=True)
class StorePlan:
    """A whole-store rechunk or recompression: every array's job and how it will run."""

    source: StoreRef = field(compare=False, repr=False)
    jobs: tuple[ArrayJob, ...]
    max_mem: int
    backend: str
    workers: int
    scheduler: str | None
    consolidated: bool
    allow_missing: bool = False
    #: Seconds to wait for a --scheduler before giving up (distributed only).
    timeout: float = 10.0
    #: TLS settings (a ``distributed.Security``) for a tls:// scheduler; None otherwise.
    security: Any = field(default=None, compare=False, repr=False)
    #: The Zarr format written, and the source's.
    zarr_format: int = 2
    source_format: int = 2
    #: The new variants chunk length of a VCF Zarr store whose region_index is rebuilt.
    region_index_chunk: int | None = None
    #: What the user should know about the result (printed on stderr, not refused).
    warnings: tuple[str, ...] = ()

    @property
    def concurrency(self) -> int:
        return max((j.plan.concurrency for j in self.jobs), default=1)

    @property
    def expected_peak(self) -> int:
        """Arrays are copied one after another: the largest array's peak."""
        return max((j.plan.expected_peak for j in self.jobs), default=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            "max_mem": self.max_mem,
            "backend": self.backend,
            "workers": self.workers,
            "scheduler": self.scheduler,
            "consolidated": self.consolidated,
            "allow_missing": self.allow_missing,
            "timeout": self.timeout,
            "expected_peak": self.expected_peak,
            "zarr_format": self.zarr_format,
            "region_index_chunk": self.region_index_chunk,
            "warnings": list(self.warnings),
            "arrays": [j.to_dict() for j in self.jobs],
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value
