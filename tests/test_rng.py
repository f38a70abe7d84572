"""Counter-based normals (rng.hpp, normal_kernels*.cpp).

* Every SIMD kernel equals the scalar reference fill_normal_reference bit for bit,
  for any start offset and count (partial groups, batch tails).
* The numbers have mean 0, variance 1 and kurtosis 3 within standard errors.
* Streams are keyed by (seed, sample, block, matrix) and by nothing else.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import require_kernel
from shaped_transformer._core_loader import core

KERNELS = ["scalar", "avx2", "avx512"]
OFFSETS = [0, 1, 2, 3, 5, 63, 64, 65, 1001]
COUNTS = [0, 1, 3, 4, 17, 31, 32, 63, 64, 65, 127, 255, 256, 257, 1000, 4099]


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_equal_reference_bit_for_bit(kernel):
    require_kernel(kernel, core.normals_kernel(kernel, 0, 0, 0, 0, 0, 4) is not None)
    for seed, sample, block, matrix in [(0, 0, 0, 0), (2**64 - 1, 7, 123456, 0xFFFF), (42, 3, 5, 0x4002)]:
        for first in OFFSETS:
            for count in COUNTS:
                ref = core.normals(seed, sample, block, matrix, first, count, reference=True)
                got = core.normals_kernel(kernel, seed, sample, block, matrix, first, count)
                assert np.array_equal(got.view(np.uint32), ref.view(np.uint32)), (kernel, first, count)


@pytest.mark.parametrize("kernel", KERNELS)
def test_kernels_across_the_high_counter_word(kernel):
    """Groups g and g+1 straddling 2^32 differ in the high counter word; the SIMD
    batch must not add lane indices across it."""
    require_kernel(kernel, core.normals_kernel(kernel, 0, 0, 0, 0, 0, 4) is not None)
    for first in [(2**32 - 5) * 4 + 2, (2**32 - 64) * 4, 2**32 * 4 - 1]:
        ref = core.normals(9, 1, 2, 3, first, 700, reference=True)
        got = core.normals_kernel(kernel, 9, 1, 2, 3, first, 700)
        assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_dispatched_kernel_equals_reference():
    assert core.normal_kernel_name() in KERNELS
    ref = core.normals(5, 0, 0, 0, 3, 100_003, reference=True)
    got = core.normals(5, 0, 0, 0, 3, 100_003)
    assert np.array_equal(got.view(np.uint32), ref.view(np.uint32))


def test_moments():
    """N = 4e6 normals: mean (se 1/sqrt(N) = 5e-4), variance (se sqrt(2/N) = 7e-4),
    kurtosis (se sqrt(24/N) = 2.4e-3); checked to 5 standard errors."""
    N = 4_000_000
    z = core.normals(2024, 0, 0, 0, 0, N).astype(np.float64)
    assert abs(z.mean()) < 5 / np.sqrt(N)
    assert abs(z.var() - 1.0) < 5 * np.sqrt(2.0 / N)
    kurt = np.mean((z - z.mean()) ** 4) / z.var() ** 2
    assert abs(kurt - 3.0) < 5 * np.sqrt(24.0 / N)
    skew = np.mean((z - z.mean()) ** 3) / z.var() ** 1.5
    assert abs(skew) < 5 * np.sqrt(6.0 / N)
    # tails: P(|z| > 3) = 2.70e-3 (binomial se sqrt(p/N) = 2.6e-5)
    p3 = np.mean(np.abs(z) > 3.0)
    assert abs(p3 - 2.6998e-3) < 5 * np.sqrt(2.7e-3 / N)
    # the two normals of a Box-Muller pair, and neighbouring groups, are uncorrelated
    for lag in (1, 2, 4):
        r = np.corrcoef(z[:-lag], z[lag:])[0, 1]
        assert abs(r) < 5 / np.sqrt(N)


def test_stream_keying():
    base = core.normals(1, 2, 3, 4, 0, 1000)
    for args in [(2, 2, 3, 4), (1, 3, 3, 4), (1, 2, 4, 4), (1, 2, 3, 5), (1 + 2**32, 2, 3, 4)]:
        other = core.normals(*args, 0, 1000)
        assert not np.any(other == base), args
    # a stream is one sequence: any window is a slice of it
    np.testing.assert_array_equal(core.normals(1, 2, 3, 4, 100, 50), base[100:150])
