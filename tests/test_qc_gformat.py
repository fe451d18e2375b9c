"""plink2's number format: the fast array formatter equals the step-for-step port."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from zarrgeno.stats.qc.gformat import dtoa_g, format_g


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0.0, "0"),
        (-0.0, "0"),
        (1.0, "1"),
        (0.5, "0.5"),
        (1 / 14, "0.0714286"),
        (35 / 72, "0.486111"),
        (1e-5, "1e-05"),
        (5.182970000001e-17, "5.18297e-17"),
        (123456789.0, "1.23457e+08"),
        (999999.5, "1e+06"),
        (0.01001875, "0.0100188"),  # %.6g: 0.0100187 (a tie, rounded to even by plink2)
        (12345.65, "12345.6"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (-2.5e-300, "-2.5e-300"),
        (5e-324, "4.94066e-324"),
    ],
)
def test_known_values(value: float, text: str) -> None:
    assert dtoa_g(value) == text
    assert format_g(np.array([value])) == [text]


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_fast_formatter_equals_port(value: float) -> None:
    assert format_g(np.array([value])) == [dtoa_g(value)]


@given(st.integers(1, 10**7), st.integers(-12, 8), st.sampled_from([0, 1, -1]))
def test_near_ties(digits: int, exponent: int, nudge: int) -> None:
    """Values of seven significant digits ending in 5, and their neighbouring doubles."""
    value = float(f"{digits * 10 + 5}e{exponent}")
    value = float(np.nextafter(value, np.inf if nudge > 0 else -np.inf)) if nudge else value
    assert format_g(np.array([value])) == [dtoa_g(value)]
