"""plink2's number format: six significant digits, trailing zeros cut, banker's rounding.

plink2 prints every real number of its reports with ``dtoa_g``: ``%g``-like (six
significant digits, exponent form below 1e-4 and from 999999.5 up, two exponent digits at
least), except that a value within 5e-9 of a tie in its sixth digit is rounded to even.
:func:`dtoa_g` is that function, step for step (the same scalings, thresholds and
rounding), for one value; :func:`format_g` formats an array with Python's ``%.6g`` and
hands the few values near a tie, where the two can differ, to :func:`dtoa_g`.
"""

from __future__ import annotations

import sys

import numpy as np

#: plink2's kBankerRound6 and kBankerRound8: the rounding offsets for even / odd digits.
_ROUND8 = (0.499999995, 0.500000005)
#: Thresholds of the number of integer digits, just below each tie 9.999995 * 10**k.
_DIGITS = (9.9999949999999, 99.999949999999, 999.99949999999, 9999.9949999999, 99999.949999999)
_SMALL = 9.9999949999999e-5
_LARGE = 999999.49999999
_ONE = 0.99999949999999


def _round(value: float, offsets: tuple[float, float] = _ROUND8) -> int:
    """plink2's BankerRoundD: truncate, then round up past the offset of that parity."""
    whole = int(value)
    return whole + int((value - float(whole)) + offsets[whole & 1])


def _round_scaled(value: float, scale: int) -> tuple[int, int]:
    """plink2's BankerRoundD1..7: ``value * scale`` rounded, split into quotient and remainder."""
    value *= scale
    rounded = int(value)
    rounded += int((value - float(rounded)) + _ROUND8[rounded & 1])
    return rounded // scale, rounded % scale


def _fraction(remainder: int, digits: int) -> str:
    """``.ddd`` of a remainder of ``digits`` digits, trailing zeros cut; empty for zero."""
    return "." + f"{remainder:0{digits}d}".rstrip("0") if remainder else ""


#: (threshold, factor, exponent bit): plink2's steps that bring a small value into [1, 10).
_SMALL_STEPS = (
    (9.9999949999999e-64, 1.0e64, 64),
    (9.9999949999999e-32, 1.0e32, 32),
    (9.9999949999999e-16, 1.0e16, 16),
)
_SMALL_TAIL = (
    (9.9999949999999e-8, 1.0e8, 8),
    (9.9999949999999e-4, 1.0e4, 4),
    (9.9999949999999e-2, 1.0e2, 2),
    (9.9999949999999e-1, 1.0e1, 1),
)
#: The same for a large value, from above.
_LARGE_STEPS = (
    (9.9999949999999e63, 1.0e-64, 64),
    (9.9999949999999e31, 1.0e-32, 32),
    (9.9999949999999e15, 1.0e-16, 16),
)
_LARGE_TAIL = (
    (9.9999949999999e7, 1.0e-8, 8),
    (9.9999949999999e3, 1.0e-4, 4),
    (9.9999949999999e1, 1.0e-2, 2),
    (9.9999949999999e0, 1.0e-1, 1),
)


def _small(value: float) -> str:
    """A positive value below ~1e-4, as ``d.ddddde-XX``."""
    exp = 0
    if value < 9.9999949999999e-16:
        if value < 9.9999949999999e-128:
            if value == 0.0:
                return "0"
            if value < 9.9999949999999e-256:
                value, exp = value * 1.0e256, exp | 256
            else:
                value, exp = value * 1.0e128, exp | 128
        for threshold, factor, bit in _SMALL_STEPS:
            if value < threshold:
                value, exp = value * factor, exp | bit
    for threshold, factor, bit in _SMALL_TAIL:
        if value < threshold:
            value, exp = value * factor, exp | bit
    quotient, remainder = _round_scaled(value, 100_000)
    return f"{quotient}{_fraction(remainder, 5)}e-{exp:02d}"


