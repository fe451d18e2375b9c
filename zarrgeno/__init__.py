"""zarrgeno: genotype statistics, inspection, rechunking and recompression for Zarr stores.

The public Python API is listed in ``__all__``; each name is imported on first use, so that
``import zarrgeno`` (and ``zarrgeno --help``) stays cheap.

>>> import zarrgeno
>>> zarrgeno.parse_region("2L:20,000,000-21,000,000")
Region(contig='2L', start=20000000, end=21000000)
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not typing's: importing typing takes longer than all this module
if TYPE_CHECKING:
    from typing import Any

__version__ = "0.1.0"

#: Public name -> (module, attribute), imported on first use.
_API: dict[str, tuple[str, str]] = {
    # opening and inspecting stores
    "open_store": ("zarrgeno.io.store", "open_store"),
    "find_genotypes": ("zarrgeno.io.store", "find_genotypes"),
    "inspect_store": ("zarrgeno.io.inspection", "inspect_store"),
    "consolidate_store": ("zarrgeno.io.consolidate", "consolidate_store"),
    "check_chunks": ("zarrgeno.io.integrity", "check_store"),
    "Region": ("zarrgeno.io.sites", "Region"),
    "parse_region": ("zarrgeno.io.sites", "parse_region"),
    # statistics
    "genotype_stats": ("zarrgeno.stats.api", "genotype_stats"),
    # rewriting stores: one-shot, or a plan to look at before it is executed
    "rechunk": ("zarrgeno.rewrite.rechunk", "rechunk"),
    "recompress": ("zarrgeno.rewrite.recompress", "recompress"),
    "plan_rechunk": ("zarrgeno.rewrite.storeplan", "plan_store"),
    "plan_recompress": ("zarrgeno.rewrite.recompress", "plan_recompress"),
    "execute_plan": ("zarrgeno.rewrite.execute", "execute_store"),
    "verify_stores": ("zarrgeno.rewrite.verify", "verify_stores"),
    "measure_codecs": ("zarrgeno.rewrite.measure", "measure_codecs"),
    # remote stores and simulated data
    # (not `download`: that name is the subpackage zarrgeno.download)
    "download_store": ("zarrgeno.download.fetch", "download"),
    "simulate_store": ("zarrgeno.simulate.genotypes", "simulate_store"),
    # results
    "StoreInfo": ("zarrgeno.io.inspection", "StoreInfo"),
    "IntegrityReport": ("zarrgeno.io.integrity", "IntegrityReport"),
    "StatsResult": ("zarrgeno.stats.results", "StatsResult"),
    "ContigStats": ("zarrgeno.stats.results", "ContigStats"),
    "SampleCounts": ("zarrgeno.stats.results", "SampleCounts"),
    "StorePlan": ("zarrgeno.rewrite.storeplan", "StorePlan"),
    "CopyResult": ("zarrgeno.rewrite.execute", "CopyResult"),
    "VerifyReport": ("zarrgeno.rewrite.verify", "VerifyReport"),
    "CodecReport": ("zarrgeno.rewrite.measure", "CodecReport"),
    "DownloadReport": ("zarrgeno.download.fetch", "DownloadReport"),
    # errors: each maps to one exit code of the command line
    "ExitCode": ("zarrgeno.errors", "ExitCode"),
    "ZarrgenoError": ("zarrgeno.errors", "ZarrgenoError"),
    "UsageError": ("zarrgeno.errors", "UsageError"),
    "MissingInputError": ("zarrgeno.errors", "MissingInputError"),
    "BadDataError": ("zarrgeno.errors", "BadDataError"),
    "TargetExistsError": ("zarrgeno.errors", "TargetExistsError"),
    "StoreIOError": ("zarrgeno.errors", "StoreIOError"),
    "ClusterError": ("zarrgeno.errors", "ClusterError"),
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    try:
        module, attribute = _API[name]
    except KeyError:
        raise AttributeError(f"module 'zarrgeno' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
