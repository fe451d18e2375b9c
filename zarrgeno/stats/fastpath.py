"""The compiled counting kernel: one pass (zarrgeno/stats/_kernel.c), every count.

A call's two int8 alleles are read as one little-endian uint16 ``x = a0 + 256*a1`` (bytes
as unsigned). Hom-ref is ``x == 0``; het is ``low byte != high byte``; missing is
``low byte == 0xFF`` (tutorial: allele 0 is -1) or either byte >= 0x80 (sgkit: any
allele negative); a call holding the mixed-ploidy fill -2 (0xFE) is missing, not het, in
both. Under the tutorial rule it also counts the partial calls (one allele missing:
``0/.``, ``./1``, a haploid call stored as ``[0, -1]``), which that rule counts as het and
the sgkit rule as missing. The C loop packs a call's three flags into 10-bit fields of one
int32, so each call costs one addition to its row's total and one to its column's, and releases
the GIL while it runs; this module splits rows wider than 1023 calls so that no field can
overflow. On x86-64 CPUs with AVX2, the C code counts 16 calls per vector instead, in
row segments of up to 64 calls with no scalar remainder (``_kernel.simd()`` says which
path runs; the tests run both).

int16, int32 and int64 calls in native byte order (VCF Zarr allows them; bio2zarr writes
int16 once an allele index passes 127) take a plain compiled loop over the two alleles'
values (:func:`count_wide`): the same flags and packed fields, no byte tricks.

numpy needs one pass per flag and pays loop set-up for every row of 50 calls; the
compiled loop reads each byte once (see docs/performance.md for the measured difference).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarrgeno.stats import _kernel

MISSING, HOM_REF, HET = 0, 1, 2
#: Largest count a 10-bit field holds: the C loop takes at most this many columns.
FIELD_MAX = 1023
#: Allele dtypes the compiled loops read (native byte order): int8 and the wider ones.
COMPILED = tuple(np.dtype(t) for t in (np.int8, np.int16, np.int32, np.int64))


def count_int8(
    gt: np.ndarray,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
    mask: np.ndarray | None = None,
) -> int:
    """Add the counts of columns ``c0:c1`` of C-contiguous int8 ``gt`` (n, s, 2) to
    ``variant`` (3, n), unsigned, and ``sample`` (3, c1 - c0); return the number of partial
    calls counted as het (0 under the sgkit rule). With ``mask`` (n bools, C-contiguous),
    only its True rows are counted, where they lie: the others' ``variant`` columns are
    left as they are and add nothing to ``sample``."""
    return _count(gt, 1, c0, c1, sgkit, variant, sample, mask)


#: Decoded bytes the kernel gathers before counting them (_kernel.c's INCACHE_BYTES).
INCACHE_BYTES = 2**18
_BLOCK_BUFFERS = threading.local()


def count_blosc_int8(
    chunk: bytes | memoryview,
    lz4: int,
    blocksize: int,
    rows: int,
    stride: int,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
) -> int:
    """:func:`count_int8` of the first ``rows`` rows of ``stride`` calls of a Blosc chunk of
    int8 calls, decoded a few blocks (``blocksize`` bytes each; 0 for a chunk stored as
    is) at a time into this thread's small buffer and counted there, while in cache.
    ``lz4``: the address of ``LZ4_decompress_safe``. The chunk's header must have been
    checked against the chunk's size (:func:`zarrgeno.io.chunks.check_blosc_header`); a
    block that does not decode raises ValueError. ``c1 - c0`` is at most FIELD_MAX and
    ``variant`` (3, rows) unsigned and C-contiguous."""
    if not 0 <= c0 <= c1 <= min(stride, c0 + FIELD_MAX):
        raise ValueError(f"columns {c0}:{c1} of {stride}: at most {FIELD_MAX} in the chunk")
    if not (variant.shape == (3, rows) and variant.dtype.kind == "u"):
        raise ValueError(f"variant must be unsigned (3, {rows})")
    chunk, buffer = _block_buffer(chunk, blocksize, stride)
    cols = np.zeros((3, c1 - c0), dtype=np.int64)
    partial = _kernel.blosc_count(
        chunk, lz4, rows, stride, c0, c1, bool(sgkit), variant, variant.itemsize, cols, buffer
    )
    sample += cols
    return int(partial)


def _block_buffer(
    chunk: bytes | memoryview, blocksize: int, stride: int
) -> tuple[bytes | memoryview, np.ndarray]:
    """The chunk (copied when it does not start on two bytes: the kernels read calls as
    uint16) and this thread's buffer for a few of its blocks, grown as needed."""
    need = INCACHE_BYTES + blocksize + 2 * stride
    buffer: np.ndarray | None = getattr(_BLOCK_BUFFERS, "buffer", None)
    if buffer is None or buffer.size < need:
        buffer = _BLOCK_BUFFERS.buffer = np.empty(need, dtype=np.uint8)
    if np.frombuffer(chunk, dtype=np.uint8).ctypes.data % 2:
        chunk = bytes(chunk)
    return chunk, buffer


