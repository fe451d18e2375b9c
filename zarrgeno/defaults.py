"""The defaults and choices the command line shows before it does any work.

``zarrgeno --help`` and every command's ``--help`` print these; kept here, away from numpy,
zarr and numcodecs, they cost nothing to import (a fast ``--help``). The
library modules that own their meaning import them from here and re-export them:
:mod:`zarrgeno.io.store`, :mod:`zarrgeno.io.compression`, :mod:`zarrgeno.io.remote_options`,
:mod:`zarrgeno.stats.kernels`, :mod:`zarrgeno.rewrite.arrayplan`,
:mod:`zarrgeno.rewrite.executors`, :mod:`zarrgeno.download.plan` and
:mod:`zarrgeno.simulate.genotypes`. tests/test_startup.py checks that ``--help`` loads none
of those libraries.
"""

from __future__ import annotations

from enum import StrEnum

#: Where the Ag1000G tutorials put AG1000G-AO; overridable with ``ZARRGENO_STORE``.
DEFAULT_STORE = "data/AG1000G-AO"
STORE_ENV = "ZARRGENO_STORE"
#: The directory of the remote chunk cache (``--cache``; see zarrgeno.io.remote_options).
CACHE_ENV = "ZARRGENO_CACHE"
#: Chunk requests each process keeps in flight for remote stores (``--fetch-concurrency``).
FETCH_CONCURRENCY_ENV = "ZARRGENO_FETCH_CONCURRENCY"
DEFAULT_FETCH_CONCURRENCY = 16
MAX_FETCH_CONCURRENCY = 256

#: What --max-mem promises: peak RSS <= PROMISE_FACTOR x max-mem + the interpreter's baseline
#: (see zarrgeno.rewrite.arrayplan).
PROMISE_FACTOR = 1.25

#: The MalariaGEN default, and the simulator's: Blosc(cname='lz4', clevel=5, shuffle=SHUFFLE).
DEFAULT_SPEC = "blosc:lz4:5:shuffle"

#: Execution backends of rechunk and recompress, named as ``zarrgeno stats`` names them
#: (``multiprocessing`` aside).
BACKENDS = ("sequential", "dask", "distributed")

#: Files ``zarrgeno download`` transfers at once.
DEFAULT_JOBS = 8
#: ``gsutil rsync -x`` in the Ag1000G tutorial: skip the AD, GQ and MQ arrays.
TUTORIAL_EXCLUDE = ".*/calldata/(AD|GQ|MQ)/.*"

#: Variants per contig in the real AG1000G-AO store (81 samples); ``scale=1`` reproduces them.
REAL_VARIANTS: dict[str, int] = {
    "2L": 48_525_747,
    "2R": 60_132_453,
    "3L": 40_758_473,
    "3R": 52_226_568,
    "X": 23_385_349,
}
CONTIGS: tuple[str, ...] = tuple(REAL_VARIANTS)
REAL_SAMPLES = 81
DEFAULT_SCALE = 0.01
DEFAULT_CHUNKS: tuple[int, int, int] = (300_000, 50, 2)


class Semantics(StrEnum):
    """How a call counts. ``tutorial``: the Ag1000G tutorial's definitions, on allele 0.

    ``tutorial``: missing = allele 0 is -1; hom-ref = both alleles 0; het = alleles differ.
    A partial call (-1, 1) is both missing and het; (1, -1) is het only.
    ``sgkit``: missing = any allele < 0; hom-ref = both alleles 0; het = both called and
    different (scikit-allel / sgkit / plink). A partial call is missing, never het.
    In both, a call holding -2 (VCF Zarr's fill for a haploid call in a diploid array,
    ``(0, -2)``) is missing and never het, as scikit-allel and sgkit count it.
    """

    TUTORIAL = "tutorial"
    SGKIT = "sgkit"


#: The sample column of ``--sample-metadata`` (MalariaGEN's ``samples.meta.csv``); see
#: zarrgeno.stats.cohorts.
DEFAULT_SAMPLE_COLUMN = "sample_id"
