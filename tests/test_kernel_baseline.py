"""The counting kernel built for the x86-64 baseline alone counts like the installed one.

The installed extension picks its loop from the CPU at run time (AVX2 here), so the
baseline loop that a CPU without AVX2 runs is never executed on this machine. This test
compiles ``_kernel.c`` again with ``ZARRGENO_BASELINE_ONLY`` (no AVX2 loop, no AVX2 clone of
the portable loop) and compares both builds call for call.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sysconfig
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

from zarrgeno.stats import _kernel

SOURCE = Path(__file__).resolve().parents[1] / "zarrgeno" / "stats" / "_kernel.c"


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> ModuleType:
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        pytest.skip("no C compiler to build the baseline kernel")
    out = tmp_path_factory.mktemp("baseline") / f"_kernel{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    subprocess.run(
        [
            compiler,
            "-O3",
            "-std=c99",
            "-shared",
            "-fPIC",
            "-DZARRGENO_BASELINE_ONLY",
            f"-I{include}",
            str(SOURCE),
            "-o",
            str(out),
        ],
        check=True,
        capture_output=True,
    )
    spec = importlib.util.spec_from_file_location("_kernel", out)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count(kernel: ModuleType, gt: np.ndarray, c0: int, c1: int, sgkit: bool, dtype: type):
    n, stride, _ = gt.shape
    variant = np.zeros((3, n), dtype=dtype)
    sample = np.zeros((3, c1 - c0), dtype=np.int64)
    partial = kernel.count_packed(gt, n, stride, c0, c1, sgkit, variant, variant.itemsize, sample)
    return variant, sample, partial


def test_the_baseline_build_has_no_simd_loop(baseline: ModuleType) -> None:
    assert baseline.simd() is False
    with pytest.raises(ValueError, match="no AVX2 path"):
        baseline.simd(True)
    assert baseline.avx512() is False
    with pytest.raises(ValueError, match="no AVX-512 path"):
        baseline.avx512(True)


@pytest.mark.parametrize("sgkit", [False, True])
def test_baseline_and_installed_builds_count_the_same(baseline: ModuleType, sgkit: bool) -> None:
    rng = np.random.default_rng(11)
    calls = np.array([-1, 0, 1, 2, -2, 127, -128], dtype="i1")
    shapes = [
        (40_003, 50, (0, 50)),
        (40_003, 50, (0, 31)),
        (5_000, 81, (0, 81)),
        (3_000, 130, (7, 129)),
        (2_000, 20, (3, 11)),
        (100, 16, (0, 16)),
    ]
    for n, stride, (c0, c1) in shapes:
        gt = rng.choice(calls, size=(n, stride, 2), p=[0.2, 0.5, 0.15, 0.05, 0.04, 0.03, 0.03])
        gt[rng.random(n) < 0.3] = 0  # uniform rows, as in real data
        for dtype in (np.uint8, np.uint16, np.uint32, np.uint64):
            want = _count(_kernel, gt, c0, c1, sgkit, dtype)
            got = _count(baseline, gt, c0, c1, sgkit, dtype)
            np.testing.assert_array_equal(got[0], want[0], err_msg=f"{n, stride, c0, c1}")
            np.testing.assert_array_equal(got[1], want[1], err_msg=f"{n, stride, c0, c1}")
            assert got[2] == want[2], (n, stride, c0, c1)  # the partial calls


def _qc(kernel: ModuleType, gt: np.ndarray, c0: int, c1: int, sgkit: bool) -> tuple:
    n, stride, _ = gt.shape
    width = c1 - c0
    variant = np.zeros((3, n), dtype=np.uint16)
    sample = np.zeros((3, width), dtype=np.int64)
    hist = np.zeros((n, 11), dtype=np.uint16)
    qsample = np.zeros((3, width), dtype=np.int64)
    bits = np.zeros((n, (width + 7) // 8), dtype=np.uint8)
    whole = (hist, 2, 11, hist.reshape(-1)[4:], 11, np.zeros(0, np.uint8))  # whole rows
    partial, beyond = kernel.qc_count(
        gt, 1, n, stride, c0, c1, sgkit, variant, 2, sample, 4, *whole, qsample, bits
    )
    return variant, sample, hist, qsample, bits, partial, beyond


@pytest.mark.parametrize("sgkit", [False, True])
def test_baseline_and_installed_builds_count_qc_the_same(baseline: ModuleType, sgkit: bool):
    """The QC pass (histograms, sgkit classes, missing bits) of both builds."""
    rng = np.random.default_rng(12)
    for n, stride, (c0, c1) in [(10_007, 50, (0, 50)), (3_000, 50, (0, 31)), (500, 9, (2, 9))]:
        gt = rng.choice(np.array([-1, 0, 0, 0, 1, 2, 3, -2], dtype="i1"), size=(n, stride, 2))
        mine, theirs = _qc(_kernel, gt, c0, c1, sgkit), _qc(baseline, gt, c0, c1, sgkit)
        for a, b in zip(mine, theirs, strict=True):
            np.testing.assert_array_equal(a, b)


def _unit(kernel: ModuleType, hist: np.ndarray, k: int, listed: np.ndarray | None) -> tuple:
    n = len(hist)
    alleles = np.zeros(n, np.int64) if listed is None else listed.copy()
    ehet, poly = np.empty(n), np.empty(n, np.uint8)
    seen = np.zeros(k + 1, np.int64)
    h = hist.shape[1]
    whole = (hist, hist.itemsize, h, hist.reshape(-1)[4:], h, np.zeros(0, np.uint8))
    row = kernel.unit_alleles(*whole, n, k, 81, alleles, listed is None, ehet, poly, seen)
    counts = np.empty((n, k), np.int64)
    kernel.allele_counts(hist, hist.itemsize, n, k, counts)
    bits = np.random.default_rng(n).integers(0, 256, size=(n, 11), dtype=np.uint8)
    obs, expected = np.zeros(81, np.int64), np.zeros(81)
    kernel.missing_terms(bits, n, 11, 81, ehet, poly, obs, expected)
    return alleles, ehet.view(np.uint64), poly, seen, row, counts, obs, expected.view(np.uint64)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.uint32])
def test_baseline_and_installed_builds_take_the_unit_step_the_same(
    baseline: ModuleType, dtype: type
) -> None:
    """The QC unit step (alleles, expected heterozygosity to the bit, alleles seen, allele
    counts, the per-sample missing terms) of both builds, on rows mostly of alleles 0 and
    1, as SNP data is, with some of more alleles, some with no call."""
    rng = np.random.default_rng(13)
    for k, n in [(4, 4_001), (2, 1_003), (5, 998)]:
        h = 1 + k * (k + 1) // 2
        hist = np.zeros((n, h), dtype=dtype)
        two = rng.multinomial(81, [0.14, 0.6, 0.2, 0.06], size=n)
        hist[:, :4] = two
        more = rng.random(n) < 0.05
        hist[more] = rng.multinomial(81, np.full(h, 1 / h), size=int(more.sum()))
        hist[rng.random(n) < 0.2] = 0
        for listed in (None, rng.choice([2, 2, 2, k], size=n).astype(np.int64)):
            mine, theirs = _unit(_kernel, hist, k, listed), _unit(baseline, hist, k, listed)
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b)
