"""Hardy-Weinberg exact test (Wigginton, Cutler & Abecasis 2005) as plink2 2.0 computes it.

plink2's ``HweP`` walks the heterozygote-count distribution from the observed count, one
step of the paper's recurrence at a time, relative to the observed probability (scaled to
2**-83 so that nothing underflows), and stops a tail once its terms no longer change the
sum. A value within 2**-44 of the observed probability is a tie: in the p-value, and
counted half for the mid-p (Graffelman & Moreno 2013). :func:`hwe_p` does exactly that,
with the same floating-point operations in the same order, for every distinct
(het, hom1, hom2) triple at once: a contig has millions of variants but, for n samples,
at most (n + 1)**3 / 6 distinct triples, and in practice a few thousand.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from zarrgeno.stats.qc.genotypes import GenotypeCounts, genotype_index

#: plink2's kExactTestBias (2**-83): the observed probability's scaled value.
EXACT_TEST_BIAS = 2.0**-83
#: plink2's kSmallEpsilon (2**-44): the relative width of a tie.
SMALL_EPSILON = 2.0**-44
#: Largest table (entries) of every possible triple that replaces sorting by a lookup.
DENSE_TRIPLES = 1 << 22
#: Sites per block of the lookup.
BLOCK = 1 << 20

_START = (1 - SMALL_EPSILON) * EXACT_TEST_BIAS
_TIE = (1 - 2 * SMALL_EPSILON) * EXACT_TEST_BIAS
_HALF_TIE = (1 - SMALL_EPSILON) * EXACT_TEST_BIAS * 0.5
_MAX = sys.float_info.max


def hwe_p(
    het: np.ndarray | int,
    hom1: np.ndarray | int,
    hom2: np.ndarray | int,
    *,
    midp: bool = False,
) -> np.ndarray:
    """plink2's Hardy-Weinberg exact test p-value (``midp``: the mid-p) of each site.

    ``het``, ``hom1`` and ``hom2`` are the heterozygous and the two homozygous genotype
    counts (integers, broadcast together). A site with no genotype has p = 1 (mid-p 0.5),
    as in plink2. Each distinct triple is computed once.

    >>> hwe_p([3, 1, 0], [2, 6, 0], [1, 0, 0]).tolist()
    [1.0, 1.0, 1.0]
    >>> [round(p, 6) for p in hwe_p([1, 3], [1, 2], [4, 1], midp=True).tolist()]
    [0.136364, 0.69697]
    """
    arrays = np.broadcast_arrays(*(np.asarray(a) for a in (het, hom1, hom2)))
    shape = arrays[0].shape
    if arrays[0].size == 0:
        return np.zeros(shape, dtype=np.float64)
    if any(a.dtype.kind not in "iub" for a in arrays):
        raise TypeError("genotype counts must be integers")
    het_a, hom1_a, hom2_a = (a.ravel() for a in arrays)
    if min(int(het_a.min()), int(hom1_a.min()), int(hom2_a.min())) < 0:
        raise ValueError("genotype counts must not be negative")
    top = int(max(het_a.max(), hom1_a.max(), hom2_a.max())) + 1
    if top**3 <= DENSE_TRIPLES:
        return _dense(het_a, hom1_a, hom2_a, top, midp).reshape(shape)
    if top < 1 << 21:  # three 21-bit fields fit an int64
        uniq, inverse = np.unique(_keys(het_a, hom1_a, hom2_a, top), return_inverse=True)
        p = _distinct(*_unpack(uniq, top), midp)
    else:
        rare, common = np.minimum(hom1_a, hom2_a), np.maximum(hom1_a, hom2_a)
        rows, inverse = np.unique(
            np.stack([het_a, rare, common], axis=1).astype(np.int64), axis=0, return_inverse=True
        )
        p = _distinct(rows[:, 0], rows[:, 1], rows[:, 2], midp)
    return p[inverse.ravel()].reshape(shape)


def _keys(het: np.ndarray, hom1: np.ndarray, hom2: np.ndarray, top: int) -> np.ndarray:
    """One integer per triple, the two homozygous counts in order (the test is symmetric)."""
    h, a, b = (x.astype(np.int64) for x in (het, hom1, hom2))
    return (h * top + np.minimum(a, b)) * top + np.maximum(a, b)


def _dense(het: np.ndarray, hom1: np.ndarray, hom2: np.ndarray, top: int, midp: bool) -> np.ndarray:
    """Few samples: mark the triples present, compute them, look every site up, a block of
    sites at a time (two passes over the counts, no sort, bounded memory)."""
    size = top**3
    seen = np.zeros(size, dtype=bool)
    for lo in range(0, het.size, BLOCK):
        hi = lo + BLOCK
        seen[_keys(het[lo:hi], hom1[lo:hi], hom2[lo:hi], top)] = True
    present = np.flatnonzero(seen)
    table = np.empty(size, dtype=np.float64)
    table[present] = _distinct(*_unpack(present, top), midp)
    out = np.empty(het.size, dtype=np.float64)
    for lo in range(0, het.size, BLOCK):
        hi = lo + BLOCK
        np.take(table, _keys(het[lo:hi], hom1[lo:hi], hom2[lo:hi], top), out=out[lo:hi])
    return out


def _unpack(key: np.ndarray, top: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rest, common = np.divmod(key, top)
    het, rare = np.divmod(rest, top)
    return het, rare, common


def _distinct(het: np.ndarray, rare: np.ndarray, common: np.ndarray, midp: bool) -> np.ndarray:
    """``HweP`` of distinct triples (``rare <= common``), all in lockstep."""
    genotypes2 = 2 * (het + rare + common)
    rare_copies = 2 * rare + het
    p = np.full(het.shape, 0.5 if midp else 1.0)
    upper = het * genotypes2 > rare_copies * (genotypes2 - rare_copies)
    for side, mask in ((_upper, upper), (_lower, ~upper)):
        idx = np.flatnonzero(mask & (genotypes2 > 0))
        if idx.size:
            h, r, c = (a[idx].astype(np.float64) for a in (het, rare, common))
            with np.errstate(over="ignore"):  # plink2 returns 0 once the centre overflows
                p[idx] = side(h, r, c, midp)
    return p


class _Walk:
    """The running sums of one side's walk, over many triples at once."""

    def __init__(self, size: int) -> None:
        self.tail = np.full(size, _START)
        self.center = np.zeros(size)
        self.ties = np.ones(size)
        self.last2 = np.full(size, _START)
        self.last1 = np.full(size, _START)
        self.result = np.full(size, np.nan)  # set where plink2 returns early

    def centre_step(self, idx: np.ndarray) -> np.ndarray:
        """After ``last2[idx]`` moved one step towards the mode: a value below the observed
        one ends the centre (it is tail, and a tie when within 2**-44); the others add to
        the centre. Returns the indices still in the centre."""
        value = self.last2[idx]
        below = value < EXACT_TEST_BIAS
        out = idx[below]
        self.ties[out] += self.last2[out] > _TIE
        self.tail[out] += self.last2[out]
        stay = idx[~below]
        self.center[stay] += self.last2[stay]
        over = stay[self.center[stay] > _MAX]
        self.result[over] = 0.0
        return stay[self.center[stay] <= _MAX]

    def add_tail(self, idx: np.ndarray, value: np.ndarray) -> np.ndarray:
        """Add ``value`` to the tails of ``idx``; returns those whose tail still changed."""
        before = self.tail[idx]
        self.tail[idx] = before + value
        return idx[self.tail[idx] > before]

    def finish(self, midp: bool) -> np.ndarray:
        if not midp:
            p = self.tail / (self.tail + self.center)
            p[self.center == 0] = 1.0
        else:
            p = (self.tail - _HALF_TIE * self.ties) / (self.tail + self.center)
        return np.where(np.isnan(self.result), p, self.result)


