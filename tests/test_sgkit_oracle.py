"""QC statistics against sgkit 0.10's own, run in the sgkit oracle venv (``make sgkit-venv``).

The store is tests/test_qc_pass.py's (:func:`qcdata.random_store`): 2L, 2R and X of 60
samples with missing calls, half calls (``0/.``), phased calls, sites of up to 3 ALT
alleles (some listed and never called, some ``ALT .``), sites far from Hardy-Weinberg
proportions and sites with no call, converted by scikit-allel in chunks of 32 variants x 23
samples and counted in units of one chunk row. One process of the sgkit venv
(tests/sgkit_oracle.py, once per module: numba compiles sgkit's kernels) computes
``variant_stats``, ``sample_stats``, ``count_variant_genotypes`` and
``hardy_weinberg_test`` of the same calls and opens ``zarrgeno stats --qc --output X.zarr``
with ``sgkit.load_dataset``; the tests compare both zarrgeno's Python API
(``genotype_stats(qc=True).qc.to_xarray()``) and that Zarr output with it.

Where the rules differ. A half call is missing in every QC statistic (plink2's
``--vcf-half-call m``, whatever ``--semantics``); sgkit does not count it as called either,
but its ``variant_allele_count`` counts the half call's one called allele. The allele
counts are therefore compared with sgkit's on the calls with each half call made missing
first, and sgkit's own are checked to exceed them by exactly those alleles. The counts
table (missing, hom-ref, het) is compared under ``--semantics sgkit``, sgkit's rule; the
default ``tutorial`` rule counts half calls as het.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from oraclevenv import OracleVenv
from qcdata import random_store
from test_real_stores import run

import zarrgeno.stats.api
from zarrgeno.stats.api import genotype_stats

pytest.importorskip("allel")
pytest.importorskip("xarray")

SGKIT = OracleVenv("the sgkit oracle venv", "ZARRGENO_SGKIT_PYTHON", ".venv-sgkit", "sgkit-venv")
pytestmark = SGKIT.needs

ORACLE = Path(__file__).with_name("sgkit_oracle.py")
CONTIGS = ["2L", "2R", "X"]
N_SAMPLES = 60
SAMPLES = [f"AB{j:04d}-C" for j in range(N_SAMPLES)]
#: Two roundings (plink2's AC x (1/AN), as zarrgeno computes frequencies) against sgkit's
#: one (AC / AN): at most 1.5 units in the last place apart.
FREQ_RTOL = 2 * np.finfo(np.float64).eps
#: HWE p: both are Wigginton et al.'s recurrence in float64, but plink2's (zarrgeno's) sums
#: the probabilities relative to the observed count's and sgkit's normalises the whole
#: distribution (with numba's fastmath), so the last bits differ (8.4e-16 relative at most
#: on this store). A genotype counted wrongly moves p by far more than this bound, and so
#: does a tail term added or left out unless it is below 1e-12 of p.
HWE_RTOL = 1e-12
VARIANT_COUNTS = (
    "variant_n_called",
    "variant_call_rate",
    "variant_n_het",
    "variant_n_hom_ref",
    "variant_n_hom_alt",
    "variant_n_non_ref",
)
SAMPLE_COUNTS = (
    "sample_n_called",
    "sample_call_rate",
    "sample_n_het",
    "sample_n_hom_ref",
    "sample_n_hom_alt",
    "sample_n_non_ref",
)


@dataclass(frozen=True)
class Case:
    """The store, zarrgeno's Zarr output, the API's Dataset and sgkit's results."""

    store: Path
    output: Path
    api: Any
    theirs: dict[str, np.ndarray]

    def sgkit(self, name: str) -> np.ndarray:
        return self.theirs[f"sgkit:{name}"]

    def loaded(self, name: str) -> np.ndarray:
        """``name`` of zarrgeno's Zarr output, as ``sgkit.load_dataset`` read it."""
        return self.theirs[f"loaded:{name}"]

    def ours(self, name: str) -> list[np.ndarray]:
        """``name`` from the API and from the Zarr output: each must equal sgkit's."""
        return [self.api[name].values, self.loaded(name)]

    def calls(self) -> np.ndarray:
        root = zarr.open_group(str(self.store), mode="r")
        return np.concatenate([root[f"{c}/calldata/GT"][:] for c in CONTIGS])


