"""plink2 2.0's report files, from finished statistics: the same headers, columns and numbers.

Each function yields the text of one report (``.afreq``, ``.gcount``, ``.hardy``,
``.vmiss``, ``.smiss``, ``.het``) in blocks, for any file-like writer to join or write:
plink2's default columns, tab-separated, ``#`` before the header, integers in decimal and
reals as plink2 prints them (:mod:`zarrgeno.stats.qc.gformat`). Variants are written in
the order given, samples likewise; a report spanning several contigs is their reports
concatenated, the later ones with ``header=False``.

Cells are built as fixed-width byte strings (numpy ``S`` arrays, numbers through tables of
their few distinct values), not as Python strings one by one; a compiled helper
(``zarrgeno.stats.qc._text``) joins a block's cells into comma-separated cells and its rows
into lines in one pass, where chained numpy string additions copied each row once per
column.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from zarrgeno.stats.qc import _text  # type: ignore[attr-defined]  # compiled, no stub
from zarrgeno.stats.qc.alleles import AlleleFreqs
from zarrgeno.stats.qc.genotypes import GenotypeCounts
from zarrgeno.stats.qc.gformat import format_g
from zarrgeno.stats.qc.hwe import HardyTable
from zarrgeno.stats.qc.inbreeding import Inbreeding

#: Rows formatted at once.
BLOCK = 1 << 16

AFREQ_COLUMNS = ("#CHROM", "ID", "REF", "ALT", "ALT_FREQS", "OBS_CT")
GCOUNT_COLUMNS = (
    "#CHROM",
    "ID",
    "REF",
    "ALT",
    "HOM_REF_CT",
    "HET_REF_ALT_CTS",
    "TWO_ALT_GENO_CTS",
    "HAP_REF_CT",
    "HAP_ALT_CTS",
    "MISSING_CT",
)
HARDY_COLUMNS = (
    "#CHROM",
    "ID",
    "A1",
    "AX",
    "HOM_A1_CT",
    "HET_A1_CT",
    "TWO_AX_CT",
    "O(HET_A1)",
    "E(HET_A1)",
)
VMISS_COLUMNS = ("#CHROM", "ID", "MISSING_CT", "OBS_CT", "F_MISS")
SMISS_COLUMNS = ("#IID", "MISSING_CT", "OBS_CT", "F_MISS")
HET_COLUMNS = ("#IID", "O(HOM)", "E(HOM)", "OBS_CT", "F")


@dataclass(frozen=True)
class VariantLabels:
    """What a report prints of each variant: its contig (one name or one per variant), ID
    (``.`` when None), REF, and ALT alleles (variants, K-1), ``""`` where a variant has
    fewer. A variant with no ALT has two alleles, the second written ``.``, as plink2
    reads a VCF's ``ALT .``. Bytes (``|S1``, as MalariaGEN stores them) or text."""

    chrom: str | np.ndarray
    ref: np.ndarray
    alt: np.ndarray
    ids: np.ndarray | None = None

    def __post_init__(self) -> None:
        alt = np.asarray(self.alt)
        if alt.ndim != 2 or alt.shape[0] != len(self.ref):
            raise ValueError("alt must be (variants, K-1), one row per REF")
        given = as_bytes(alt) != b""
        if np.any(given[:, 1:] & ~given[:, :-1]):
            raise ValueError("ALT alleles must be listed first, then empty strings")

    def __len__(self) -> int:
        return len(self.ref)

    @property
    def n_alleles(self) -> np.ndarray:
        """REF plus listed ALT alleles, at least 2 (plink2 reads ``ALT .`` as an allele)."""
        listed = (as_bytes(np.asarray(self.alt)) != b"").sum(axis=1)
        return np.maximum(2, 1 + listed)

    def rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``#CHROM`` and ``ID`` text of variants ``lo:hi``, and their alleles (m, K)
        with ``.`` for an absent first ALT."""
        m = hi - lo
        chrom = (
            np.full(m, self.chrom.encode(), dtype=f"S{max(1, len(self.chrom.encode()))}")
            if isinstance(self.chrom, str)
            else as_bytes(np.asarray(self.chrom)[lo:hi])
        )
        ids = np.full(m, b".", dtype="S1") if self.ids is None else as_bytes(self.ids[lo:hi])
        ref = as_bytes(self.ref[lo:hi])
        alt = as_bytes(np.asarray(self.alt)[lo:hi])
        width = max(ref.dtype.itemsize, alt.dtype.itemsize, 1)
        alleles = np.concatenate([ref[:, None], alt], axis=1).astype(f"S{width}")
        alleles[:, 1] = np.where(alleles[:, 1] == b"", b".", alleles[:, 1])
        return chrom, ids, alleles


def afreq(labels: VariantLabels, freqs: AlleleFreqs, *, header: bool = True) -> Iterator[str]:
    """``plink2 --freq``: ``.afreq``."""
    _check(labels, freqs.n_alleles)
    if header:
        yield _header(AFREQ_COLUMNS)
    for lo, hi in _blocks(len(labels)):
        chrom, ids, alleles = labels.rows(lo, hi)
        n = freqs.n_alleles[lo:hi]
        alt = _join(alleles[:, 1:], _present(n - 1, alleles.shape[1] - 1))
        alt_freqs = _join(_reals(freqs.freqs[lo:hi, 1:]), _present(n - 1, alleles.shape[1] - 1))
        yield _lines(chrom, ids, alleles[:, 0], alt, alt_freqs, _ints(freqs.an[lo:hi]))


def gcount(
    labels: VariantLabels, genotypes: GenotypeCounts, *, header: bool = True
) -> Iterator[str]:
    """``plink2 --geno-counts``: ``.gcount`` (haploid columns are 0: the calls are diploid)."""
    _check(labels, genotypes.n_alleles)
    if header:
        yield _header(GCOUNT_COLUMNS)
    k = genotypes.max_alleles
    for lo, hi in _blocks(len(labels)):
        chrom, ids, alleles = labels.rows(lo, hi)
        part = GenotypeCounts(genotypes.hist[lo:hi], genotypes.n_alleles[lo:hi])
        n = part.n_alleles
        alts = _present(n - 1, k - 1)
        two_alt = _present((n - 1) * n // 2, (k - 1) * k // 2)  # VCF order: a prefix
        yield _lines(
            chrom,
            ids,
            alleles[:, 0],
            _join(alleles[:, 1:k], alts),
            _ints(part.hom_ref),
            _join(_ints(part.het_ref_alt()), alts),
            _join(_ints(part.two_alt()), two_alt),
            np.full(hi - lo, b"0", dtype="S1"),
            _join(np.full((hi - lo, k - 1), b"0", dtype="S1"), alts),
            _ints(part.missing),
        )


def hardy(labels: VariantLabels, table: HardyTable, *, header: bool = True) -> Iterator[str]:
    """``plink2 --hardy`` (``--hardy midp`` when the table was computed with ``midp``):
    ``.hardy``, for autosomal variants (plink2 writes chrX to ``.hardy.x``, from sexes)."""
    if header:
        yield _header((*HARDY_COLUMNS, "MIDP" if table.midp else "P"))
    for lo, hi in _blocks(len(labels)):
        r0, r1 = np.searchsorted(table.variant, [lo, hi]).tolist()
        chrom, ids, alleles = labels.rows(lo, hi)
        v = table.variant[r0:r1] - lo
        a1 = table.a1[r0:r1]
        n = labels.n_alleles[lo:hi][v]
        others = np.arange(alleles.shape[1])[None, :]
        ax = _join(alleles[v], (others != a1[:, None]) & (others < n[:, None]))
        yield _lines(
            chrom[v],
            ids[v],
            alleles[v, a1],
            ax,
            _ints(table.hom_a1[r0:r1]),
            _ints(table.het_a1[r0:r1]),
            _ints(table.two_ax[r0:r1]),
            _reals(table.observed[r0:r1]),
            _reals(table.expected[r0:r1]),
            _reals(table.p[r0:r1]),
        )


def vmiss(
    labels: VariantLabels, missing: np.ndarray, n_samples: int, *, header: bool = True
) -> Iterator[str]:
    """``plink2 --missing``'s variant report ``.vmiss``: missing calls of ``n_samples``."""
    if header:
        yield _header(VMISS_COLUMNS)
    recip = 1.0 / n_samples if n_samples else float("inf")
    for lo, hi in _blocks(len(labels)):
        chrom, ids, _ = labels.rows(lo, hi)
        m = np.asarray(missing[lo:hi])
        obs = np.full(hi - lo, str(n_samples).encode())
        yield _lines(chrom, ids, _ints(m), obs, _reals(m * recip))