def _upper(h: np.ndarray, r: np.ndarray, c: np.ndarray, midp: bool) -> np.ndarray:
    """More heterozygotes than expected: walk down from the observed count, then up."""
    w = _Walk(h.size)
    h2, r2, c2 = h.copy(), r.copy(), c.copy()
    live = np.flatnonzero(h2 > 1.5)
    while live.size:  # the centre: towards fewer heterozygotes while >= observed
        r2[live] += 1
        c2[live] += 1
        w.last2[live] *= (h2[live] * (h2[live] - 1)) / (4 * r2[live] * c2[live])
        h2[live] -= 2
        live = w.centre_step(live)
        live = live[h2[live] > 1.5]
    done = ~np.isnan(w.result) | ((w.center == 0) & (not midp))
    live = np.flatnonzero(~done & (h2 > 1.5))
    while live.size:  # the far tail
        r2[live] += 1
        c2[live] += 1
        w.last2[live] *= (h2[live] * (h2[live] - 1)) / (4 * r2[live] * c2[live])
        h2[live] -= 2
        live = w.add_tail(live, w.last2[live])
        live = live[h2[live] > 1.5]
    h1, r1, c1 = h + 2, r.copy(), c.copy()
    live = np.flatnonzero(~done & (r1 > 0.5))
    while live.size:  # the near tail: more heterozygotes than observed
        w.last1[live] *= (4 * r1[live] * c1[live]) / (h1[live] * (h1[live] - 1))
        live = w.add_tail(live, w.last1[live])
        h1[live] += 2
        r1[live] -= 1
        c1[live] -= 1
        live = live[r1[live] > 0.5]
    return w.finish(midp)