def _large(value: float) -> str:
    """A value from ~999999.5 up, as ``d.ddddde+XX`` (``inf`` past the largest double)."""
    exp = 0
    if value >= 9.9999949999999e15:
        if value >= 9.9999949999999e127:
            if value > sys.float_info.max:
                return "inf"
            if value >= 9.9999949999999e255:
                value, exp = value * 1.0e-256, exp | 256
            else:
                value, exp = value * 1.0e-128, exp | 128
        for threshold, factor, bit in _LARGE_STEPS:
            if value >= threshold:
                value, exp = value * factor, exp | bit
    for threshold, factor, bit in _LARGE_TAIL:
        if value >= threshold:
            value, exp = value * factor, exp | bit
    quotient, remainder = _round_scaled(value, 100_000)
    return f"{quotient}{_fraction(remainder, 5)}e+{exp:02d}"


def _middle(value: float) -> str:
    """plink2's dtoa_so6: a value in [0.9999995, 999999.5), six significant digits."""
    for digits, threshold in enumerate(_DIGITS, start=1):
        if value < threshold:
            scale = 10 ** (6 - digits)
            whole, remainder = _round_scaled(value, scale)
            return f"{whole}{_fraction(remainder, 6 - digits)}"
    return str(_round(value))


def dtoa_g(value: float) -> str:
    """One number as plink2 prints it in its reports.

    >>> [dtoa_g(v) for v in (0.0, 1/3, 2/3, 1e-5, 123456789.0, 0.5, -2.5e-300, float("nan"))]
    ['0', '0.333333', '0.666667', '1e-05', '1.23457e+08', '0.5', '-2.5e-300', 'nan']
    """
    value = float(value)
    if value != value:
        return "nan"
    sign = ""
    if value < 0:
        sign, value = "-", -value
    if value < _SMALL:
        return sign + _small(value)
    if value >= _LARGE:
        return sign + _large(value)
    if value >= _ONE:
        return sign + _middle(value)
    # six significant digits after "0." and up to three zeros, never fewer than ~0.0001
    prefix = "0."
    if value < 9.9999949999999e-3:
        value, prefix = value * 100, prefix + "00"
    if value < 9.9999949999999e-2:
        value, prefix = value * 10, prefix + "0"
    return sign + prefix + f"{_round(value * 1_000_000):06d}".rstrip("0")


def format_g(values: np.ndarray) -> list[str]:
    """:func:`dtoa_g` of every value of a 1-D float array, fast: Python's ``%.6g`` where it
    agrees with plink2, :func:`dtoa_g` for the values within 1e-6 of a rounding tie in
    their sixth digit (and for -0.0, which plink2 prints ``0``).

    >>> format_g(np.array([0.01001875, 1e6, 999999.5, -0.0, np.inf]))  # %.6g: 0.0100187
    ['0.0100188', '1e+06', '1e+06', '0', 'inf']
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    text = ["%.6g" % v for v in values.tolist()]  # noqa: UP031 (the fastest %g formatter)
    for i in np.flatnonzero(_near_tie(values)).tolist():
        text[i] = dtoa_g(values[i])
    return text


def _near_tie(values: np.ndarray) -> np.ndarray:
    """Where ``%.6g`` and plink2 may round differently: a sixth digit within 1e-6 of a tie,
    a value near a power of ten (where the digit count changes), beyond 1e+-300, and -0.0."""
    size = np.abs(values)
    finite = np.isfinite(size) & (size > 0)
    extreme = finite & ((size < 1e-300) | (size > 1e300))
    size = np.where(finite & ~extreme, size, 1.0)
    scaled = size / np.power(10.0, np.floor(np.log10(size)) - 5)
    fraction = scaled - np.floor(scaled)
    near = (np.abs(fraction - 0.5) < 1e-6) | (scaled < 100_000.5) | (scaled > 999_999.4)
    return (finite & near) | extreme | ((values == 0) & np.signbit(values))
