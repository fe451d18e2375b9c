"""Statistics as declared fields: what each report needs from the pass, how it adds, how it
is finished and how it is written.

A :class:`PartialSpec` is one additive array the counting pass produces: per variant
(``(variants, columns)``, adding over the sample windows of the same variants) or per
sample (``(columns, samples)``, adding over units of variants). Most are counted call by
call (:attr:`Stage.CALLS`); some can only be computed once a unit's variants are complete,
by a :class:`UnitStep` that reads the unit's call-stage partials and its missing-call bits
(:attr:`Stage.UNIT`). Integers add in any order; reals add in the plan's unit order
(:attr:`Add.ORDERED`), so that every backend gives the same bits.

A :class:`Report` is one plink2 file: the partials it needs, whether it covers autosomes
only, and how it is rendered from the reduced partials. The pass computes the union of
the needs of the reports asked for (:func:`partials_for`), :class:`Reduction` adds the
units' partials, and ``report.text(...)`` writes the file. A new statistic is one more
:class:`Report` here (and a :class:`PartialSpec` if it needs a new count from the pass).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np

from zarrgeno.stats.kernels import variant_dtype
from zarrgeno.stats.qc import plink2
from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.genotypes import HET, MISSING, GenotypeCounts, n_genotypes
from zarrgeno.stats.qc.hwe import hardy_table
from zarrgeno.stats.qc.inbreeding import Inbreeding, expected_het, het_terms, poly_totals


class Axis(StrEnum):
    VARIANT = "variant"
    SAMPLE = "sample"


class Stage(StrEnum):
    #: Counted call by call in the fused pass.
    CALLS = "calls"
    #: Computed when a unit's last chunk is counted, by a :class:`UnitStep`.
    UNIT = "unit"


class Add(StrEnum):
    #: Integers: added element by element, in any order.
    SUM = "sum"
    #: Reals: added element by element in the plan's unit order (by variant start).
    ORDERED = "ordered"


@dataclass(frozen=True)
class PartialSpec:
    """One additive array of the pass. ``columns(K)`` for K alleles at most; per-variant
    arrays are ``(variants, columns)`` of the smallest unsigned dtype that holds the number
    of samples (:func:`zarrgeno.stats.kernels.variant_dtype`), per-sample arrays
    ``(columns, samples)`` of ``dtype``."""

    name: str
    axis: Axis
    stage: Stage
    add: Add
    columns: Callable[[int], int]
    dtype: str
    doc: str

    def zeros(self, length: int, max_alleles: int, n_samples: int) -> np.ndarray:
        """A zeroed partial for ``length`` variants (or samples)."""
        cols = self.columns(max_alleles)
        if self.axis is Axis.VARIANT:
            return np.zeros((length, cols), dtype=variant_dtype(n_samples))
        return np.zeros((cols, length), dtype=self.dtype)


VARIANT_GENOTYPES = PartialSpec(
    "variant_genotypes",
    Axis.VARIANT,
    Stage.CALLS,
    Add.SUM,
    lambda k: 1 + n_genotypes(k),
    "count",
    "per variant: missing calls, then each genotype a/b (a <= b) in VCF order "
    "(0/0, 0/1, 1/1, 0/2, ...); see zarrgeno.stats.qc.genotypes",
)
SAMPLE_GENOTYPES = PartialSpec(
    "sample_genotypes",
    Axis.SAMPLE,
    Stage.CALLS,
    Add.SUM,
    lambda k: 4,
    "int64",
    "per sample: missing, hom-ref, het (two different alleles), hom-alt calls",
)
SAMPLE_HET_OBS = PartialSpec(
    "sample_het_obs",
    Axis.SAMPLE,
    Stage.UNIT,
    Add.SUM,
    lambda k: 1,
    "int64",
    "per sample: called polymorphic variants (plink2 --het OBS_CT)",
)
SAMPLE_HET_EXPECTED = PartialSpec(
    "sample_het_expected",
    Axis.SAMPLE,
    Stage.UNIT,
    Add.ORDERED,
    lambda k: 1,
    "float64",
    "per sample: expected heterozygosity summed over called polymorphic variants (E(HET))",
)


@dataclass(frozen=True)
class MissingBits:
    """Missing-call bits of one piece of a unit (a stored chunk): ``bits`` (len(rows),
    ceil(width / 8)) uint8, bit ``j % 8`` of byte ``j // 8`` set when the piece's ``j``-th
    sample has a missing call (:func:`zarrgeno.stats.qc.genotypes.missing_bits`); ``rows``
    are the piece's variants within the unit, ``columns`` its samples' positions among the
    unit's samples (a slice, or an index array for a sample selection)."""

    rows: slice
    columns: slice | np.ndarray
    bits: np.ndarray


