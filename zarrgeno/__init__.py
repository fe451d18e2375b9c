"""zarrgeno: genotype statistics, inspection, rechunking and recompression for Zarr stores."""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: The public Python API, imported on first use so that `zarrgeno --help` starts quickly.
_API = {
    "open_store": "zarrgeno.io.store",
    "find_genotypes": "zarrgeno.io.store",
    "simulate_store": "zarrgeno.simulate.genotypes",
    "inspect_store": "zarrgeno.io.inspection",
    "genotype_stats": "zarrgeno.stats.api",
    "Region": "zarrgeno.io.sites",
    "parse_region": "zarrgeno.io.sites",
    "plan_store": "zarrgeno.rewrite.storeplan",
    "plan_recompress": "zarrgeno.rewrite.recompress",
    "execute_store": "zarrgeno.rewrite.execute",
    "verify_stores": "zarrgeno.rewrite.verify",
    "check_store": "zarrgeno.io.integrity",
    "measure_codecs": "zarrgeno.rewrite.measure",
    "consolidate_store": "zarrgeno.io.consolidate",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    module = _API.get(name)
    if module is None:
        raise AttributeError(f"module 'zarrgeno' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
