"""One work unit's QC partials, gathered piece by piece as its chunks are counted.

The counting pass (:func:`zarrgeno.stats.kernels.count_calls_qc`) adds each piece's
genotype histogram straight into the unit's rows; :class:`QcUnit` places its per-sample
classes and keeps its missing-call bits (only when a report needs them: ``--het``), then,
at the unit's end, runs the unit steps (:data:`zarrgeno.stats.qc.fields.STEPS`) and drops
the bits. What it returns is the unit's additive partials, by name.
"""

from __future__ import annotations

import threading

import numpy as np

from zarrgeno.errors import BadDataError
from zarrgeno.stats.fastpath import SplitHistogram, unit_alleles
from zarrgeno.stats.kernels import QcBlock, variant_dtype
from zarrgeno.stats.plan import QcRequest, WorkUnit
from zarrgeno.stats.qc.fields import (
    SAMPLE_GENOTYPES,
    SPECS,
    VARIANT_GENOTYPES,
    MissingBits,
    UnitInputs,
    needs_missing_bits,
    unit_steps,
)
from zarrgeno.stats.qc.genotypes import genotype_pairs, n_genotypes

#: The extra item of a unit's QC partials: (K + 1,) variants by the alleles their calls hold.
ALLELES_SEEN = "alleles_seen"
#: Each variant's alleles (uint8: K <= 64), in the partials of a unit that keeps per-variant
#: statistics: the reducer places them rather than reading the contig's histograms again.
N_ALLELES = "n_alleles"


#: Per-thread buffers reused from unit to unit (see :func:`_scratch`).
_SCRATCH = threading.local()


def _scratch(name: str, shape: tuple[int, ...], dtype: np.dtype, zero: bool = True) -> np.ndarray:
    """This thread's array ``name`` of ``shape``, zeroed (``zero``) or as it was: a fresh
    array per unit costs page faults on every page (``mmap``-served), a reused one a memset
    at most. A thread counts one unit at a time, and a unit's buffers are dropped (or
    copied) when it ends."""
    arrays = getattr(_SCRATCH, "arrays", None)
    if arrays is None:
        arrays = _SCRATCH.arrays = {}
    size = int(np.prod(shape))
    buf = arrays.get((name, dtype.str))
    if buf is None or buf.size < size:
        buf = arrays[(name, dtype.str)] = np.empty(size, dtype=dtype)
    out = buf[:size].reshape(shape)
    if zero:
        out.fill(0)
    return out


