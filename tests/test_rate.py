"""How many bytes a sparse code takes (sae.core.rate): positions at log2 C(m, k) bits per group plus the values."""

from __future__ import annotations

import math

import pytest

from sae.core.rate import code_bytes, support_bits


def test_support_bits_golden():
    # the key for k = 128 true entries among k' = 256 costs log2 C(256, 128) = 251.7 bits per group
    assert support_bits(256, 128) == pytest.approx(251.7, abs=0.05)
    assert support_bits(256, 128) == pytest.approx(math.log2(math.comb(256, 128)), rel=1e-12)
    assert support_bits(10, 0) == pytest.approx(0.0, abs=1e-9)
    assert support_bits(10, 10) == pytest.approx(0.0, abs=1e-9)
    assert support_bits(4, 2) == pytest.approx(2.585, abs=1e-3)  # log2(6)


@pytest.mark.parametrize("code_dim, k", [(32, 1), (32, 16), (128, 8), (128, 64), (256, 255)])
def test_support_bits_is_the_log_of_the_binomial(code_dim, k):
    assert support_bits(code_dim, k) == pytest.approx(math.log2(math.comb(code_dim, k)), rel=1e-9)


def test_code_bytes_counts_positions_and_values():
    # 2 groups, C(4,2)=6 -> 3 bits each; 2 values x 16 bits each -> 2 * (3 + 32) = 70 bits -> 9 bytes
    assert code_bytes(2, 4, 2) == 9
    assert code_bytes(2, 4, 2, value_bits=8) == 5


def test_code_bytes_of_the_bundled_shape():
    """20 groups of 128 at k = 8: ceil(log2 C(128, 8)) = 41 bits of positions and 8 x 16 bits of values per group."""
    assert math.ceil(support_bits(128, 8)) == 41
    assert code_bytes(20, 128, 8) == math.ceil(20 * (41 + 128) / 8) == 423
