"""The Hardy-Weinberg exact test: against exact enumeration, and step for step against
plink2's ``HweP`` (a line-by-line Python transcription of plink2 2.00a3.5's loop)."""

from __future__ import annotations

import sys
from fractions import Fraction
from math import comb, factorial

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarrgeno.stats.qc import hwe
from zarrgeno.stats.qc.hwe import EXACT_TEST_BIAS, SMALL_EPSILON, hwe_p


def exact_p(het: int, hom1: int, hom2: int) -> tuple[Fraction, Fraction]:
    """p and mid-p by enumerating every heterozygote count, in exact arithmetic: the
    probability of k hets given n genotypes and r copies of the rarer allele is
    n! / (hom_r! k! hom_c!) 2^k / C(2n, r)."""
    n = het + hom1 + hom2
    if n == 0:
        return Fraction(1), Fraction(1, 2)
    rare = 2 * min(hom1, hom2) + het
    probs = {}
    for k in range(rare % 2, rare + 1, 2):
        hom_r = (rare - k) // 2
        hom_c = n - k - hom_r
        if hom_c < 0:
            continue
        ways = factorial(n) // (factorial(hom_r) * factorial(k) * factorial(hom_c))
        probs[k] = Fraction(ways * 2**k, comb(2 * n, rare))
    observed = probs[het]
    p = sum((q for q in probs.values() if q <= observed), Fraction(0))
    ties = sum((q for q in probs.values() if q == observed), Fraction(0))
    return p, p - ties / 2


def plink2_hwe(obs_hets: int, obs_hom1: int, obs_hom2: int, midp: bool) -> float:
    """plink2 2.00a3.5's HweP, transcribed statement by statement (one site)."""
    homc, homr = (obs_hom2, obs_hom1) if obs_hom1 < obs_hom2 else (obs_hom1, obs_hom2)
    rare = 2 * homr + obs_hets
    g2 = (obs_hets + homc + homr) * 2
    if not g2:
        return 0.5 if midp else 1.0
    tie, bias, eps = 1, EXACT_TEST_BIAS, SMALL_EPSILON
    h2, r2, c2 = float(obs_hets), float(homr), float(homc)
    tailp = (1 - eps) * bias
    centerp, lastp2, lastp1 = 0.0, tailp, tailp
    if obs_hets * g2 > rare * (g2 - rare):
        while h2 > 1.5:
            r2 += 1
            c2 += 1
            lastp2 *= (h2 * (h2 - 1)) / (4 * r2 * c2)
            h2 -= 2
            if lastp2 < bias:
                tie += lastp2 > (1 - 2 * eps) * bias
                tailp += lastp2
                break
            centerp += lastp2
            if centerp > sys.float_info.max:
                return 0.0
        if centerp == 0 and not midp:
            return 1.0
        while h2 > 1.5:
            r2 += 1
            c2 += 1
            lastp2 *= (h2 * (h2 - 1)) / (4 * r2 * c2)
            h2 -= 2
            pre, tailp = tailp, tailp + lastp2
            if tailp <= pre:
                break
        h1, r1, c1 = obs_hets + 2.0, float(homr), float(homc)
        while r1 > 0.5:
            lastp1 *= (4 * r1 * c1) / (h1 * (h1 - 1))
            pre, tailp = tailp, tailp + lastp1
            if tailp <= pre:
                break
            h1, r1, c1 = h1 + 2, r1 - 1, c1 - 1
    else:
        while r2 > 0.5:
            h2 += 2
            lastp2 *= (4 * r2 * c2) / (h2 * (h2 - 1))
            r2 -= 1
            c2 -= 1
            if lastp2 < bias:
                tie += lastp2 > (1 - 2 * eps) * bias
                tailp += lastp2
                break
            centerp += lastp2
            if centerp > sys.float_info.max:
                return 0.0
        if centerp == 0 and not midp:
            return 1.0
        while r2 > 0.5:
            h2 += 2
            lastp2 *= (4 * r2 * c2) / (h2 * (h2 - 1))
            r2 -= 1
            c2 -= 1
            pre, tailp = tailp, tailp + lastp2
            if tailp <= pre:
                break
        h1, r1, c1 = float(obs_hets), float(homr), float(homc)
        while h1 > 1.5:
            r1 += 1
            c1 += 1
            lastp1 *= (h1 * (h1 - 1)) / (4 * r1 * c1)
            pre, tailp = tailp, tailp + lastp1
            if tailp <= pre:
                break
            h1 -= 2
    if not midp:
        return tailp / (tailp + centerp)
    return (tailp - ((1 - eps) * bias * 0.5) * tie) / (tailp + centerp)


