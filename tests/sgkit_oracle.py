"""sgkit's QC statistics of a scikit-allel store, and zarrgeno's Zarr output as sgkit opens it.

Run by tests/test_sgkit_oracle.py in the sgkit oracle venv (``make sgkit-venv``), once per
test module (sgkit's numba kernels take seconds to compile):

    python sgkit_oracle.py STORE ZARRGENO_OUTPUT OUT.npz CONTIG [CONTIG ...]

It imports nothing from zarrgeno: it is what an sgkit 0.10 user would write. The contigs'
``calldata/GT``, ``variants/REF`` and ``variants/ALT`` become one dataset
(``create_genotype_call_dataset``, every contig's variants in turn); OUT.npz holds, under
``sgkit:NAME``, what ``variant_stats``, ``sample_stats`` and ``count_variant_genotypes``
give; under ``masked:NAME`` what ``variant_stats`` gives with each half call (one allele
missing) made missing first; ``sgkit:variant_hwe_p_value`` from ``hardy_weinberg_test``
on the variants of two listed alleles (``biallelic``, a mask); and under ``loaded:NAME``
each variable of ZARRGENO_OUTPUT's ``qc`` group opened with ``sgkit.load_dataset``, with
``loaded_dims`` (JSON: each variable's dimensions) and ``loaded_sizes``.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np


def genotype_dataset(store: str, contigs: list[str]) -> tuple[Any, np.ndarray]:
    """The contigs' calls as an sgkit dataset, and each variant's listed alleles (REF and
    ALT; a variant with ``ALT .`` has two, as in plink2 and zarrgeno)."""
    import sgkit
    import zarr

    root = zarr.open_group(store, mode="r")
    gt = np.concatenate([root[f"{c}/calldata/GT"][:] for c in contigs])
    ref = np.concatenate([root[f"{c}/variants/REF"][:] for c in contigs]).astype(object)
    alt = np.concatenate([root[f"{c}/variants/ALT"][:] for c in contigs]).astype(object)
    sizes = [root[f"{c}/calldata/GT"].shape[0] for c in contigs]
    samples = root["samples"][:] if "samples" in root else root[f"{contigs[0]}/samples"][:]
    alleles = np.concatenate([ref[:, None], alt], axis=1)
    n_alleles = np.maximum(2, (alleles != "").sum(axis=1))
    ds = sgkit.create_genotype_call_dataset(
        variant_contig_names=contigs,
        variant_contig=np.repeat(np.arange(len(contigs)), sizes),
        variant_position=np.concatenate([root[f"{c}/variants/POS"][:] for c in contigs]),
        variant_allele=alleles,
        sample_id=np.asarray(samples, dtype=object),
        call_genotype=gt,
    )
    return ds, n_alleles


def main(argv: list[str]) -> int:
    store, output, out, *contigs = argv
    import sgkit

    ds, n_alleles = genotype_dataset(store, contigs)
    result: dict[str, np.ndarray] = {"n_alleles": n_alleles}
    dims: dict[str, list[str]] = {}

    def keep(prefix: str, computed: Any) -> None:
        for name, var in computed.compute().data_vars.items():
            result[f"{prefix}:{name}"] = var.values
            dims[name] = list(var.dims)

    keep("sgkit", sgkit.variant_stats(ds, merge=False))
    keep("sgkit", sgkit.sample_stats(ds, merge=False))
    keep("sgkit", sgkit.count_variant_genotypes(ds, merge=False))

    gt = ds["call_genotype"].values
    half = (gt < 0).any(axis=2) & (gt >= 0).any(axis=2)
    whole = np.where(half[..., None], np.int8(-1), gt).astype(gt.dtype)
    call_dims = ds["call_genotype"].dims
    masked = ds.assign(call_genotype=(call_dims, whole), call_genotype_mask=(call_dims, whole < 0))
    keep("masked", sgkit.variant_stats(masked, merge=False))
    result["half_calls"] = half

    biallelic = n_alleles == 2
    result["biallelic"] = biallelic
    two = ds.isel(variants=biallelic, alleles=slice(0, 2))
    keep("sgkit", sgkit.hardy_weinberg_test(two, merge=False))

    loaded = sgkit.load_dataset(output, group="qc").compute()
    for name in loaded.variables:
        result[f"loaded:{name}"] = loaded[name].values
    loaded_dims = {str(n): list(loaded[n].dims) for n in loaded.variables}
    result["sgkit_dims"] = np.array(json.dumps(dims))
    result["loaded_dims"] = np.array(json.dumps(loaded_dims))
    result["loaded_sizes"] = np.array(json.dumps(dict(loaded.sizes)))
    np.savez(out, **result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
