"""QC statistics as an xarray Dataset with sgkit's variable names and dimensions.

sgkit's ``variant_stats`` and ``sample_stats`` name their results ``variant_n_called``,
``variant_allele_frequency``, ``sample_call_rate``...; the same names here let code
written for sgkit read zarrgeno's results (and its Zarr output: each array carries
``_ARRAY_DIMENSIONS``, so ``xarray.open_zarr`` opens it). Dimensions: ``variants`` (every
contig's variants in turn, ``variant_contig`` indexing ``contig_id``), ``alleles`` (REF
first, K of them), ``samples``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from zarrgeno.errors import UsageError

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


def variant_variables(v: Any) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
    """The per-variant variables of one contig's (or a block's) :class:`QcVariants`
    (:mod:`zarrgeno.stats.qc.results`, which imports this module: not named here)."""
    return {name: (dims, np.asarray(get(v))) for name, (dims, get) in VARIANT_VARIABLES.items()}


def sample_variables(result: Any) -> dict[str, tuple[tuple[str, ...], np.ndarray]]:
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


def qc_dataset(result: Any) -> Any:
    """``result`` (a :class:`QcResult`) as an ``xarray.Dataset`` (every contig's
    per-variant statistics must have been kept)."""
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
        np.repeat(np.arange(len(contigs)), [len(v) for v in kept if v is not None]),
    )
    variables.update(sample_variables(result))
    coords = {
        "contig_id": ("contigs", np.array(contigs)),
        "sample_id": ("samples", np.array(result.samples.samples)),
    }
    if result.cohorts is not None:
        from zarrgeno.stats.qc.cohort_counts import dataset_variables  # with cohorts only

        variables.update(dataset_variables(result.cohorts))
        coords["cohorts"] = ("cohorts", np.array(result.cohorts.names))
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={"max_alleles": result.max_alleles, "reports": list(result.reports)},
    )


#: Variants computed and written at once by :func:`write_zarr_group`.
BLOCK = 1 << 20
#: The key xarray reads an array's dimension names from.
DIMENSIONS = "_ARRAY_DIMENSIONS"


def write_zarr_group(
    group: Any,
    result: Any,
    positions: Mapping[str, Callable[[int, int], np.ndarray] | None],
    compressor: Any,
    chunk: int,
) -> None:
    """Write ``result`` into zarr ``group`` as sgkit-named arrays, each with its
    dimensions in ``_ARRAY_DIMENSIONS`` (so that xarray opens the group), computing and
    writing :data:`BLOCK` variants at a time. ``positions`` reads each contig's positions
    (``variant_position``), when known."""
    kept = [c.variants for c in result.contigs]
    if any(v is None for v in kept):
        raise UsageError("the QC variables need the per-variant statistics (per_variant=True)")
    variants = [v for v in kept if v is not None]
    total = sum(len(v) for v in variants)
    k = result.max_alleles
    contigs = [c.contig for c in result.contigs]
    with_pos = all(positions.get(c) is not None for c in contigs)

    def create(name: str, dims: tuple[str, ...], shape: tuple[int, ...], dtype: Any) -> Any:
        chunks = tuple(min(chunk, max(1, n)) if d == "variants" else max(1, n)
                       for d, n in zip(dims, shape, strict=True))  # fmt: skip
        # no fill value: xarray would read it as a missing-value mask and make floats
        array = group.create_dataset(
            name, shape=shape, chunks=chunks, dtype=dtype, compressor=compressor, fill_value=None
        )
        array.attrs[DIMENSIONS] = list(dims)
        return array

    arrays: dict[str, Any] = {}
    offset = 0
    for v in variants:
        n = len(v)
        for lo in range(0, n, BLOCK):
            hi = min(n, lo + BLOCK)
            block = type(v)(v.contig, v.start + lo, v.start + hi, v.hist[lo:hi], v.n_alleles[lo:hi])
            for name, (dims, data) in variant_variables(block).items():
                if name not in arrays:
                    shape = (total, k) if len(dims) == 2 else (total,)
                    arrays[name] = create(name, dims, shape, data.dtype)
                arrays[name][offset + lo : offset + hi] = data
        offset += n
    contig_index = np.repeat(np.arange(len(contigs), dtype=np.int32), [len(v) for v in variants])
    create("variant_contig", ("variants",), (total,), np.int32)[:] = contig_index
    if with_pos:
        pos = create("variant_position", ("variants",), (total,), np.int64)
        at = 0
        for v in variants:
            read = positions[v.contig]
            assert read is not None
            pos[at : at + len(v)] = v.positions(read)
            at += len(v)
    names = np.array(contigs, dtype=str)
    create("contig_id", ("contigs",), names.shape, names.dtype)[:] = names
    samples = np.array(result.samples.samples, dtype=str)
    create("sample_id", ("samples",), samples.shape, samples.dtype)[:] = samples
    for name, (dims, data) in sample_variables(result).items():
        create(name, dims, data.shape, data.dtype)[:] = data
    if result.cohorts is not None:
        from zarrgeno.stats.qc.cohort_counts import write_cohort_arrays  # with cohorts only

        write_cohort_arrays(result.cohorts, create, total, BLOCK)
    group.attrs.update({"max_alleles": k, "reports": list(result.reports)})
