"""QC statistics as an xarray Dataset with sgkit's variable names and dimensions.

sgkit's ``variant_stats`` and ``sample_stats`` name their results ``variant_n_called``,
``variant_allele_frequency``, ``sample_call_rate``...; the same names here let code
written for sgkit read zarrgeno's results (and its Zarr output: each array carries
``_ARRAY_DIMENSIONS``, so ``xarray.open_zarr`` opens it). Dimensions: ``variants`` (every
contig's variants in turn, ``variant_contig`` indexing ``contig_id``), ``alleles`` (REF
first, K of them), ``samples``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from zarrgeno.errors import UsageError

if TYPE_CHECKING:
    from zarrgeno.stats.qc.results import QcResult, QcVariants

#: Per-variant variables: name -> (dimensions, how to get them from QcVariants).
VARIANT_VARIABLES: dict[str, tuple[tuple[str, ...], Any]] = {
    "variant_allele_count": (("variants", "alleles"), lambda v: v.allele_count),
    "variant_allele_total": (("variants",), lambda v: v.allele_number),
    "variant_allele_frequency": (("variants", "alleles"), lambda v: v.allele_frequency),
    "variant_n_called": (("variants",), lambda v: v.n_called),
    "variant_call_rate": (("variants",), lambda v: v.call_rate),
    "variant_n_het": (("variants",), lambda v: v.n_het),
    "variant_n_hom_ref": (("variants",), lambda v: v.n_hom_ref),
    "variant_n_hom_alt": (("variants",), lambda v: v.n_hom_alt),
    "variant_n_non_ref": (("variants",), lambda v: v.n_called - v.n_hom_ref),
    "variant_maf": (("variants",), lambda v: v.maf),
    "variant_hwe_p_value": (("variants",), lambda v: v.hwe_p()),
}


def variant_variables(v: QcVariants) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The per-variant variables of one contig (or one unit) of variants."""
    return {name: (dims, np.asarray(get(v))) for name, (dims, get) in VARIANT_VARIABLES.items()}


def sample_variables(result: QcResult) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The per-sample variables, over every contig (``sample_f``: plink2 --het's F, over
    the autosomes)."""
    s = result.samples
    out = {
        "sample_n_called": (("samples",), s.n_called),
        "sample_call_rate": (("samples",), s.call_rate),
        "sample_n_het": (("samples",), s.n_het),
        "sample_n_hom_ref": (("samples",), s.n_hom_ref),
        "sample_n_hom_alt": (("samples",), s.n_hom_alt),
        "sample_n_non_ref": (("samples",), s.n_het + s.n_hom_alt),
    }
    f = s.inbreeding
    if f is not None:
        out["sample_f"] = (("samples",), f.f)
    return {k: (dims, np.asarray(v)) for k, (dims, v) in out.items()}


def qc_dataset(result: QcResult) -> Any:
    """``result`` as an ``xarray.Dataset`` (every contig's per-variant statistics must
    have been kept)."""
    try:
        import xarray as xr
    except ImportError:
        raise UsageError("to_xarray needs xarray: pip install 'zarrgeno[xarray]'") from None
    kept = [c.variants for c in result.contigs]
    if any(v is None for v in kept):
        raise UsageError(
            "to_xarray needs the per-variant statistics: compute with per_variant=True"
        )
    variables: dict[str, tuple[tuple[str, ...], Any]] = {}
    parts = [variant_variables(v) for v in kept if v is not None]
    for name in VARIANT_VARIABLES:
        dims = parts[0][name][0] if parts else VARIANT_VARIABLES[name][0]
        arrays = [p[name][1] for p in parts]
        variables[name] = (dims, np.concatenate(arrays) if arrays else np.zeros((0,)))
    contigs = [c.contig for c in result.contigs]
    variables["variant_contig"] = (
        ("variants",),
        np.repeat(np.arange(len(contigs)), [v.stop - v.start for v in kept if v is not None]),
    )
    variables.update(sample_variables(result))
    return xr.Dataset(
        variables,
        coords={
            "contig_id": ("contigs", np.array(contigs)),
            "sample_id": ("samples", np.array(result.samples.samples)),
        },
        attrs={"max_alleles": result.max_alleles, "reports": list(result.reports)},
    )
