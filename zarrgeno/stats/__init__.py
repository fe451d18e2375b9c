"""Genotype statistics: the fused counting kernel, its chunk-aligned plan, and the results."""

from __future__ import annotations

from zarrgeno.stats.api import compute_stats, genotype_stats, plan_stats
from zarrgeno.stats.kernels import Semantics, count_calls
from zarrgeno.stats.results import ContigStats, SampleCounts, StatsResult

__all__ = [
    "ContigStats",
    "SampleCounts",
    "Semantics",
    "StatsResult",
    "compute_stats",
    "count_calls",
    "genotype_stats",
    "plan_stats",
]