def count_wide(
    gt: np.ndarray,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
    mask: np.ndarray | None = None,
) -> int:
    """:func:`count_int8` for C-contiguous int16, int32 or int64 ``gt`` in native order."""
    if gt.dtype not in COMPILED[1:]:
        raise ValueError(f"count_wide takes native int16, int32 or int64, not {gt.dtype}")
    return _count(gt, gt.dtype.itemsize, c0, c1, sgkit, variant, sample, mask)


#: Columns per QC call: at most FIELD_MAX, and a multiple of 8 so that each group's
#: missing-call bits start on a byte.
QC_GROUP = 1016


@dataclass(frozen=True)
class SplitHistogram:
    """Genotype histograms of n variants (1 + K(K+1)/2 columns) kept in two parts: ``hot``
    (n, 4), each row's first four columns (missing, 0/0, 0/1, 1/1), and ``rare``
    (n, columns - 4), the others, which hold counts only on the rows whose ``seen`` byte
    is set: the kernel zeroes a row's rare columns when it first counts a call of an
    allele >= 2 there, and leaves the others as they are (they count as zeros). A work
    unit's rows of four bytes stay in cache, and need no zeroing of 11 columns, where
    whole rows would not.

    >>> split = SplitHistogram.zeros(2, 11, np.dtype(np.uint8))
    >>> split.rare[:] = 9  # stale: not counted until seen
    >>> split.hot[1] = [0, 1, 0, 0]
    >>> split.full()[:, :6].tolist()
    [[0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0]]
    """

    hot: np.ndarray
    rare: np.ndarray
    seen: np.ndarray

    @classmethod
    def zeros(cls, n: int, columns: int, dtype: np.dtype) -> SplitHistogram:
        """Fresh histograms of ``n`` rows, every count zero."""
        hot = np.zeros((n, 4), dtype=dtype)
        return cls(hot, np.empty((n, columns - 4), dtype=dtype), np.zeros(n, dtype=np.uint8))

    def __len__(self) -> int:
        return len(self.hot)

    def __getitem__(self, rows: slice) -> SplitHistogram:
        """The same histograms of ``rows`` (a view)."""
        return SplitHistogram(self.hot[rows], self.rare[rows], self.seen[rows])

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.hot), 4 + self.rare.shape[1])

    def full(self) -> np.ndarray:
        """Whole rows (n, columns): the rare columns of unseen rows as zeros."""
        out = np.zeros(self.shape, dtype=self.hot.dtype)
        out[:, :4] = self.hot
        rows = self.seen != 0
        out[rows, 4:] = self.rare[rows]
        return out


def _hist_layout(hist: np.ndarray | SplitHistogram, n: int) -> tuple[Any, ...]:
    """K and the kernel's histogram arguments (hist, hsize, hstride, rare, rstride, seen) of
    ``hist``, checked to hold ``n`` rows: whole rows (C-contiguous) or a split histogram."""
    empty = np.zeros(0, dtype=np.uint8)
    if isinstance(hist, SplitHistogram):
        hot, rare, seen = hist.hot, hist.rare, hist.seen
        k = _hist_alleles(hist)
        if n == 0 and len(hist) == 0:  # no row to split: as whole rows
            hist = np.zeros(hist.shape, dtype=hot.dtype)
        elif not (
            hot.dtype.kind == "u"
            and rare.dtype == hot.dtype
            and hot.shape == (n, 4)
            and rare.shape[0] == n
            and seen.shape == (n,)
            and seen.dtype == np.uint8
            and all(a.flags.c_contiguous for a in (hot, rare, seen))
        ):
            raise ValueError(f"a split histogram must be C-contiguous unsigned of {n} rows")
        else:
            return k, hot, hot.itemsize, 4, rare, rare.shape[1], seen
    if not (hist.dtype.kind == "u" and hist.flags.c_contiguous and hist.shape[0] == n):
        raise ValueError(f"hist must be a C-contiguous unsigned ({n}, columns) array")
    k = _hist_alleles(hist)
    h = hist.shape[1]
    return k, hist, hist.itemsize, h, hist.reshape(-1)[4:], h, empty


