"""Genotype statistics: the fused counting kernel, its chunk-aligned plan, and the results.

Names are imported on first use, so that importing a backend module (``zarrgeno.stats.backends``)
to start worker processes does not import numpy and zarr first.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "ContigStats": "zarrgeno.stats.results",
    "SampleCounts": "zarrgeno.stats.results",
    "StatsResult": "zarrgeno.stats.results",
    "Semantics": "zarrgeno.stats.kernels",
    "count_calls": "zarrgeno.stats.kernels",
    "compute_stats": "zarrgeno.stats.api",
    "genotype_stats": "zarrgeno.stats.api",
    "plan_stats": "zarrgeno.stats.api",
}

__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'zarrgeno.stats' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
