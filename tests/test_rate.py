from __future__ import annotations

import pytest

from sae.core.rate import code_bytes, support_bits


def test_support_bits_golden():
    # REFERENCE.md: the key for k=128 of k'=256 costs 251.7 bits per map
    assert support_bits(256, 128) == pytest.approx(251.7, abs=0.05)
    assert support_bits(10, 0) == pytest.approx(0.0, abs=1e-9)
    assert support_bits(10, 10) == pytest.approx(0.0, abs=1e-9)
    assert support_bits(4, 2) == pytest.approx(2.585, abs=1e-3)  # log2(6)


def test_code_bytes_counts_positions_and_values():
    # 2 groups, C(4,2)=6 -> 3 bits each; 2 values x 16 bits each -> 2 * (3 + 32) = 70 bits -> 9 bytes
    assert code_bytes(2, 4, 2) == 9
    assert code_bytes(2, 4, 2, value_bits=8) == 5