class QcUnit:
    """The QC partials of one unit of ``n_variants`` variants and ``width`` samples;
    ``keep``: the per-variant histogram travels back (else it lives in this thread's
    scratch, split: :class:`zarrgeno.stats.fastpath.SplitHistogram`)."""

    def __init__(self, request: QcRequest, n_variants: int, width: int, keep: bool = True) -> None:
        self.request = request
        self.specs = tuple(SPECS[name] for name in request.partials)
        columns = 1 + n_genotypes(request.max_alleles)
        shape, dtype = (n_variants, columns), variant_dtype(width)
        self.hist: np.ndarray | SplitHistogram
        if keep:
            self.hist = np.zeros(shape, dtype=dtype)
        else:  # the rare columns are zeroed row by row as the kernel counts there
            self.hist = SplitHistogram(
                _scratch("hist", (n_variants, 4), dtype),
                _scratch("rare", (n_variants, columns - 4), dtype, zero=False),
                _scratch("seen", (n_variants,), np.dtype(np.uint8)),
            )
        self.sample = np.zeros((4, width), dtype=np.int64)
        self.width = width
        #: Whether the pieces' missing-call bits are kept (for the --het unit step).
        self.bits = needs_missing_bits(self.specs)
        self.pieces: list[MissingBits] = []
        self.beyond = 0
        #: Per-cohort allele counts (variants, cohorts, K), when cohorts are asked for and
        #: the run keeps per-variant statistics (the summaries need none).
        self.cohorts = request.cohorts if keep else None
        self.cohort_counts = None
        if self.cohorts is not None:
            from zarrgeno.stats.qc.cohort_counts import count_dtype  # with cohorts only

            shape3 = (n_variants, self.cohorts.n_cohorts, request.max_alleles)
            self.cohort_counts = np.zeros(shape3, dtype=count_dtype(width))

    def bits_buffer(self, rows: int, width: int) -> np.ndarray | bool:
        """Where the next piece's missing-call bits go (False when none are kept), not
        zeroed: the rows a site filter fails keep stale bits, which are never read, since
        their histogram rows stay empty and so no variant there is polymorphic (the --het
        unit step reads the bits of polymorphic variants only)."""
        if not self.bits:
            return False
        shape = (rows, (width + 7) // 8)
        return _scratch(f"bits{len(self.pieces)}", shape, np.dtype(np.uint8), zero=False)

    def add(self, lo: int, hi: int, where: slice | np.ndarray, block: QcBlock) -> None:
        """Place one piece's QC counts: its variants are the unit's ``lo:hi`` (their
        histogram rows are already counted), its samples go to ``where``."""
        self.sample[:, where] += block.sample
        if block.bits is not None:
            self.pieces.append(MissingBits(slice(lo, hi), where, block.bits))
        self.beyond += block.beyond

    def cohort_target(
        self, where: slice | np.ndarray, lo: int, rows: int
    ) -> tuple[np.ndarray, int, np.ndarray] | None:
        """What the counting pass needs to add one piece's per-cohort allele counts (None
        without cohorts): the cohort of each of its samples (the unit's ``where``), the
        number of cohorts, and the unit's rows ``lo:lo + rows`` of the counts."""
        cohorts = self.cohorts
        if self.cohort_counts is None or cohorts is None:
            return None
        out = self.cohort_counts[lo : lo + rows]
        return np.asarray(cohorts.index[where], dtype=np.int32), cohorts.n_cohorts, out

    def finish(self, unit: WorkUnit) -> dict[str, np.ndarray]:
        """The unit's partials, unit steps run; refuses calls of alleles the store does not
        list (or, without ALT, more than the alleles assumed)."""
        k = self.request.max_alleles
        where = f"{unit.reader.path} ({unit.describe()})"
        if self.beyond:
            listed = self.request.labels is not None and self.request.labels.has_alleles
            alts = f"{k - 1} ALT allele{'s' if k > 2 else ''}"
            why = (
                f"the store lists at most {alts} per variant"
                if listed
                else f"without REF/ALT in the store, at most {alts} are assumed"
            )
            calls = "1 call holds" if self.beyond == 1 else f"{self.beyond:,} calls hold"
            raise BadDataError(f"{where}: {calls} an allele >= {k}, but {why}")
        labels = self.request.labels
        listed = labels.n_alleles(unit.start, unit.stop) if labels is not None else None
        n = len(self.hist)
        buffers = (  # dropped with the unit: this thread's scratch, every item written
            _scratch("alleles", (n,), np.dtype(np.int64), zero=False),
            _scratch("ehet", (n,), np.dtype(np.float64), zero=False),
            _scratch("poly", (n,), np.dtype(np.uint8), zero=False),
        )
        n_alleles, ehet, poly, seen, row = unit_alleles(self.hist, listed, buffers, self.width)
        if row is not None:
            raise BadDataError(
                f"{where}: variant {unit.start + row:,} has calls of an allele beyond its "
                f"{int(n_alleles[row])} alleles (REF and ALT)"
            )
        parts = {SAMPLE_GENOTYPES.name: self.sample}
        if isinstance(self.hist, np.ndarray):  # a split one stays here (the steps need none)
            parts[VARIANT_GENOTYPES.name] = self.hist
        for step in unit_steps(self.specs):
            inputs = UnitInputs(parts, n_alleles, self.width, self.pieces, (ehet, poly))
            parts |= step.run(inputs)
        self.pieces = []
        # per-variant partials travel back only when the run keeps them
        out = {
            spec.name: parts[spec.name]
            for spec in self.specs
            if unit.per_variant or spec.name != VARIANT_GENOTYPES.name
        }
        out[ALLELES_SEEN] = seen
        if unit.per_variant:
            out[N_ALLELES] = n_alleles.astype(np.uint8)
        if self.cohort_counts is not None:
            from zarrgeno.stats.qc.cohort_counts import COHORT_ALLELE_COUNT

            out[COHORT_ALLELE_COUNT] = self.cohort_counts
        return out


def variant_alleles(request: QcRequest, start: int, stop: int, hist: np.ndarray) -> np.ndarray:
    """Each variant's alleles: REF and listed ALT from the store's labels, else the
    alleles its calls hold (at least two)."""
    labels = request.labels
    listed = labels.n_alleles(start, stop) if labels is not None else None
    return listed if listed is not None else observed_alleles(hist)


def observed_alleles(hist: np.ndarray) -> np.ndarray:
    """1 + the highest allele called at each variant, at least 2.

    >>> observed_alleles(np.array([[3, 1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 1, 0]])).tolist()
    [2, 3]
    """
    k = 1
    while 1 + n_genotypes(k) < hist.shape[1]:
        k += 1
    highest = genotype_pairs(k)[:, 1] + 1  # columns go by their higher allele
    called = np.asarray(hist)[:, :0:-1] != 0  # genotype columns, last first
    last = called.argmax(axis=1)
    top = np.where(called[np.arange(len(called)), last], highest[::-1][last], 0)
    return np.maximum(2, top).astype(np.int64)
