"""Cohorts from a sample metadata table: read and check the table, group the samples.

``--sample-metadata FILE --cohort-by country,year`` reads a CSV or TSV table (the
delimiter is told from the header line: a tab makes it TSV), one row per sample, with a
sample column (``sample_id`` as in MalariaGEN's ``samples.meta.csv``, or another named
with ``--sample-column``). Each sample's cohort is its values of the ``--cohort-by``
columns joined by ``_`` (``Angola_2009``), with any character other than letters,
digits, ``.``, ``+`` and ``-`` made ``_`` so that the name can go into a file name
(plink2's ``--loop-cats`` naming: ``PREFIX.Angola_2009.afreq``).

The table is checked whole before anything is counted: a file that is not a regular
file, larger than :data:`MAX_TABLE_BYTES` or not UTF-8 text, a row of another width than
the header, an empty or repeated sample id, an empty cohort value, and a sample of the
table that the store does not have are refused, naming the file. A selected sample of
the store that the table does not list is in no cohort (a note says how many). Cohorts
smaller than ``min_size`` are left out (a note names them).
"""

from __future__ import annotations

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from zarrgeno.defaults import DEFAULT_SAMPLE_COLUMN
from zarrgeno.errors import BadDataError, MissingInputError, StoreIOError, UsageError
from zarrgeno.io.bounded import open_regular, read_fd

#: Largest metadata table read (MalariaGEN's samples.meta.csv of Ag3.0: a few MB).
MAX_TABLE_BYTES = 256 * 2**20
#: Characters a cohort name keeps; any other becomes ``_``.
_UNSAFE = re.compile(r"[^A-Za-z0-9.+\-]")
#: Sample ids shown in a message at most.
_SHOWN = 3


@dataclass(frozen=True)
class CohortSpec:
    """What the user asked for: the table, its sample column, the columns that define a
    cohort, and the smallest cohort kept."""

    path: str | os.PathLike[str]
    by: tuple[str, ...]
    sample_column: str = DEFAULT_SAMPLE_COLUMN
    min_size: int = 1

    def __post_init__(self) -> None:
        by = (self.by,) if isinstance(self.by, str) else tuple(self.by)
        object.__setattr__(self, "by", tuple(c.strip() for c in by))
        if not self.by or any(not c for c in self.by):
            raise UsageError("--cohort-by needs one or more column names: country or country,year")
        if len(set(self.by)) != len(self.by):
            raise UsageError(f"--cohort-by names a column twice: {','.join(self.by)}")
        if self.min_size < 1:
            raise UsageError(f"--min-cohort-size must be at least 1, not {self.min_size}")


@dataclass(frozen=True)
class SampleTable:
    """A checked table: each listed sample's cohort values, in the table's order."""

    path: str
    samples: tuple[str, ...]
    values: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Cohorts:
    """The cohorts of a run: their names (sorted), each one's sample count, and each
    selected sample's cohort (``index[j]``: a position in ``names``, or -1 for none).
    Picklable: it travels with each work unit's QC request."""

    path: str
    by: tuple[str, ...]
    names: tuple[str, ...]
    sizes: tuple[int, ...]
    index: np.ndarray = field(repr=False, compare=False)
    min_size: int = 1
    #: Cohorts left out for their size, with their sizes.
    dropped: tuple[tuple[str, int], ...] = ()
    #: Selected samples of the store that the table does not list.
    unlisted: tuple[str, ...] = ()

    @property
    def n_cohorts(self) -> int:
        return len(self.names)

    def members(self, cohort: int) -> np.ndarray:
        """Positions (among the selected samples) of a cohort's samples."""
        return np.flatnonzero(self.index == cohort)

    def notes(self) -> list[str]:
        """What was left out, in a line each (for stderr)."""
        out = []
        if self.unlisted:
            out.append(
                f"{len(self.unlisted):,} sample(s) of the store are not in {self.path} "
                f"({_show(self.unlisted)}): they are in no cohort"
            )
        if self.dropped:
            shown = ", ".join(f"{n} ({k})" for n, k in self.dropped[:10])
            more = f" and {len(self.dropped) - 10} more" if len(self.dropped) > 10 else ""
            out.append(
                f"{len(self.dropped)} cohort(s) with fewer than {self.min_size} samples left "
                f"out: {shown}{more}"
            )
        return out