@dataclass(frozen=True)
class UnitInputs:
    """What a unit step reads: the unit's call-stage partials (over all its samples), each
    variant's number of alleles (REF and listed ALT), and its pieces' missing-call bits."""

    partials: Mapping[str, np.ndarray]
    n_alleles: np.ndarray
    n_samples: int
    missing_bits: Sequence[MissingBits] = ()
    #: Each variant's expected heterozygosity and whether it is polymorphic
    #: (:func:`zarrgeno.stats.qc.inbreeding.expected_het`), when the caller has them.
    expected: tuple[np.ndarray, np.ndarray] | None = None


@dataclass(frozen=True)
class UnitStep:
    """Work done once per unit when its variants are complete, producing unit partials."""

    name: str
    requires: tuple[PartialSpec, ...]
    missing_bits: bool
    produces: tuple[PartialSpec, ...]
    run: Callable[[UnitInputs], dict[str, np.ndarray]]


def _het_step(unit: UnitInputs) -> dict[str, np.ndarray]:
    """plink2 --het's per-sample partials of one unit (see zarrgeno.stats.qc.inbreeding)."""
    if unit.expected is not None:
        ehet, poly = unit.expected
    else:
        hist = unit.partials[VARIANT_GENOTYPES.name]
        genotypes = GenotypeCounts(np.asarray(hist, dtype=np.int64), unit.n_alleles)
        ehet, poly = expected_het(AlleleFreqs.from_genotypes(genotypes))
    obs = np.zeros((1, unit.n_samples), dtype=np.int64)
    expected = np.zeros((1, unit.n_samples), dtype=np.float64)
    covered = np.zeros(unit.n_samples, dtype=np.int64)
    totals: dict[tuple[int, int, int], tuple[int, float]] = {}  # by rows: sample windows share
    for piece in unit.missing_bits:
        width = len(np.arange(unit.n_samples)[piece.columns])
        rows = piece.rows.indices(len(ehet))
        if rows not in totals:
            totals[rows] = poly_totals(ehet[piece.rows], poly[piece.rows])
        terms = het_terms(piece.bits, width, ehet[piece.rows], poly[piece.rows], totals[rows])
        obs[0, piece.columns] += terms.obs
        expected[0, piece.columns] += terms.expected
        covered[piece.columns] += len(ehet[piece.rows])
    if np.any(covered != len(ehet)):
        raise ValueError("the missing-call bits must cover every call of the unit once")
    return {SAMPLE_HET_OBS.name: obs, SAMPLE_HET_EXPECTED.name: expected}


HET_STEP = UnitStep(
    "het",
    requires=(VARIANT_GENOTYPES,),
    missing_bits=True,
    produces=(SAMPLE_HET_OBS, SAMPLE_HET_EXPECTED),
    run=_het_step,
)
#: Every partial by name.
SPECS = {
    s.name: s for s in (VARIANT_GENOTYPES, SAMPLE_GENOTYPES, SAMPLE_HET_OBS, SAMPLE_HET_EXPECTED)
}
#: The step that computes each unit-stage partial.
STEPS = {spec.name: HET_STEP for spec in HET_STEP.produces}


@dataclass(frozen=True)
class VariantInputs:
    """A report's input over some variants (one contig): their reduced per-variant
    partials, their labels, and the number of samples counted."""

    partials: Mapping[str, np.ndarray]
    labels: plink2.VariantLabels
    n_samples: int


@dataclass(frozen=True)
class SampleInputs:
    """A report's input per sample: per-sample partials summed over the contigs the report
    covers, the sample names, and the number of variants counted."""

    partials: Mapping[str, np.ndarray]
    samples: Sequence[str]
    n_variants: int