@pytest.fixture(scope="module")
def case(tmp_path_factory: pytest.TempPathFactory) -> Case:
    where = tmp_path_factory.mktemp("sgkit")
    _, store = random_store(where, CONTIGS, 130, SAMPLES, 21, length=32, width=23)
    output = where / "out.zarr"
    with pytest.MonkeyPatch.context() as patch:  # several units per contig
        patch.setattr(zarrgeno.stats.api, "UNIT_CALLS", 1)
        run("stats", str(store), "--qc", "--semantics", "sgkit", "--output", str(output))
        qc = genotype_stats(store, qc=True).qc
    assert qc is not None
    npz = where / "sgkit.npz"
    # sgkit's numba kernels kept compiled in its venv: a second run does not compile them
    SGKIT.run_script(
        ORACLE, store, output, npz, *CONTIGS, timeout=900, env={"SGKIT_DISABLE_NUMBA_CACHE": "0"}
    )
    with np.load(npz) as theirs:
        return Case(store, output, qc.to_xarray(), dict(theirs))


def test_variant_counts_equal_variant_stats(case: Case) -> None:
    """Called, het (REF/ALT and ALT/ALT), hom-ref, hom-alt (any ALT/same ALT), non-ref
    calls and the call rate of each variant: exactly sgkit's."""
    for name in VARIANT_COUNTS:
        for ours in case.ours(name):
            np.testing.assert_array_equal(ours, case.sgkit(name), err_msg=name)
    assert (case.sgkit("variant_n_called") == 0).any()  # sites with no call
    assert (case.sgkit("variant_n_hom_alt") > case.sgkit("variant_n_het")).any()


def test_genotype_counts_equal_count_variant_genotypes(case: Case) -> None:
    """Every genotype's count (0/0, 0/1, 1/1, 0/2, ... 3/3, VCF order: plink2's .gcount
    columns) equals sgkit's ``variant_genotype_count`` over the 4 alleles."""
    qc = genotype_stats(case.store, qc=True).qc
    assert qc is not None
    counts = [qc.contig(c).variants.genotypes.genotypes for c in CONTIGS]  # type: ignore[union-attr]
    theirs = case.sgkit("variant_genotype_count")
    assert theirs.shape == (390, 10)
    np.testing.assert_array_equal(np.concatenate(counts), theirs)
    assert theirs[:, 4:].sum() > 0  # genotypes of alleles 2 and 3


def test_allele_counts_and_frequencies(case: Case) -> None:
    """AC, AN and the allele frequencies equal sgkit's ``variant_stats`` with half calls
    made missing first; sgkit's own counts exceed zarrgeno's by exactly the half calls'
    called alleles. Frequencies past a variant's listed alleles are NaN in zarrgeno (no
    such allele) and 0 in sgkit (every variant has the dataset's 4 alleles)."""
    masked = case.theirs
    for name in ("variant_allele_count", "variant_allele_total"):
        for ours in case.ours(name):
            np.testing.assert_array_equal(ours, masked[f"masked:{name}"], err_msg=name)
    gt = case.calls()
    half = masked["half_calls"][..., None] & (gt >= 0)
    alleles = np.stack([(half & (gt == a)).sum(axis=(1, 2)) for a in range(4)], axis=1)
    assert alleles.sum() > 0
    np.testing.assert_array_equal(case.api["variant_allele_count"] + alleles,
                                  case.sgkit("variant_allele_count"))  # fmt: skip

    theirs = masked["masked:variant_allele_frequency"]
    listed = np.arange(4)[None, :] < masked["n_alleles"][:, None]
    called = masked["masked:variant_allele_total"] > 0
    for ours in case.ours("variant_allele_frequency"):
        both = listed & called[:, None]
        np.testing.assert_allclose(ours[both], theirs[both], rtol=FREQ_RTOL, atol=0)
        assert np.isnan(ours[~listed]).all() and (theirs[~listed & called[:, None]] == 0).all()
        assert np.isnan(ours[~called]).all() and np.isnan(theirs[~called]).all()
    assert (~listed).any() and (~called).any()


def test_sample_stats_equal(case: Case) -> None:
    """Each sample's called, het, hom-ref, hom-alt and non-ref calls and its call rate over
    every contig's variants (X too): exactly sgkit's ``sample_stats``."""
    for name in SAMPLE_COUNTS:
        for ours in case.ours(name):
            np.testing.assert_array_equal(ours, case.sgkit(name), err_msg=name)


