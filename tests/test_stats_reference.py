"""An independent, naive reference for genotype statistics, and helpers to build test stores.

Written separately from zarrgeno's kernel: one Python-level decision per call, no views,
no bit tricks. Every backend and every chunking must agree with it exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numcodecs
import numpy as np
import zarr
from hypothesis import strategies as st

#: Allele codes the generated arrays draw from: ref, alts, missing, and odd negatives.
ALLELES = np.array([0, 0, 0, 0, 1, 1, 2, 3, -1, -1, -2, 127, -128], dtype="i1")


def naive_call(a0: int, a1: int, semantics: str) -> tuple[bool, bool, bool]:
    """(missing, hom_ref, het) of one call, straight from the definitions."""
    if semantics == "tutorial":
        fill = -2 in (a0, a1)  # VCF Zarr's mixed-ploidy fill: missing, never het, in both
        missing = a0 == -1 or fill
        het = a0 != a1 and not fill
    else:
        missing = a0 < 0 or a1 < 0
        het = (not missing) and a0 != a1
    hom_ref = a0 == 0 and a1 == 0
    return missing, hom_ref, het


@dataclass
class Reference:
    """Per-variant (3, n) and per-sample (3, s) counts, and the tutorial's summary numbers."""

    variant: np.ndarray
    sample: np.ndarray

    @property
    def complete_data(self) -> int:
        return int(sum(1 for m in self.variant[0] if m == 0))

    @property
    def more_anc_hom(self) -> int:
        return int(sum(1 for h, t in zip(self.variant[1], self.variant[2], strict=True) if h > t))


def naive_counts(gt: np.ndarray, semantics: str = "tutorial") -> Reference:
    """Count every call of ``gt`` (n, s, 2) one at a time."""
    n, s = gt.shape[:2]
    variant = np.zeros((3, n), dtype=np.int64)
    sample = np.zeros((3, s), dtype=np.int64)
    calls = gt.tolist()
    for i in range(n):
        for j in range(s):
            a0, a1 = calls[i][j]
            for k, flag in enumerate(naive_call(a0, a1, semantics)):
                if flag:
                    variant[k, i] += 1
                    sample[k, j] += 1
    return Reference(variant, sample)


def write_gt(
    store: zarr.storage.BaseStore,
    arrays: dict[str, np.ndarray],
    chunks: tuple[int, int],
    *,
    fill_value: int | None = 0,
    samples: list[str] | None = None,
) -> zarr.hierarchy.Group:
    """A MalariaGEN-layout store holding ``arrays`` by contig, chunked ``chunks`` x 2."""
    root = zarr.open_group(store, mode="w")
    n_samples = next(iter(arrays.values())).shape[1]
    for contig, gt in arrays.items():
        root.create_dataset(
            f"{contig}/calldata/GT",
            data=gt,
            chunks=(chunks[0], chunks[1], 2),
            compressor=numcodecs.Blosc(cname="lz4", clevel=5, shuffle=numcodecs.Blosc.SHUFFLE),
            fill_value=fill_value,
        )
    names = samples or [f"S{j:03d}" for j in range(n_samples)]
    root.create_dataset("samples", data=np.array([x.encode() for x in names], dtype="|S24"))
    return root


@st.composite
def genotype_arrays(draw: st.DrawFn, max_variants: int = 120, max_samples: int = 24) -> np.ndarray:
    """Random calls with whole uniform rows (as real data has), partial calls, odd codes."""
    n = draw(st.integers(0, max_variants))
    s = draw(st.integers(1, max_samples))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    gt = rng.choice(ALLELES, size=(n, s, 2))
    uniform = rng.random(n) < draw(st.sampled_from([0.0, 0.3, 0.9]))
    values = rng.choice(np.array([[0, 0], [-1, -1], [1, 1], [-1, 1]], dtype="i1"), size=n)
    gt[uniform] = values[uniform][:, None, :]
    return gt


@st.composite
def chunkings(draw: st.DrawFn, gt: np.ndarray) -> tuple[int, int]:
    """Variant and sample chunk lengths, often leaving a partial last chunk."""
    n, s = gt.shape[:2]
    return draw(st.integers(1, max(1, n + 3))), draw(st.integers(1, s + 2))