def smiss(
    samples: Sequence[str], missing: np.ndarray, n_variants: int, *, header: bool = True
) -> Iterator[str]:
    """``plink2 --missing``'s sample report ``.smiss``: missing calls over ``n_variants``."""
    if header:
        yield _header(SMISS_COLUMNS)
    recip = 1.0 / n_variants if n_variants else float("inf")
    m = np.asarray(missing)
    obs = np.full(len(samples), str(n_variants).encode())
    yield _lines(as_bytes(np.array(samples, dtype=object)), _ints(m), obs, _reals(m * recip))


def het(samples: Sequence[str], inbreeding: Inbreeding, *, header: bool = True) -> Iterator[str]:
    """``plink2 --het``: ``.het``."""
    if header:
        yield _header(HET_COLUMNS)
    yield _lines(
        as_bytes(np.array(samples, dtype=object)),
        _ints(inbreeding.o_hom),
        _reals(inbreeding.e_hom),
        _ints(inbreeding.obs),
        _reals(inbreeding.f),
    )


def _check(labels: VariantLabels, n_alleles: np.ndarray) -> None:
    if len(n_alleles) != len(labels) or np.any(np.asarray(n_alleles) != labels.n_alleles):
        raise ValueError("the statistics and the labels disagree on the variants' alleles")