def test_hwe_p_equals_hardy_weinberg_test(case: Case) -> None:
    """The HWE exact test p of each variant of two alleles equals sgkit's
    ``hardy_weinberg_test`` (within :data:`HWE_RTOL`); a variant with no call has p 1 (as
    plink2 prints it) where sgkit gives NaN; more alleles: NaN (sgkit tests two only)."""
    biallelic = case.theirs["biallelic"]
    theirs = case.sgkit("variant_hwe_p_value")
    no_call = case.sgkit("variant_n_called")[biallelic] == 0
    assert np.isnan(theirs[no_call]).all() and not np.isnan(theirs[~no_call]).any()
    for ours in case.ours("variant_hwe_p_value"):
        p = ours[biallelic]
        np.testing.assert_allclose(p[~no_call], theirs[~no_call], rtol=HWE_RTOL, atol=0)
        assert (p[no_call] == 1).all() and np.isnan(ours[~biallelic]).all()
    assert no_call.any() and (~biallelic).any() and (theirs < 1e-6).any()


def test_counts_table_under_sgkit_semantics(case: Case) -> None:
    """``--semantics sgkit``: the per-variant missing, hom-ref and het counts of the Zarr
    output and its per-sample ones equal sgkit's (missing: the samples less the called);
    the default ``tutorial`` rule's het counts do not (half calls are het there)."""
    root = zarr.open_group(str(case.output), mode="r")
    got = {k: np.concatenate([root[f"{c}/variants/{k}"][:] for c in CONTIGS])
           for k in ("n_missing", "n_hom_ref", "n_het")}  # fmt: skip
    np.testing.assert_array_equal(got["n_missing"], N_SAMPLES - case.sgkit("variant_n_called"))
    np.testing.assert_array_equal(got["n_hom_ref"], case.sgkit("variant_n_hom_ref"))
    np.testing.assert_array_equal(got["n_het"], case.sgkit("variant_n_het"))
    per_sample = root["all_samples"]
    n_variants = len(got["n_het"])
    np.testing.assert_array_equal(
        per_sample["n_missing"][:], n_variants - case.sgkit("sample_n_called")
    )
    for name in ("n_called", "n_hom_ref", "n_het", "call_rate"):
        np.testing.assert_array_equal(per_sample[name][:], case.sgkit(f"sample_{name}"))
    tutorial = genotype_stats(case.store)
    het = np.concatenate([tutorial.contig(c).variant_counts[2] for c in CONTIGS])  # type: ignore[index]
    assert (het > case.sgkit("variant_n_het")).any()


def test_zarr_output_opens_with_sgkit_load_dataset(case: Case) -> None:
    """``sgkit.load_dataset(OUT, group="qc")`` opens zarrgeno's Zarr output: every variable
    that sgkit computes has sgkit's dimensions, the others the API's; the values are the
    API's, and ``variant_position`` the store's POS."""
    dims = json.loads(str(case.theirs["loaded_dims"]))
    sgkit_dims = json.loads(str(case.theirs["sgkit_dims"]))
    shared = set(sgkit_dims) & set(dims)
    assert shared >= {*VARIANT_COUNTS, *SAMPLE_COUNTS, "variant_allele_count",
                      "variant_allele_total", "variant_allele_frequency",
                      "variant_hwe_p_value"}  # fmt: skip
    for name in shared:
        assert dims[name] == sgkit_dims[name], name
    api = case.api
    assert set(dims) == {*api.variables, "variant_position"}  # the API has no positions
    root = zarr.open_group(str(case.store), mode="r")
    pos = np.concatenate([root[f"{c}/variants/POS"][:] for c in CONTIGS])
    np.testing.assert_array_equal(case.loaded("variant_position"), pos)
    assert dims["variant_position"] == ["variants"]
    for name in set(dims) - {"variant_position"}:
        assert dims[name] == list(api[name].dims), name
        np.testing.assert_array_equal(case.loaded(name), api[name].values, err_msg=name)
    sizes = json.loads(str(case.theirs["loaded_sizes"]))
    assert sizes == {"variants": 390, "alleles": 4, "samples": N_SAMPLES, "contigs": 3}
    assert case.loaded("sample_id").tolist() == SAMPLES
    assert case.loaded("contig_id").tolist() == CONTIGS