@dataclass(frozen=True)
class Report:
    """One plink2 report file: the partials it needs, and its text from them."""

    name: str
    flag: str
    suffix: str
    axis: Axis
    needs: tuple[PartialSpec, ...]
    #: The text from :class:`VariantInputs` (per-variant reports) or :class:`SampleInputs`.
    render: Callable[[Any, bool], Iterator[str]]
    #: plink2 reports --hardy and --het on autosomes only (chrX needs sexes).
    autosomes_only: bool = False
    doc: str = field(default="", compare=False)

    def text(self, inputs: VariantInputs | SampleInputs, *, header: bool = True) -> Iterator[str]:
        """The report's text, in blocks (``header=False`` for a second contig's rows)."""
        wanted = VariantInputs if self.axis is Axis.VARIANT else SampleInputs
        if not isinstance(inputs, wanted):
            raise TypeError(
                f"the {self.name} report is per {self.axis}: it needs {wanted.__name__}"
            )
        return self.render(inputs, header)


def _genotypes(inputs: VariantInputs) -> GenotypeCounts:
    hist = np.asarray(inputs.partials[VARIANT_GENOTYPES.name], dtype=np.int64)
    return GenotypeCounts(hist, inputs.labels.n_alleles)


def _het(inputs: SampleInputs) -> Inbreeding:
    p = inputs.partials
    return Inbreeding(
        het=p[SAMPLE_GENOTYPES.name][HET],
        obs=p[SAMPLE_HET_OBS.name][0],
        expected=p[SAMPLE_HET_EXPECTED.name][0],
    )


def _afreq(i: VariantInputs, header: bool) -> Iterator[str]:
    return plink2.afreq(i.labels, AlleleFreqs.from_genotypes(_genotypes(i)), header=header)


def _gcount(i: VariantInputs, header: bool) -> Iterator[str]:
    return plink2.gcount(i.labels, _genotypes(i), header=header)


def _hardy(i: VariantInputs, header: bool) -> Iterator[str]:
    return plink2.hardy(i.labels, hardy_table(_genotypes(i)), header=header)


def _hardy_midp(i: VariantInputs, header: bool) -> Iterator[str]:
    return plink2.hardy(i.labels, hardy_table(_genotypes(i), midp=True), header=header)


def _vmiss(i: VariantInputs, header: bool) -> Iterator[str]:
    return plink2.vmiss(i.labels, _genotypes(i).missing, i.n_samples, header=header)


def _smiss(i: SampleInputs, header: bool) -> Iterator[str]:
    missing = i.partials[SAMPLE_GENOTYPES.name][MISSING]
    return plink2.smiss(i.samples, missing, i.n_variants, header=header)


def _het_report(i: SampleInputs, header: bool) -> Iterator[str]:
    return plink2.het(i.samples, _het(i), header=header)


_V, _S, _G = Axis.VARIANT, Axis.SAMPLE, (VARIANT_GENOTYPES,)
#: Every report, by name: plink2's flag and file, what it needs, how it is written.
REPORTS: dict[str, Report] = {
    r.name: r
    for r in (
        Report("afreq", "--freq", ".afreq", _V, _G, _afreq, doc="ALT frequencies, AN"),
        Report("gcount", "--geno-counts", ".gcount", _V, _G, _gcount, doc="genotype counts"),
        Report("hardy", "--hardy", ".hardy", _V, _G, _hardy, True, "HWE exact test p"),
        Report("hardy-midp", "--hardy midp", ".hardy", _V, _G, _hardy_midp, True, "HWE mid-p"),
        Report("vmiss", "--missing", ".vmiss", _V, _G, _vmiss, doc="missing calls per variant"),
        Report(
            "smiss", "--missing", ".smiss", _S, (SAMPLE_GENOTYPES,), _smiss, doc="missing calls"
        ),
        Report(
            "het",
            "--het",
            ".het",
            _S,
            (SAMPLE_GENOTYPES, SAMPLE_HET_OBS, SAMPLE_HET_EXPECTED),
            _het_report,
            True,
            "observed and expected homozygous calls, inbreeding coefficient F",
        ),
    )
}


#: Contigs plink2 reads as chrX, chrY or chrM (case aside, ``chr`` prefix or not).
NON_AUTOSOMES = frozenset({"X", "Y", "MT", "M", "23", "24", "26"})


def is_autosome(contig: str) -> bool:
    """Whether plink2 counts ``contig`` in ``--hardy`` and ``--het``: every contig but X, Y
    and MT (with ``--allow-extra-chr``, Ag1000G's 2L, 2R, 3L, 3R count; X does not).

    >>> [is_autosome(c) for c in ("2L", "3R", "X", "chrX", "MT", "XY", "chr1")]
    [True, True, False, False, False, True, True]
    """
    name = contig[3:] if contig[:3].lower() == "chr" else contig
    return name.upper() not in NON_AUTOSOMES


