"""How many bytes a sparse code takes: the positions of the non-zeros plus their values.

The positions of k non-zeros among m entries cost log2 C(m, k) bits per group (an enumerative
code reaches it within one bit); each value costs `value_bits`. The paper counted the support
alone; we count both, so comparisons with JPEG's file size are fair.
"""

from __future__ import annotations

import math


def support_bits(code_dim: int, k: int) -> float:
    """log2 C(code_dim, k): bits to say which k of code_dim entries are non-zero."""
    return (math.lgamma(code_dim + 1) - math.lgamma(k + 1) - math.lgamma(code_dim - k + 1)) / math.log(2)


def code_bytes(num_groups: int, code_dim: int, k: int, value_bits: int = 16) -> int:
    """Size in bytes of a code with k non-zeros in each of num_groups groups of code_dim."""
    bits = num_groups * (math.ceil(support_bits(code_dim, k)) + k * value_bits)
    return math.ceil(bits / 8)