def count_qc(
    gt: np.ndarray,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
    hist: np.ndarray | SplitHistogram,
    qsample: np.ndarray,
    bits: np.ndarray | None,
    cohorts: tuple[np.ndarray, int, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[int, int]:
    """:func:`count_int8` (or :func:`count_wide`) of C-contiguous ``gt`` and, in the same
    pass, the QC counts: ``hist`` (n, 1 + K(K+1)/2), unsigned and C-contiguous (or a
    :class:`SplitHistogram`), gets each row's genotype histogram added (K from its width);
    ``qsample`` (3, c1 - c0) int64 the
    sgkit counts of each column; ``bits`` (n, ceil((c1 - c0) / 8)) uint8, when given, each
    call's missing bit. Returns the partial calls counted as het (tutorial rule) and the
    calls holding an allele >= K, which the histogram leaves out. ``cohorts`` (each
    column's cohort as int32, -1 for none; the number of cohorts; ``out`` (n, cohorts, K)
    unsigned, C-contiguous) adds each row's per-cohort allele counts to ``out`` in the same
    blocks (see :mod:`zarrgeno.stats.qc.cohort_counts`). With ``mask`` (n bools,
    C-contiguous), only its True rows are counted: the others' counts, histogram, bits and
    per-cohort counts are left as they are (the kernel copies the passing rows together a
    block at a time, in cache)."""
    n, s, _ = gt.shape
    if gt.dtype not in COMPILED or not gt.flags.c_contiguous:
        raise ValueError(f"count_qc takes C-contiguous native int8 to int64, not {gt.dtype}")
    k, *layout = _hist_layout(hist, n)
    _check_mask(mask, n)
    if n == 0 or c1 <= c0:
        return 0, 0
    partial = beyond = 0
    target = variant
    if variant.dtype.kind != "u" or not variant.flags.c_contiguous:
        target = np.zeros((3, n), dtype=np.uint64)
    empty = np.zeros((0, 0), dtype=np.uint8)
    for g0 in range(c0, c1, QC_GROUP):
        g1 = min(c1, g0 + QC_GROUP)
        cols = np.zeros((3, g1 - g0), dtype=np.int64)
        qcols = np.zeros((3, g1 - g0), dtype=np.int64)
        part = empty
        if bits is not None:  # one group (up to 1016 samples): straight into bits
            whole = g1 - g0 == c1 - c0 and bits.flags.c_contiguous
            part = bits if whole else np.zeros((n, (g1 - g0 + 7) // 8), dtype=np.uint8)
        by_cohort: tuple[Any, ...] = ()
        if cohorts is not None:
            codes, n_cohorts, out = cohorts
            by_cohort = (codes[g0 - c0 : g1 - c0], n_cohorts, out, out.itemsize)
        p, b = _kernel.qc_count(
            gt, gt.itemsize, n, s, g0, g1, bool(sgkit), target, target.itemsize, cols,
            k, *layout, qcols, part, mask, *by_cohort,
        )  # fmt: skip
        partial, beyond = partial + p, beyond + b
        sample[:, g0 - c0 : g1 - c0] += cols
        qsample[:, g0 - c0 : g1 - c0] += qcols
        if bits is not None and part is not bits:
            at = (g0 - c0) // 8
            bits[:, at : at + part.shape[1]] = part
    if target is not variant:
        variant += target.astype(variant.dtype, copy=False)
    return int(partial), int(beyond)


def count_qc_blosc(
    chunk: bytes | memoryview,
    lz4: int,
    blocksize: int,
    rows: int,
    stride: int,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
    hist: np.ndarray | SplitHistogram,
    qsample: np.ndarray,
    bits: np.ndarray | None,
    cohorts: tuple[np.ndarray, int, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[int, int]:
    """:func:`count_qc` of the first ``rows`` rows of ``stride`` calls of a Blosc chunk of
    int8 calls, decoded a few blocks at a time into this thread's small buffer and counted
    there, while in cache, as :func:`count_blosc_int8` counts them (same chunk checks).
    ``c1 - c0`` is at most FIELD_MAX; ``variant`` (3, rows) unsigned, ``bits``
    (rows, ceil((c1 - c0) / 8)) uint8 and ``cohorts``' codes (c1 - c0 int32) C-contiguous."""
    if not 0 <= c0 <= c1 <= min(stride, c0 + FIELD_MAX):
        raise ValueError(f"columns {c0}:{c1} of {stride}: at most {FIELD_MAX} in the chunk")
    if not (
        variant.shape == (3, rows) and variant.dtype.kind == "u" and variant.flags.c_contiguous
    ):
        raise ValueError(f"variant must be C-contiguous unsigned (3, {rows})")
    k, *layout = _hist_layout(hist, rows)
    if bits is not None and not (
        bits.shape == (rows, (c1 - c0 + 7) // 8)
        and bits.dtype == np.uint8
        and bits.flags.c_contiguous
    ):
        raise ValueError(f"bits must be C-contiguous uint8 ({rows}, {(c1 - c0 + 7) // 8})")
    _check_mask(mask, rows)
    if rows == 0 or c1 <= c0:
        return 0, 0
    chunk, buffer = _block_buffer(chunk, blocksize, stride)
    cols = np.zeros((3, c1 - c0), dtype=np.int64)
    qcols = np.zeros((3, c1 - c0), dtype=np.int64)
    part = np.zeros((0, 0), dtype=np.uint8) if bits is None else bits
    by_cohort: tuple[Any, ...] = ()
    if cohorts is not None:
        by_cohort = (cohorts[0], cohorts[1], cohorts[2], cohorts[2].itemsize)
    partial, beyond = _kernel.blosc_qc(
        chunk, lz4, buffer, rows, stride, c0, c1, bool(sgkit), variant, variant.itemsize, cols,
        k, *layout, qcols, part, mask, *by_cohort,
    )  # fmt: skip
    sample += cols
    qsample += qcols
    return int(partial), int(beyond)


def _hist_alleles(hist: np.ndarray | SplitHistogram) -> int:
    """K of a genotype histogram of 1 + K(K+1)/2 columns (ValueError for another width)."""
    k = 2
    while 1 + k * (k + 1) // 2 < hist.shape[1]:
        k += 1
    if 1 + k * (k + 1) // 2 != hist.shape[1]:
        raise ValueError(f"hist has {hist.shape[1]} columns, not 1 + K(K+1)/2 for any K >= 2")
    return k


def unit_alleles(
    hist: np.ndarray | SplitHistogram,
    n_alleles: np.ndarray | None,
    out: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    width: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int | None]:
    """One pass over a unit's genotype histograms ``hist`` (n, 1 + K(K+1)/2): each
    variant's alleles (``n_alleles`` as given, else the alleles its calls hold, at least
    2), its expected heterozygosity and whether it is polymorphic (plink2 ``--het``, the
    steps of :func:`zarrgeno.stats.qc.inbreeding.expected_het`), how many variants call 0,
    1, ..., K distinct alleles, and the first variant with calls beyond its alleles.
    ``out``: (n,) int64, float64 and uint8 arrays to write the first three into;
    ``width``: the samples counted (at most the histogram dtype's largest count)."""
    n = len(hist)
    k, *layout = _hist_layout(hist, n)
    dtype = layout[0].dtype
    observed = n_alleles is None
    if out is None:
        out = (np.zeros(n, np.int64), np.empty(n, np.float64), np.empty(n, np.uint8))
    alleles, ehet, poly = out
    if not (alleles.shape == ehet.shape == poly.shape == (n,)):
        raise ValueError(f"out must be three arrays of shape ({n},)")
    if n_alleles is not None:
        alleles[:] = n_alleles
    seen = np.zeros(k + 1, dtype=np.int64)
    # each row's calls at most (1/AN comes from a table of 2 * width + 1 entries)
    if width is None:
        width = int(np.iinfo(dtype).max)
    row = _kernel.unit_alleles(*layout, n, k, width, alleles, observed, ehet, poly, seen)
    return alleles, ehet, poly.view(bool), seen, None if row < 0 else int(row)


def allele_counts(hist: np.ndarray) -> np.ndarray:
    """``(n, K)`` int64: each row's count of each allele (REF first) from its genotype
    histogram ``hist`` (n, 1 + K(K+1)/2) of non-negative integer counts, in one compiled
    integer pass (a product with the allele matrix runs in floats, on BLAS threads).

    >>> allele_counts(np.array([[9, 3, 1, 0, 0, 0, 2]])).tolist()  # 0/0 x3, 0/1, 2/2 x2
    [[7, 1, 4]]
    """
    n, h = hist.shape
    k = 2
    while 1 + k * (k + 1) // 2 < h:
        k += 1
    if hist.dtype.kind not in "ui" or 1 + k * (k + 1) // 2 != h:
        raise ValueError("hist must be integer counts of shape (n, 1 + K(K+1)/2)")
    rows = np.ascontiguousarray(hist, dtype=hist.dtype.newbyteorder("="))
    rows = rows.view(np.dtype(f"u{rows.itemsize}"))  # counts are >= 0
    out = np.empty((n, k), dtype=np.int64)
    if n:
        _kernel.allele_counts(rows, rows.itemsize, n, k, out)
    return out


def missing_terms(
    bits: np.ndarray, width: int, ehet: np.ndarray, poly: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per sample (``width``), the polymorphic variants where it has a missing call
    (``bits``: (n, ceil(width / 8)) uint8) and the sum of their ``ehet``, in row order.
    On CPUs with AVX-512 the C code sums 64 samples in registers, one masked add per byte
    of a row's bits (``_kernel.avx512()`` says which path runs): the same doubles."""
    n = len(ehet)
    bits = np.ascontiguousarray(bits, dtype=np.uint8)
    obs = np.zeros(width, dtype=np.int64)
    expected = np.zeros(width, dtype=np.float64)
    _kernel.missing_terms(
        bits, n, (width + 7) // 8, width, np.ascontiguousarray(ehet, np.float64),
        np.ascontiguousarray(poly).view(np.uint8), obs, expected,
    )  # fmt: skip
    return obs, expected


def _count(
    gt: np.ndarray,
    allele: int,
    c0: int,
    c1: int,
    sgkit: bool,
    variant: np.ndarray,
    sample: np.ndarray,
    mask: np.ndarray | None = None,
) -> int:
    n, s, _ = gt.shape
    if n == 0 or c1 <= c0:
        return 0
    _check_mask(mask, n)
    partial = 0
    target = variant
    if variant.dtype.kind != "u" or not variant.flags.c_contiguous:
        target = np.zeros((3, n), dtype=np.uint64)
    for g0 in range(c0, c1, FIELD_MAX):  # a row's 10-bit fields hold at most 1023 calls
        g1 = min(c1, g0 + FIELD_MAX)
        cols = np.zeros((3, g1 - g0), dtype=np.int64)
        if allele == 1:
            partial += _kernel.count_packed(
                gt, n, s, g0, g1, bool(sgkit), target, target.itemsize, cols, mask
            )
        else:
            partial += _kernel.count_wide(
                gt, allele, n, s, g0, g1, bool(sgkit), target, target.itemsize, cols, mask
            )
        sample[:, g0 - c0 : g1 - c0] += cols
    if target is not variant:
        variant += target.astype(variant.dtype, copy=False)
    return int(partial)


def _check_mask(mask: np.ndarray | None, n: int) -> None:
    """Refuse a row mask the kernels cannot read as ``n`` bytes."""
    if mask is not None and not (
        mask.shape == (n,) and mask.dtype in (np.bool_, np.uint8) and mask.flags.c_contiguous
    ):
        raise ValueError(f"mask must be C-contiguous bool or uint8 of shape ({n},)")