def partials_for(reports: Iterable[Report]) -> tuple[PartialSpec, ...]:
    """Every partial the pass must produce for ``reports``: their needs, and what the unit
    steps of those needs read, each once, call-stage first. The per-sample genotype
    counts are always made: every result carries them (``QcContig.samples``).

    >>> [p.name for p in partials_for([REPORTS["het"]])]
    ['sample_genotypes', 'variant_genotypes', 'sample_het_obs', 'sample_het_expected']
    >>> [p.name for p in partials_for([REPORTS["afreq"]])]
    ['sample_genotypes', 'variant_genotypes']
    """
    wanted: dict[str, PartialSpec] = {SAMPLE_GENOTYPES.name: SAMPLE_GENOTYPES}
    for report in reports:
        for spec in report.needs:
            if spec.stage is Stage.UNIT:
                for required in STEPS[spec.name].requires:
                    wanted.setdefault(required.name, required)
            wanted.setdefault(spec.name, spec)
    return tuple(sorted(wanted.values(), key=lambda s: s.stage is Stage.UNIT))


def unit_steps(specs: Iterable[PartialSpec]) -> tuple[UnitStep, ...]:
    """The unit steps that produce the unit-stage partials among ``specs``, each once."""
    steps: dict[str, UnitStep] = {}
    for spec in specs:
        if spec.stage is Stage.UNIT:
            step = STEPS[spec.name]
            steps.setdefault(step.name, step)
    return tuple(steps.values())


def needs_missing_bits(specs: Iterable[PartialSpec]) -> bool:
    """Whether the pass must keep, per unit, one bit per call (missing or not)."""
    return any(step.missing_bits for step in unit_steps(specs))


class Reduction:
    """The partials of one contig, added up from its units in any order.

    Per-variant partials land at their variants (units of disjoint variants, or sample
    windows of the same variants, which add); integer per-sample partials add at once;
    real ones are kept by unit start and added in that order at :meth:`totals`.
    """

    def __init__(
        self, specs: Iterable[PartialSpec], n_variants: int, n_samples: int, max_alleles: int
    ) -> None:
        self.specs = tuple(specs)
        self.n_variants, self.n_samples, self.max_alleles = n_variants, n_samples, max_alleles
        self.arrays = {
            s.name: s.zeros(
                n_variants if s.axis is Axis.VARIANT else n_samples, max_alleles, n_samples
            )
            for s in self.specs
            if s.add is Add.SUM
        }
        self.ordered: dict[str, dict[int, np.ndarray]] = {
            s.name: {} for s in self.specs if s.add is Add.ORDERED
        }

    def add(self, start: int, partials: Mapping[str, np.ndarray]) -> None:
        """Add one unit's partials; ``start`` is its first variant (within the contig)."""
        for spec in self.specs:
            part = partials[spec.name]
            if spec.add is Add.ORDERED:
                held = self.ordered[spec.name]
                held[start] = held[start] + part if start in held else part.copy()
            elif spec.axis is Axis.VARIANT:
                self.arrays[spec.name][start : start + len(part)] += part
            else:
                self.arrays[spec.name] += part

    def totals(self) -> dict[str, np.ndarray]:
        """Every partial of the contig, the real ones added in unit order."""
        out = dict(self.arrays)
        for name, held in self.ordered.items():
            total = None
            for start in sorted(held):
                total = held[start] if total is None else total + held[start]
            if total is None:
                spec = next(s for s in self.specs if s.name == name)
                total = spec.zeros(self.n_samples, self.max_alleles, self.n_samples)
            out[name] = total
        return out


def add_contigs(
    totals: Sequence[Mapping[str, np.ndarray]], specs: Iterable[PartialSpec]
) -> dict[str, np.ndarray]:
    """Per-sample partials of several contigs added up, in the order given."""
    if not totals:
        raise ValueError("no contig to add (plink2 --het and --hardy need an autosome)")
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        if spec.axis is Axis.SAMPLE:
            arrays = [t[spec.name] for t in totals]
            total = arrays[0].astype(np.float64 if spec.add is Add.ORDERED else np.int64)
            for a in arrays[1:]:
                total = total + a
            out[spec.name] = total
    return out
