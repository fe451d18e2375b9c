"""``missing_terms`` on its AVX-512 path against its scalar one, bit for bit.

The AVX-512 path holds 64 samples' sums in registers over all the polymorphic rows of a
block and adds a row's expected heterozygosity to the samples whose bits are set, row by
row, so each sample's sum adds the same doubles in the same order as the scalar loop.
Sums of values of mixed magnitudes (1e-8 next to 0.5) would show any other order; rows
that are not polymorphic hold NaN, which must never reach a sum; the sums start from
values already there, which the kernel adds to.
"""

from __future__ import annotations

import ctypes
import mmap
import sys
from collections.abc import Iterator

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from zarrgeno.stats import _kernel


@pytest.fixture(autouse=True)
def restore_path() -> Iterator[None]:
    before = _kernel.avx512()
    try:
        _kernel.avx512(True)
    except ValueError as exc:
        pytest.skip(f"no AVX-512 path here: {exc}")
    yield
    _kernel.avx512(before)


def _both_paths(
    bits: np.ndarray, width: int, ehet: np.ndarray, poly: np.ndarray, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(obs, expected) on the AVX-512 path, then on the scalar one, from the same start."""
    start = np.random.default_rng(seed)
    obs0 = start.integers(0, 1000, width).astype(np.int64)
    exp0 = np.where(start.random(width) < 0.5, 0.0, start.random(width) * 3)
    got = []
    for on in (True, False):
        _kernel.avx512(on)
        obs, expected = obs0.copy(), exp0.copy()
        _kernel.missing_terms(bits, len(ehet), bits.shape[1], width, ehet, poly, obs, expected)
        got.append((obs, expected))
    return got


def _case(seed: int, n: int, width: int, missing: float, polymorphic: float) -> tuple:
    """Random bits (bits past the width set too), polymorphic flags and mixed-magnitude
    expected heterozygosity, NaN where a row is not polymorphic."""
    rng = np.random.default_rng(seed)
    nbytes = (width + 7) // 8
    bits = np.packbits(rng.random((n, 8 * nbytes)) < missing, axis=1, bitorder="little")
    poly = (rng.random(n) < polymorphic).astype(np.uint8)
    scale = rng.choice([1e-8, 1e-3, 0.5], size=n)
    ehet = np.where(poly == 1, rng.random(n) * scale, np.nan)
    return bits, ehet, poly


def _assert_same(got: list[tuple[np.ndarray, np.ndarray]]) -> None:
    (obs_v, exp_v), (obs_s, exp_s) = got
    np.testing.assert_array_equal(obs_v, obs_s)
    assert np.array_equal(exp_v, exp_s)
    assert exp_v.tobytes() == exp_s.tobytes()


@settings(max_examples=150, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(0, 300),
    width=st.integers(1, 200),
    missing=st.floats(0.0, 0.6),
    polymorphic=st.sampled_from([0.0, 0.15, 0.7, 1.0]),
)
def test_avx512_equals_scalar_bit_for_bit(
    seed: int, n: int, width: int, missing: float, polymorphic: float
) -> None:
    bits, ehet, poly = _case(seed, n, width, missing, polymorphic)
    _assert_same(_both_paths(bits, width, ehet, poly, seed))


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31),
    n=st.integers(1, 5000),  # past the 2048 rows listed at a time
    width=st.sampled_from([255, 256, 257, 447, 448, 500, 1000, 1023, 2500, 4096]),
    missing=st.floats(0.0, 0.6),
)
def test_avx512_equals_scalar_wide_and_long(seed: int, n: int, width: int, missing: float):
    bits, ehet, poly = _case(seed, n, width, missing, 0.3)
    poly[-1] = 1  # the last row's last byte: read where no byte follows it
    ehet[-1] = 0.25
    _assert_same(_both_paths(bits, width, ehet, poly, seed))


def _before_a_guard_page(size: int) -> tuple[np.ndarray, mmap.mmap]:
    """``size`` writable bytes that end where an unreadable page starts (reading past them
    faults), and the mapping that holds them."""
    page = mmap.PAGESIZE
    area = mmap.mmap(-1, 2 * page)
    address = ctypes.addressof(ctypes.c_char.from_buffer(area))
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    if libc.mprotect(address + page, page, 0) != 0:  # PROT_NONE
        pytest.skip(f"mprotect failed: errno {ctypes.get_errno()}")
    return np.frombuffer(area, dtype=np.uint8, count=size, offset=page - size), area


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mprotect through libc")
@pytest.mark.parametrize("width", [1, 7, 8, 9, 31, 50, 63, 64, 65, 127, 128, 129])
def test_avx512_the_last_row_alone_at_the_end_of_its_buffer(width: int) -> None:
    """Rows whose last, polymorphic, with every bit set, ends where memory stops being
    readable: the samples of the width count it, none past it, and no byte past the
    buffer is read."""
    nbytes = (width + 7) // 8
    bits, area = _before_a_guard_page(3 * nbytes)
    bits[:] = 0xFF
    bits = bits.reshape(3, nbytes)
    ehet, poly = np.array([0.375, np.nan, 0.125]), np.array([1, 0, 1], np.uint8)
    got = _both_paths(bits, width, ehet, poly, width)
    _assert_same(got)
    obs0 = np.random.default_rng(width).integers(0, 1000, width)
    np.testing.assert_array_equal(got[0][0], obs0 + 2)
    del bits
    area.close()
