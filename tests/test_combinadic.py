"""Enumerative coding of subsets (sae.privacy.combinadic): ranks, bit packing, sizes and corrupted ranks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sae.privacy.combinadic import (
    RankOutOfRange,
    decode_subsets,
    decode_varying_subsets,
    encode_subsets,
    encode_varying_subsets,
    packed_nbytes,
    subset_bits,
    varying_subsets_nbytes,
)


def random_masks(rows: int, n: int, r: int, seed: int = 0) -> torch.Tensor:
    """(rows, n) boolean rows with exactly r ones each, uniformly at random."""
    generator = torch.Generator().manual_seed(seed)
    order = torch.rand(rows, n, generator=generator).argsort(-1)[:, :r]
    return torch.zeros(rows, n, dtype=torch.bool).scatter(-1, order, True)


def test_subset_bits_is_ceil_log2_of_the_binomial():
    for n, r in [(16, 8), (32, 5), (256, 64), (128, 32), (20, 1), (7, 3)]:
        assert subset_bits(n, r) == math.ceil(math.log2(math.comb(n, r)))
    assert subset_bits(8, 8) == subset_bits(8, 0) == 0  # one choice costs nothing
    assert subset_bits(5, 2) == 4  # C(5, 2) = 10 needs 4 bits
    assert subset_bits(4, 2) == 3  # C(4, 2) = 6
    assert subset_bits(2, 1) == 1


def test_ranks_follow_the_combinatorial_number_system():
    """Golden ranks: {c_1 < ... < c_r} has rank sum C(c_i, i); the larger side of a subset is coded by its complement."""
    expected = {(0, 1): 0, (0, 2): 1, (1, 2): 2, (0, 3): 3, (3, 4): 9}
    for members, rank in expected.items():
        mask = torch.zeros(1, 5, dtype=torch.bool)
        mask[0, list(members)] = True
        assert encode_subsets(mask) == bytes([rank << 4])  # one 4-bit field, zero-padded to a byte
        assert decode_subsets(bytes([rank << 4]), 1, 5, 2)[0].nonzero()[0].tolist() == list(members)
    three = torch.zeros(1, 5, dtype=torch.bool)
    three[0, :3] = True  # complement {3, 4}: rank 9
    assert encode_subsets(three) == bytes([9 << 4])


@pytest.mark.parametrize(("n", "r"), [(16, 8), (32, 5), (32, 27), (32, 32), (32, 0), (256, 64), (200, 100), (7, 1)])
def test_subsets_round_trip(n, r):
    masks = random_masks(37, n, r, seed=n + r)
    data = encode_subsets(masks)
    assert len(data) == packed_nbytes(37, subset_bits(n, r)) == -(-37 * subset_bits(n, r) // 8)
    assert np.array_equal(decode_subsets(data, 37, n, r), masks.numpy())


def test_multi_dimensional_masks_are_flattened_row_by_row():
    masks = random_masks(24, 32, 8).reshape(2, 3, 4, 32)
    decoded = decode_subsets(encode_subsets(masks), 24, 32, 8)
    assert np.array_equal(decoded.reshape(2, 3, 4, 32), masks.numpy())


def test_extreme_ranks_round_trip():
    """The first and the last subset of a multi-limb width (C(256, 64) needs 204 bits)."""
    first = torch.zeros(2, 256, dtype=torch.bool)
    first[:, :64] = True
    last = torch.zeros(2, 256, dtype=torch.bool)
    last[:, -64:] = True
    for mask in (first, last):
        assert np.array_equal(decode_subsets(encode_subsets(mask), 2, 256, 64), mask.numpy())
    assert encode_subsets(first) == bytes(packed_nbytes(2, 204))  # rank 0 everywhere


def test_an_out_of_range_rank_is_rejected():
    width = subset_bits(16, 8)  # C(16, 8) = 12870 < 2**14
    all_ones = bytes([0xFF] * packed_nbytes(3, width))
    with pytest.raises(RankOutOfRange):
        decode_subsets(all_ones, 3, 16, 8)
    valid = encode_subsets(random_masks(3, 16, 8))
    assert decode_subsets(valid, 3, 16, 8).sum() == 24
    assert issubclass(RankOutOfRange, ValueError)


def test_varying_subsets_round_trip_with_their_counts():
    generator = torch.Generator().manual_seed(3)
    n = 24
    counts = torch.randint(0, n + 1, (40,), generator=generator)
    counts[:4] = torch.tensor([0, n, 1, n - 1])
    scores = torch.rand(40, n, generator=generator)
    masks = scores.argsort(-1).argsort(-1) < counts[:, None]
    assert torch.equal(masks.sum(-1), counts)
    data = encode_varying_subsets(masks)
    assert len(data) == varying_subsets_nbytes(counts.numpy(), n) == -(-sum(subset_bits(n, int(c)) for c in counts) // 8)
    assert np.array_equal(decode_varying_subsets(data, counts.numpy(), n), masks.numpy())


def test_varying_subsets_reject_an_out_of_range_rank_and_take_nothing_for_single_choices():
    counts = np.array([8, 8])
    with pytest.raises(RankOutOfRange):
        decode_varying_subsets(bytes([0xFF] * varying_subsets_nbytes(counts, 16)), counts, 16)
    full = torch.tensor([[True] * 6, [False] * 6])
    assert encode_varying_subsets(full) == b"" and varying_subsets_nbytes(np.array([6, 0]), 6) == 0
    assert np.array_equal(decode_varying_subsets(b"", np.array([6, 0]), 6), full.numpy())