small = st.integers(0, 14)


@given(small, small, small)
def test_p_and_midp_equal_exact_enumeration(het: int, hom1: int, hom2: int) -> None:
    p, midp = exact_p(het, hom1, hom2)
    assert hwe_p(het, hom1, hom2)[()] == pytest.approx(float(p), rel=1e-9)
    assert hwe_p(het, hom1, hom2, midp=True)[()] == pytest.approx(float(midp), rel=1e-9)


triples = st.lists(st.tuples(*[st.integers(0, 3000)] * 3), min_size=1, max_size=40)


@given(triples, st.booleans())
def test_every_bit_equals_plink2s_loop(rows: list[tuple[int, int, int]], midp: bool) -> None:
    """Up to 9,000 genotypes (p-values down to the smallest doubles, and 0 when plink2's
    centre overflows): the same floating-point steps give the same bits."""
    het, hom1, hom2 = (np.array(c) for c in zip(*rows, strict=True))
    want = [plink2_hwe(*row, midp) for row in rows]
    assert hwe_p(het, hom1, hom2, midp=midp).tolist() == want


def test_every_triple_of_up_to_eleven_genotypes_equals_plink2s_loop() -> None:
    grid = np.array([(h, a, b) for h in range(12) for a in range(12) for b in range(12)])
    for midp in (False, True):
        want = [plink2_hwe(*row, midp) for row in grid.tolist()]
        assert hwe_p(grid[:, 0], grid[:, 1], grid[:, 2], midp=midp).tolist() == want


def test_lookup_table_and_sorting_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Few samples go through a table of every possible triple, many through np.unique."""
    rng = np.random.default_rng(3)
    het, hom1, hom2 = rng.integers(0, 90, (3, 20_000))
    table = hwe_p(het, hom1, hom2)
    monkeypatch.setattr(hwe, "DENSE_TRIPLES", 0)
    assert hwe_p(het, hom1, hom2).tolist() == table.tolist()
    monkeypatch.setattr(hwe, "BLOCK", 999)  # blocks of the table lookup
    monkeypatch.setattr(hwe, "DENSE_TRIPLES", 1 << 22)
    assert hwe_p(het, hom1, hom2).tolist() == table.tolist()


def test_edge_cases_and_shapes() -> None:
    """No genotype: p 1, mid-p 0.5 (plink2). Monomorphic: 1. Shapes broadcast."""
    assert hwe_p(0, 0, 0)[()] == 1.0 and hwe_p(0, 0, 0, midp=True)[()] == 0.5
    assert hwe_p(0, 7, 0)[()] == 1.0 and hwe_p(0, 0, 7)[()] == 1.0
    assert hwe_p(0, 7, 0, midp=True)[()] == 0.5
    assert hwe_p(np.zeros((2, 3), dtype=np.uint8), 1, 1).shape == (2, 3)
    assert hwe_p(np.array([], dtype=int), [], []).shape == (0,)
    with pytest.raises(ValueError, match="negative"):
        hwe_p(-1, 2, 3)
    with pytest.raises(TypeError, match="integers"):
        hwe_p(1.5, 2, 3)
