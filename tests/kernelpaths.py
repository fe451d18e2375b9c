"""The counting kernel's two compiled paths, for tests that must run on both."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True, scope="module", params=["avx2", "portable"])
def kernel_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run every test of the importing module on both compiled paths: the AVX2 loop (and
    AVX-512 ``missing_terms`` where the CPU has it) and the portable one (what CPUs
    without AVX2, and other architectures, run)."""
    from zarrgeno.stats import _kernel

    before, before_512 = _kernel.simd(), _kernel.avx512()
    try:
        _kernel.simd(request.param == "avx2")
    except ValueError as exc:
        pytest.skip(f"no AVX2 path here: {exc}")
    if request.param == "portable":
        _kernel.avx512(False)
    yield request.param
    _kernel.simd(before)
    _kernel.avx512(before_512)