def _show(names: Sequence[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (" ..." if len(names) > _SHOWN else "")


def cohort_name(values: Sequence[str]) -> str:
    """A cohort's name: its values joined by ``_``, safe in a file name.

    >>> cohort_name(["Burkina Faso", "2012"]), cohort_name(["Angola", "2009"])
    ('Burkina_Faso_2012', 'Angola_2009')
    >>> cohort_name(["../x"])
    '_.._x'
    """
    name = _UNSAFE.sub("_", "_".join(values))
    return "_" + name if name.startswith(".") else name


def read_table(spec: CohortSpec) -> SampleTable:
    """Read and check ``spec.path``: see the module's docstring for what is refused."""
    path = os.fspath(spec.path)
    what = "sample metadata"
    try:
        fd = open_regular(path, path, what)
        try:
            data = read_fd(fd, path, MAX_TABLE_BYTES, what)
        finally:
            os.close(fd)
    except KeyError:
        raise MissingInputError(f"{what} {path}: no such file") from None
    except StoreIOError as exc:  # as --samples @FILE: a file the user cannot read
        raise UsageError(f"cannot read {exc}") from None
    if b"\0" in data:
        raise BadDataError(f"{what} {path} is not a text table (it holds NUL bytes)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadDataError(
            f"{what} {path} is not UTF-8 text (byte {exc.start:,}): a CSV or TSV table is needed"
        ) from None
    first = text.split("\n", 1)[0]
    delimiter = "\t" if "\t" in first else ","
    kind = "TSV" if delimiter == "\t" else "CSV"
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True))
    except csv.Error as exc:
        raise BadDataError(f"{what} {path}: not a readable {kind} table ({exc})") from None
    rows = [r for r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise BadDataError(f"{what} {path} is empty: a header line and one row per sample needed")
    header = [c.strip() for c in rows[0]]
    wanted = (spec.sample_column, *spec.by)
    absent = [c for c in wanted if c not in header]
    if absent:
        hint = (
            " (name the sample column with --sample-column)"
            if absent[0] == spec.sample_column
            else ""
        )
        raise UsageError(
            f"{what} {path} has no column {absent[0]!r}{hint}; its {kind} header has "
            f"{_show(header)}"
        )
    for c in wanted:
        if header.count(c) > 1:
            raise BadDataError(f"{what} {path}: the header names column {c!r} twice")
    at = [header.index(c) for c in wanted]
    samples: list[str] = []
    values: list[tuple[str, ...]] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise BadDataError(
                f"{what} {path}: row {line} has {len(row)} fields, the header {len(header)}"
            )
        cells = [row[k].strip() for k in at]
        sample = cells[0]
        if not sample:
            raise BadDataError(f"{what} {path}: row {line} has an empty {spec.sample_column}")
        if sample in seen:
            raise BadDataError(
                f"{what} {path}: sample {sample!r} is listed twice (rows {seen[sample]} and {line})"
            )
        seen[sample] = line
        for column, value in zip(spec.by, cells[1:], strict=True):
            if not value:
                raise BadDataError(
                    f"{what} {path}: sample {sample!r} (row {line}) has an empty {column!r}"
                )
        samples.append(sample)
        values.append(tuple(cells[1:]))
    if not samples:
        raise BadDataError(f"{what} {path} lists no sample (a header line only)")
    return SampleTable(path, tuple(samples), tuple(values))


def assign_cohorts(
    spec: CohortSpec,
    store_samples: Sequence[str],
    selection: Sequence[int] | None,
    store: str = "the store",
) -> Cohorts:
    """The cohorts of the selected samples (``selection``: positions in
    ``store_samples``, None for all), from the table of ``spec``."""
    table = read_table(spec)
    known = set(store_samples)
    foreign = [s for s in table.samples if s not in known]
    if foreign:
        raise BadDataError(
            f"sample metadata {table.path}: {len(foreign):,} of its {len(table.samples):,} "
            f"samples are not in {store} ({_show(foreign)}); give a table of this store's "
            "samples"
        )
    chosen = list(store_samples) if selection is None else [store_samples[j] for j in selection]
    of_sample = dict(zip(table.samples, table.values, strict=True))
    names_of: dict[tuple[str, ...], str] = {}
    for values in dict.fromkeys(of_sample[s] for s in chosen if s in of_sample):
        names_of[values] = cohort_name(values)
    by_name: dict[str, tuple[str, ...]] = {}
    for values, name in names_of.items():
        if name in by_name:
            raise BadDataError(
                f"sample metadata {table.path}: cohorts {'/'.join(by_name[name])} and "
                f"{'/'.join(values)} would both be named {name}"
            )
        by_name[name] = values
    counts: dict[str, int] = dict.fromkeys(sorted(by_name), 0)
    for s in chosen:
        if s in of_sample:
            counts[names_of[of_sample[s]]] += 1
    kept = [n for n, k in counts.items() if k >= spec.min_size]
    dropped = tuple((n, k) for n, k in counts.items() if k < spec.min_size)
    if not kept:
        raise UsageError(
            f"sample metadata {table.path}: no cohort by {','.join(spec.by)} has "
            f"{spec.min_size} or more of the selected samples (the largest has "
            f"{max(counts.values(), default=0)})"
        )
    position = {n: i for i, n in enumerate(kept)}
    index = np.full(len(chosen), -1, dtype=np.int32)
    for j, s in enumerate(chosen):
        if s in of_sample:
            index[j] = position.get(names_of[of_sample[s]], -1)
    return Cohorts(
        path=table.path,
        by=spec.by,
        names=tuple(kept),
        sizes=tuple(counts[n] for n in kept),
        index=index,
        min_size=spec.min_size,
        dropped=dropped,
        unlisted=tuple(s for s in chosen if s not in of_sample),
    )