def _header(columns: Sequence[str]) -> str:
    return "\t".join(columns) + "\n"


def _blocks(n: int) -> Iterator[tuple[int, int]]:
    for lo in range(0, n, BLOCK):
        yield lo, min(n, lo + BLOCK)


def as_bytes(values: np.ndarray) -> np.ndarray:
    """Labels as UTF-8 bytes (an ``S`` array), whether stored as bytes, text or objects."""
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return values
    if values.dtype.kind == "U":
        return np.strings.encode(values, "utf-8")
    flat = [v if isinstance(v, bytes) else str(v).encode() for v in values.ravel().tolist()]
    return np.array(flat, dtype=f"S{max([1, *map(len, flat)])}").reshape(values.shape)


#: Text of the integers a table covers at once (counts are at most twice the samples).
_INT_TABLE = 1 << 16


def _ints(values: np.ndarray) -> np.ndarray:
    """Decimal text of integers: a table of 0..max for counts, else each distinct value."""
    values = np.asarray(values)
    if values.size and values.min() >= 0 and values.max() < _INT_TABLE:
        table = np.array([b"%d" % i for i in range(int(values.max()) + 1)])
        return table[values]
    uniq, inverse = np.unique(values, return_inverse=True)
    text = np.array([b"%d" % int(v) for v in uniq.tolist()] or [b""])
    return text[inverse].reshape(values.shape)


def _reals(values: np.ndarray) -> np.ndarray:
    """plink2's text of reals, each distinct value formatted once."""
    values = np.asarray(values, dtype=np.float64)
    uniq, inverse = np.unique(values, return_inverse=True)
    text = np.array([t.encode() for t in format_g(uniq)] or [b""])
    return text[inverse].reshape(values.shape)


def _present(counts: np.ndarray, width: int) -> np.ndarray:
    """``(rows, width)``: the first ``counts[i]`` items of each row."""
    return np.arange(width)[None, :] < np.asarray(counts)[:, None]


def _join(items: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Comma-separated text of the present items of each row (``S`` arrays)."""
    items = np.ascontiguousarray(items)
    n, m = items.shape
    width = max(items.dtype.itemsize, 1)
    if items.dtype.itemsize == 0:
        items = items.astype("S1")
    out = np.zeros(n, dtype=f"S{max(m * width + m - 1, 1)}")
    take = np.ascontiguousarray(present, dtype=bool)
    _text.join(items, n, m, width, take.view(np.uint8), out, out.dtype.itemsize)
    return out


def _lines(*columns: np.ndarray) -> str:
    """Tab-separated rows of ``S``-array columns, each ending in a newline."""
    if not len(columns[0]):
        return ""
    cells = tuple(_cells(c) for c in columns)
    return _text.lines(cells).decode()


def _cells(column: np.ndarray) -> np.ndarray:
    """A column as a contiguous ``S`` array of at least one byte per cell."""
    column = np.ascontiguousarray(column)
    if column.dtype.kind != "S":
        column = column.astype("S")
    return column.astype("S1") if column.dtype.itemsize == 0 else column
