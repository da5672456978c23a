"""Enumerative coding of fixed-size subsets: which r of n slots are set, in ceil(log2 C(n, r)) bits.

A group's subset is ranked in the combinatorial number system (the smaller side of the subset is coded) and the
ranks of all groups are packed as fixed-width big-endian bit fields. Vectorised over groups; Python ints hold the
big binomials. Public codes use it for positions, keys for which public entries are true.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch


class RankOutOfRange(ValueError):
    """A packed rank is not a valid subset rank (the bytes were corrupted)."""


def subset_bits(n: int, r: int) -> int:
    """Bits one group's r-subset of n takes in our files: ceil(log2 C(n, r)) (0 when there is one choice)."""
    return (math.comb(n, r) - 1).bit_length()


@functools.lru_cache(maxsize=8)
def _binomials(n: int, r: int) -> np.ndarray:
    """table[c, i] = C(c, i) for c <= n, i <= r, as an object array of Python ints."""
    table = np.empty((n + 1, r + 1), dtype=object)
    for i in range(r + 1):
        table[:, i] = [math.comb(c, i) for c in range(n + 1)]
    return table


def _rank_subsets(mask: np.ndarray) -> np.ndarray:
    """(G, n) boolean rows with r ones each -> their combinadic ranks in [0, C(n, r)); the smaller side is coded."""
    groups, n = mask.shape
    r = int(mask[0].sum()) if groups else 0
    if 2 * r > n:
        mask, r = ~mask, n - r
    if r == 0 or groups == 0:
        return np.zeros(groups, dtype=object)
    members = np.nonzero(mask)[1].reshape(groups, r)  # ascending within each row
    table = _binomials(n, r)
    return table[members, np.arange(1, r + 1)].sum(axis=1)


def _unrank_subsets(ranks: np.ndarray, n: int, r: int) -> np.ndarray:
    """Inverse of `_rank_subsets`: ranks (G,) -> (G, n) boolean rows with r ones."""
    groups = len(ranks)
    complement = 2 * r > n
    side = n - r if complement else r
    mask = np.zeros((groups, n), dtype=bool)
    if side and groups:
        table = _binomials(n, side)
        remaining = ranks.copy()
        rows = np.arange(groups)
        for i in range(side, 0, -1):  # greedy: the largest member first (a loop over k, not over groups)
            member = np.searchsorted(table[:, i], remaining, side="right") - 1
            remaining = remaining - table[member, i]
            mask[rows, member.astype(np.int64)] = True
    return ~mask if complement else mask


def _pack_ranks(ranks: np.ndarray, width: int) -> bytes:
    """Concatenate each rank as a `width`-bit big-endian field, zero-padded to whole bytes."""
    if width == 0 or len(ranks) == 0:
        return b""
    limbs = -(-width // 64)
    columns = [((ranks >> (64 * (limbs - 1 - j))) & (2**64 - 1)).astype(np.uint64) for j in range(limbs)]
    words = np.stack(columns, axis=1).astype(">u8")
    bits = np.unpackbits(words.view(np.uint8).reshape(len(ranks), limbs * 8), axis=1)[:, limbs * 64 - width :]
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack_ranks(data: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of `_pack_ranks` (data must be exactly the packed length)."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=object)
    limbs = -(-width // 64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    padded = np.zeros((count, limbs * 64), dtype=np.uint8)
    padded[:, limbs * 64 - width :] = bits
    words = np.packbits(padded, axis=1).view(">u8").astype(object)
    ranks = np.zeros(count, dtype=object)
    for j in range(limbs):
        ranks = (ranks << 64) + words[:, j]
    return ranks


def packed_nbytes(count: int, width: int) -> int:
    """Bytes that `count` fields of `width` bits take once packed."""
    return -(-count * width // 8)


def encode_subsets(mask: torch.Tensor) -> bytes:
    """(..., n) boolean tensor with the same count per row -> packed ranks."""
    rows = mask.reshape(-1, mask.shape[-1]).numpy()
    return _pack_ranks(_rank_subsets(rows), subset_bits(mask.shape[-1], int(rows[0].sum()) if len(rows) else 0))


def decode_subsets(data: bytes, count: int, n: int, r: int) -> np.ndarray:
    """Packed ranks -> (count, n) boolean rows with r ones; RankOutOfRange when a rank is not a valid one."""
    ranks = _unpack_ranks(data, count, subset_bits(n, r))
    if count and (ranks >= math.comb(n, min(r, n - r))).any():
        raise RankOutOfRange("a subset rank is out of range")
    return _unrank_subsets(ranks, n, r)


def varying_subsets_nbytes(counts: np.ndarray, n: int) -> int:
    """Bytes of `encode_varying_subsets` for rows with these counts."""
    return -(-sum(subset_bits(n, int(count)) for count in counts) // 8)


def encode_varying_subsets(mask: torch.Tensor) -> bytes:
    """(..., n) boolean rows with any number of ones each -> each row's rank at its own width, concatenated.

    The reader needs the counts (a key stores them beside the ranks) to know each field's width.
    """
    rows = mask.reshape(-1, mask.shape[-1]).numpy()
    n = rows.shape[1]
    fields = []
    for row in rows:
        width = subset_bits(n, int(row.sum()))
        if width:
            fields.append(format(int(_rank_subsets(row[None])[0]), f"0{width}b"))
    bits = "".join(fields)
    if not bits:
        return b""
    padded = bits + "0" * (-len(bits) % 8)
    return int(padded, 2).to_bytes(len(padded) // 8, "big")


def decode_varying_subsets(data: bytes, counts: np.ndarray, n: int) -> np.ndarray:
    """Inverse of `encode_varying_subsets` given each row's count; RankOutOfRange for an invalid rank."""
    bits = format(int.from_bytes(data, "big"), f"0{8 * len(data)}b") if data else ""
    rows = np.zeros((len(counts), n), dtype=bool)
    offset = 0
    for index, count in enumerate(int(c) for c in counts):
        width = subset_bits(n, count)
        rank = int(bits[offset : offset + width], 2) if width else 0
        offset += width
        if rank >= math.comb(n, min(count, n - count)):
            raise RankOutOfRange("a subset rank is out of range")
        rows[index] = _unrank_subsets(np.array([rank], dtype=object), n, count)[0]
    return rows
