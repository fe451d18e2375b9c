"""zarrgeno: genotype statistics, inspection, rechunking and recompression for Zarr stores."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: The public Python API, imported on first use so that `zarrgeno --help` starts quickly.
_API = {
    "open_store": "zarrgeno.store",
    "find_genotypes": "zarrgeno.store",
    "simulate_store": "zarrgeno.simulate",
    "inspect_store": "zarrgeno.inspection",
    "genotype_stats": "zarrgeno.stats.api",
    "Region": "zarrgeno.sites",
    "parse_region": "zarrgeno.sites",
    "plan_store": "zarrgeno.rechunk",
    "plan_recompress": "zarrgeno.recompress",
    "execute_store": "zarrgeno.copying",
    "verify_stores": "zarrgeno.verify",
    "check_store": "zarrgeno.integrity",
    "measure_codecs": "zarrgeno.codecs_bench",
    "consolidate_store": "zarrgeno.consolidate",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'zarrgeno' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
