"""The fused counting kernel: one pass over a block gives every per-variant and per-sample count."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from zarrgeno.defaults import Semantics
from zarrgeno.errors import BadDataError, UsageError
from zarrgeno.stats.fastpath import (
    COMPILED,
    HET,
    HOM_REF,
    MISSING,
    SplitHistogram,
    count_blosc_int8,
    count_int8,
    count_qc,
    count_qc_blosc,
    count_wide,
)

#: Row order of the count arrays (indices MISSING, HOM_REF, HET).
COUNTS = ("n_missing", "n_hom_ref", "n_het")
#: VCF Zarr's non-allele: the padding of a call with fewer alleles than the ploidy.
FILL = -2
#: Calls per block of the generic path (a dtype the compiled loops do not read).
BLOCK_CALLS = 400_000


def parse_semantics(value: str | Semantics) -> Semantics:
    """``"tutorial"`` / ``"sgkit"`` (also ``"allel"``, ``"scikit-allel"``) -> :class:`Semantics`."""
    if isinstance(value, Semantics):
        return value
    text = str(value).strip().lower()
    if text in ("allel", "scikit-allel", "plink"):
        text = "sgkit"
    try:
        return Semantics(text)
    except ValueError:
        raise UsageError(f"unknown semantics {value!r}; choose tutorial or sgkit") from None


def variant_dtype(n_samples: int) -> np.dtype:
    """The smallest unsigned dtype holding a per-variant count over ``n_samples`` samples."""
    for dtype in (np.uint8, np.uint16, np.uint32):
        if n_samples <= np.iinfo(dtype).max:
            return np.dtype(dtype)
    return np.dtype(np.uint64)


@dataclass(frozen=True)
class BlockCounts:
    """Counts of one block: ``variant[k, i]`` over its samples, ``sample[k, j]`` over its variants.

    ``k`` indexes :data:`COUNTS` (missing, hom-ref, het). Both are additive: per-variant
    counts of two sample ranges add up, per-sample counts of two variant ranges add up.
    ``partial`` counts the block's partial calls (one allele missing) that the tutorial
    rule counts as het (see :func:`partial_calls`); 0 under the sgkit rule.
    """

    variant: np.ndarray
    sample: np.ndarray
    partial: int = 0


def partial_calls(a0: np.ndarray, a1: np.ndarray) -> int:
    """Calls the tutorial rule counts as het with allele 0 negative, plus those it counts as
    called with allele 1 negative: the partial calls (``./1``, ``0/.``, a haploid call
    stored as ``[0, -1]``). With alleles >= -2 that is exactly its het count less the sgkit
    rule's, which counts them as missing.

    >>> partial_calls(np.array([0, -1, 0, 1, -1, 0]), np.array([-1, 1, 1, -2, -1, 0]))
    2
    """
    fill = (a0 == FILL) | (a1 == FILL)
    het_a0_negative = (a0 != a1) & (a0 < 0) & ~fill
    called_a1_negative = (a0 != -1) & (a1 < 0) & ~fill
    return int(np.count_nonzero(het_a0_negative) + np.count_nonzero(called_a1_negative))


def _checked_calls(gt: np.ndarray, columns: tuple[int, int] | None) -> tuple[int, int, int, int]:
    """Refuse what the counting kernels cannot count; the rows, the columns ``c0:c1`` to
    count and their number."""
    if gt.ndim != 3 or gt.shape[2] != 2:
        raise BadDataError(
            f"genotype statistics need diploid calls (variants, samples, 2); got shape {gt.shape}"
        )
    if gt.dtype.kind != "i":
        raise BadDataError(f"genotype calls must be signed integers, got {gt.dtype}")
    n, s, _ = gt.shape
    c0, c1 = (0, s) if columns is None else columns
    if not 0 <= c0 <= c1 <= s:
        raise ValueError(f"columns {columns} outside 0..{s}")
    width = c1 - c0
    return n, c0, c1, width


def count_calls(
    gt: np.ndarray,
    *,
    semantics: Semantics | str = Semantics.TUTORIAL,
    columns: tuple[int, int] | None = None,
    into: np.ndarray | None = None,
    mask: np.ndarray | None = None,
) -> BlockCounts:
    """Count missing, hom-ref and het calls of a ``(variants, samples, 2)`` block in one pass.

    ``columns`` restricts the count to samples ``c0:c1`` without copying (the stored
    edge chunk of an array is wider than its valid samples); ``sample`` then has
    ``c1 - c0`` columns. ``into``, a C-contiguous unsigned ``(3, variants)`` array wide
    enough for its counts, receives the per-variant counts added to what it holds (a
    unit's total over its sample chunks, with no array per block), and is the result's
    ``variant``. ``mask`` (one bool per variant) counts only the variants it passes (a
    site filter), where they lie, with no copy: the others' per-variant counts stay as
    they are (zero without ``into``) and add nothing to ``sample``.

    >>> gt = np.array([[[0, 0], [0, 1], [-1, -1]], [[1, 1], [-1, 1], [0, 0]]], dtype="i1")
    >>> c = count_calls(gt)
    >>> c.variant.tolist()  # rows: missing, hom-ref, het; one column per variant
    [[1, 1], [1, 1], [1, 1]]
    >>> count_calls(gt, semantics="sgkit").variant.tolist()
    [[1, 1], [1, 1], [1, 0]]
    >>> count_calls(gt).partial  # [-1, 1]: missing and het under the tutorial rule
    1
    >>> count_calls(gt, mask=np.array([False, True])).variant.tolist()
    [[0, 1], [0, 1], [0, 1]]
    """
    semantics = parse_semantics(semantics)
    n, c0, c1, width = _checked_calls(gt, columns)
    if into is not None and not (
        into.shape == (3, n) and into.dtype.kind == "u" and into.flags.c_contiguous
    ):
        raise ValueError(f"into must be a C-contiguous unsigned (3, {n}) array")
    variant = np.zeros((3, n), dtype=variant_dtype(width)) if into is None else into
    sample = np.zeros((3, width), dtype=np.int64)
    if mask is not None:
        if mask.shape != (n,) or mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array of shape ({n},)")
        mask = np.ascontiguousarray(mask)
    if n == 0 or width == 0:
        return BlockCounts(variant, sample)
    compiled = gt.dtype in COMPILED  # int8 to int64 in native order
    if mask is not None and not compiled:  # the generic loop: count the passing rows apart
        kept = count_calls(gt[mask], semantics=semantics, columns=columns)
        variant[:, mask] += kept.variant.astype(variant.dtype, copy=False)
        return BlockCounts(variant, kept.sample, kept.partial)
    if into is not None and not compiled:  # the generic loop sets, it does not add
        counted = count_calls(gt, semantics=semantics, columns=columns)
        into += counted.variant.astype(into.dtype, copy=False)
        return BlockCounts(into, counted.sample, counted.partial)
    if compiled:
        rows = gt if gt.flags.c_contiguous else _padded_rows(gt)
        if rows is None:
            rows, c0, c1 = np.ascontiguousarray(gt[:, c0:c1]), 0, width
        elif rows is not gt:
            shift = (gt.ctypes.data - rows.ctypes.data) // (2 * gt.itemsize)
            c0, c1 = c0 + shift, c1 + shift
        count = count_int8 if gt.dtype == np.int8 else count_wide
        partial = count(rows, c0, c1, semantics is Semantics.SGKIT, variant, sample, mask)
    else:
        partial = _count_generic(gt[:, c0:c1], semantics, variant, sample)
    return BlockCounts(variant, sample, partial)


def count_blosc(
    chunk: bytes | memoryview,
    lz4: int,
    blocksize: int,
    rows: int,
    stride: int,
    where: str,
    *,
    semantics: Semantics | str = Semantics.TUTORIAL,
    columns: tuple[int, int],
    into: np.ndarray | None = None,
) -> BlockCounts:
    """:func:`count_calls` of the first ``rows`` rows of a stored Blosc chunk of int8 calls
    ``(rows, stride, 2)`` without decoding it whole: the kernel decodes a few Blosc blocks at a
    time into a small buffer and counts them while they are in cache
    (:func:`zarrgeno.stats.fastpath.count_blosc_int8`: the chunk's header checked, one-byte
    items, LZ4 blocks of ``blocksize`` bytes or stored as is, at most FIELD_MAX columns). A
    block that does not decode is bad data named by ``where``."""
    sgkit = parse_semantics(semantics) is Semantics.SGKIT
    c0, c1 = columns
    if into is not None and not (into.shape == (3, rows) and into.flags.c_contiguous):
        raise ValueError(f"into must be a C-contiguous unsigned (3, {rows}) array")
    variant = np.zeros((3, rows), dtype=variant_dtype(c1 - c0)) if into is None else into
    sample = np.zeros((3, c1 - c0), dtype=np.int64)
    if rows == 0 or c1 == c0:
        return BlockCounts(variant, sample)
    try:
        partial = count_blosc_int8(
            chunk, lz4, blocksize, rows, stride, c0, c1, sgkit, variant, sample
        )
    except ValueError as exc:
        raise BadDataError(f"{where}: cannot decode ({exc})") from None
    return BlockCounts(variant, sample, partial)


@dataclass(frozen=True)
class QcBlock:
    """QC counts of one block beside its :class:`BlockCounts`: ``sample`` (4, width) int64,
    each sample's missing (any allele negative), hom-ref, het and hom-alt calls; ``bits``
    each call's missing bit (variants, ceil(width / 8)) when asked for; ``beyond`` the
    calls holding an allele the histogram has no column for."""

    sample: np.ndarray
    bits: np.ndarray | None
    beyond: int


def count_calls_qc(
    gt: np.ndarray,
    *,
    hist: np.ndarray | SplitHistogram,
    semantics: Semantics | str = Semantics.TUTORIAL,
    columns: tuple[int, int] | None = None,
    into: np.ndarray | None = None,
    bits: bool | np.ndarray = False,
    cohorts: tuple[np.ndarray, int, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[BlockCounts, QcBlock]:
    """:func:`count_calls` and, in the same pass, each variant's genotype histogram added
    to ``hist`` ((variants, 1 + K(K+1)/2), unsigned, C-contiguous, see
    :mod:`zarrgeno.stats.qc.genotypes`; or a
    :class:`~zarrgeno.stats.fastpath.SplitHistogram`), each sample's four genotype classes and, with
    ``bits``, each call's missing bit (into ``bits`` itself when it is an array: uint8,
    C-contiguous, (variants, ceil(width / 8))). ``cohorts`` adds the per-cohort allele
    counts of the same rows, in the same blocks (:func:`zarrgeno.stats.fastpath.count_qc`):
    each counted column's cohort (-1: none), the number of cohorts, and the
    (variants, cohorts, K) array they are added to. With ``mask`` (one bool per variant, as
    :func:`count_calls` takes it), only its True rows are counted, where they lie: the
    others add nothing, and their histogram, bits and per-cohort counts are left as they are.

    >>> gt = np.array([[[0, 0], [0, 1], [-1, 2]], [[2, 1], [1, 1], [3, 3]]], dtype="i1")
    >>> hist = np.zeros((2, 11), dtype=np.uint8)
    >>> counts, qc = count_calls_qc(gt, hist=hist, bits=True)
    >>> hist.tolist()  # missing, 0/0, 0/1, 1/1, 0/2, 1/2, 2/2, 0/3, 1/3, 2/3, 3/3
    [[1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0], [0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 1]]
    >>> qc.sample.tolist()  # rows: missing, hom-ref, het, hom-alt
    [[0, 0, 1], [1, 0, 0], [1, 1, 0], [0, 1, 1]]
    >>> qc.bits.tolist()  # sample 2 is missing at the first variant
    [[4], [0]]
    """
    semantics = parse_semantics(semantics)
    n, c0, c1, width = _checked_calls(gt, columns)
    variant, sample, qsample, packed, mask = _qc_targets(n, width, into, bits, mask)
    partial = beyond = 0
    if n and width:
        rows = gt if gt.dtype in COMPILED and gt.flags.c_contiguous else None
        if rows is None and gt.dtype in COMPILED:
            rows = _padded_rows(gt)
            if rows is not None:
                shift = (gt.ctypes.data - rows.ctypes.data) // (2 * gt.itemsize)
                c0, c1 = c0 + shift, c1 + shift
        if rows is None:  # another layout or byte order: a native copy of the columns
            rows = np.ascontiguousarray(gt[:, c0:c1], dtype=gt.dtype.newbyteorder("="))
            c0, c1 = 0, width
        partial, beyond = count_qc(
            rows, c0, c1, semantics is Semantics.SGKIT, variant, sample, hist, qsample, packed,
            _cohort_codes(cohorts), mask,
        )  # fmt: skip
    return _qc_counted(n, variant, sample, partial, qsample, packed, beyond, mask)


def count_blosc_qc(
    chunk: bytes | memoryview,
    lz4: int,
    blocksize: int,
    rows: int,
    stride: int,
    where: str,
    *,
    hist: np.ndarray | SplitHistogram,
    semantics: Semantics | str = Semantics.TUTORIAL,
    columns: tuple[int, int],
    into: np.ndarray | None = None,
    bits: bool | np.ndarray = False,
    cohorts: tuple[np.ndarray, int, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> tuple[BlockCounts, QcBlock]:
    """:func:`count_calls_qc` of the first ``rows`` rows of a stored Blosc chunk of int8
    calls ``(rows, stride, 2)`` without decoding it whole: the kernel decodes a few Blosc
    blocks at a time and runs the QC counts on them while they are in cache (as
    :func:`count_blosc`; at most FIELD_MAX columns). A block that does not decode is bad
    data named by ``where``."""
    c0, c1 = columns
    variant, sample, qsample, packed, mask = _qc_targets(rows, c1 - c0, into, bits, mask)
    partial = beyond = 0
    if rows and c1 > c0:
        try:
            partial, beyond = count_qc_blosc(
                chunk, lz4, blocksize, rows, stride, c0, c1,
                parse_semantics(semantics) is Semantics.SGKIT, variant, sample, hist, qsample,
                packed, _cohort_codes(cohorts), mask,
            )  # fmt: skip
        except ValueError as exc:
            raise BadDataError(f"{where}: cannot decode ({exc})") from None
    return _qc_counted(rows, variant, sample, partial, qsample, packed, beyond, mask)


def _qc_targets(
    n: int,
    width: int,
    into: np.ndarray | None,
    bits: bool | np.ndarray,
    mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The per-variant counts (``into`` or zeros), zeroed per-sample and sgkit per-sample
    counts, the missing bits asked for and the checked mask of a QC count of ``n`` rows of
    ``width`` columns."""
    variant = np.zeros((3, n), dtype=variant_dtype(width)) if into is None else into
    sample = np.zeros((3, width), dtype=np.int64)
    qsample = np.zeros((3, width), dtype=np.int64)
    packed = None
    if isinstance(bits, np.ndarray):
        if bits.shape != (n, (width + 7) // 8) or bits.dtype != np.uint8:
            raise ValueError(f"bits must be uint8 of shape ({n}, {(width + 7) // 8})")
        packed = bits
    elif bits:
        packed = np.zeros((n, (width + 7) // 8), dtype=np.uint8)
    if mask is not None:
        if mask.shape != (n,) or mask.dtype != np.bool_:
            raise ValueError(f"mask must be a bool array of shape ({n},)")
        mask = np.ascontiguousarray(mask)
    return variant, sample, qsample, packed, mask


def _cohort_codes(
    cohorts: tuple[np.ndarray, int, np.ndarray] | None,
) -> tuple[np.ndarray, int, np.ndarray] | None:
    """``cohorts`` with its column codes as C-contiguous int32, as the kernel reads them."""
    if cohorts is None:
        return None
    return np.ascontiguousarray(cohorts[0], dtype=np.int32), cohorts[1], cohorts[2]


def _qc_counted(
    n: int,
    variant: np.ndarray,
    sample: np.ndarray,
    partial: int,
    qsample: np.ndarray,
    packed: np.ndarray | None,
    beyond: int,
    mask: np.ndarray | None,
) -> tuple[BlockCounts, QcBlock]:
    """The counts of a QC count of ``n`` rows (those ``mask`` passes): each sample's four
    classes from its sgkit counts."""
    counted = n if mask is None else int(np.count_nonzero(mask))
    four = np.empty((4, qsample.shape[1]), dtype=np.int64)
    four[:3] = qsample
    four[3] = counted - qsample.sum(axis=0)  # neither missing, hom-ref nor het: hom-alt
    return BlockCounts(variant, sample, partial), QcBlock(four, packed, beyond)


def _padded_rows(gt: np.ndarray) -> np.ndarray | None:
    """The full-width rows a column window ``gt`` was cut from, or None.

    A stored edge chunk is decoded at full width and handed out as ``chunk[:, :31]``;
    counting the window through the full rows avoids copying it. Only whole rows of the
    same C-contiguous buffer qualify, so nothing outside the buffer is ever read.
    """
    base, size = gt, gt.itemsize
    while isinstance(base.base, np.ndarray):
        base = base.base
    if (
        gt.shape[0] == 0
        or gt.strides[1:] != (2 * size, size)
        or base.dtype != gt.dtype
        or base.ndim != 3
        or not base.flags.c_contiguous
        or base.strides[0] != gt.strides[0]
    ):
        return None
    offset = gt.ctypes.data - base.ctypes.data
    row, within = divmod(offset, base.strides[0])
    if offset < 0 or within % (2 * size) or within // (2 * size) + gt.shape[1] > base.shape[1]:
        return None
    if row + gt.shape[0] > base.shape[0]:
        return None
    return base[row : row + gt.shape[0]]


def _count_generic(
    gt: np.ndarray, semantics: Semantics, variant: np.ndarray, sample: np.ndarray
) -> int:
    """Any signed dtype or memory layout: plain comparisons, block by block. Returns the
    partial calls counted as het."""
    rows = max(1, BLOCK_CALLS // max(1, gt.shape[1]))
    partial = 0
    for r0 in range(0, gt.shape[0], rows):
        block = np.asarray(gt[r0 : r0 + rows])
        a0, a1 = block[..., 0], block[..., 1]
        if semantics is Semantics.TUTORIAL:
            fill = (a0 == FILL) | (a1 == FILL)
            missing = (a0 == -1) | fill
            het = (a0 != a1) & ~fill
            partial += partial_calls(a0, a1)
        else:
            missing = (a0 < 0) | (a1 < 0)
            het = ~missing & (a0 != a1)
        hom_ref = (a0 == 0) & (a1 == 0)
        for k, plane in ((MISSING, missing), (HOM_REF, hom_ref), (HET, het)):
            variant[k, r0 : r0 + rows] = plane.sum(axis=1)
            sample[k] += plane.sum(axis=0)
    return partial