def _lower(h: np.ndarray, r: np.ndarray, c: np.ndarray, midp: bool) -> np.ndarray:
    """Fewer heterozygotes than expected (or as many): walk up from the observed count,
    then down."""
    w = _Walk(h.size)
    h2, r2, c2 = h.copy(), r.copy(), c.copy()
    live = np.flatnonzero(r2 > 0.5)
    while live.size:
        h2[live] += 2
        w.last2[live] *= (4 * r2[live] * c2[live]) / (h2[live] * (h2[live] - 1))
        r2[live] -= 1
        c2[live] -= 1
        live = w.centre_step(live)
        live = live[r2[live] > 0.5]
    done = ~np.isnan(w.result) | ((w.center == 0) & (not midp))
    live = np.flatnonzero(~done & (r2 > 0.5))
    while live.size:
        h2[live] += 2
        w.last2[live] *= (4 * r2[live] * c2[live]) / (h2[live] * (h2[live] - 1))
        r2[live] -= 1
        c2[live] -= 1
        live = w.add_tail(live, w.last2[live])
        live = live[r2[live] > 0.5]
    h1, r1, c1 = h.copy(), r.copy(), c.copy()
    live = np.flatnonzero(~done & (h1 > 1.5))
    while live.size:
        r1[live] += 1
        c1[live] += 1
        w.last1[live] *= (h1[live] * (h1[live] - 1)) / (4 * r1[live] * c1[live])
        live = w.add_tail(live, w.last1[live])
        h1[live] -= 2
        live = live[h1[live] > 1.5]
    return w.finish(midp)


@dataclass(frozen=True)
class HardyTable:
    """The rows of plink2's ``--hardy`` report: one per biallelic variant (A1 = REF), one
    per allele of a variant with more alleles (that allele against all others).

    ``variant`` and ``a1`` index each row's variant and allele; ``hom_a1``, ``het_a1`` and
    ``two_ax`` are its genotype counts, ``p`` the exact test's p-value (mid-p with ``midp``).
    """

    variant: np.ndarray
    a1: np.ndarray
    hom_a1: np.ndarray
    het_a1: np.ndarray
    two_ax: np.ndarray
    p: np.ndarray
    midp: bool = False

    @property
    def observed(self) -> np.ndarray:
        """O(HET_A1): het_a1 times 1/called (NaN with no call), as plink2 computes it."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return self.het_a1 * (1.0 / self._called())

    @property
    def expected(self) -> np.ndarray:
        """E(HET_A1): ``2q(1 - q)`` written ``f(1 - f/2)`` with ``f = 2q``, as plink2 does;
        0 where every call is ``A1/A1`` (or none)."""
        called = self._called()
        with np.errstate(divide="ignore", invalid="ignore"):
            f = (self.hom_a1 * 2 + self.het_a1) * (1.0 / called)
            out = f * (1.0 - f * 0.5)
        return np.where(self.hom_a1 == called, 0.0, out)

    def _called(self) -> np.ndarray:
        return (self.hom_a1 + self.het_a1 + self.two_ax).astype(np.float64)


def hardy_table(genotypes: GenotypeCounts, *, midp: bool = False) -> HardyTable:
    """plink2 ``--hardy`` (``midp``: ``--hardy midp``) of every variant of ``genotypes``.

    >>> from zarrgeno.stats.qc.genotypes import GenotypeCounts
    >>> hist = np.array([[1, 2, 3, 1]])  # missing, 0/0, 0/1, 1/1
    >>> t = hardy_table(GenotypeCounts(hist, np.array([2])))
    >>> t.hom_a1.tolist(), t.het_a1.tolist(), t.two_ax.tolist(), t.p.tolist()
    ([2], [3], [1], [1.0])
    """
    k = genotypes.max_alleles
    n_alleles = genotypes.n_alleles.astype(np.int64)
    rows = np.where(n_alleles == 2, 1, n_alleles)
    variant = np.repeat(np.arange(len(n_alleles)), rows)
    starts = np.cumsum(rows) - rows
    a1 = np.arange(len(variant)) - np.repeat(starts, rows)
    counts = genotypes.genotypes
    hom_cols = [genotype_index(a, a) for a in range(k)]
    homs = counts[:, hom_cols]
    hom = homs[variant, a1]
    # the calls holding allele a once: its copies less two per a/a call (no matrix product)
    het = (genotypes.allele_counts - 2 * homs)[variant, a1]
    two_ax = counts.sum(axis=1)[variant] - hom - het
    p = hwe_p(het, hom, two_ax, midp=midp)
    return HardyTable(variant, a1, hom, het, two_ax, p, midp)
