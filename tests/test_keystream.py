"""The keyed randomness of a share (sae.privacy.keystream): the secret permutation, the hash chain, the pads."""

from __future__ import annotations

import hashlib
import hmac
import struct

import numpy as np
import pytest
import torch

from sae.privacy.keystream import (
    NONCE_BYTES,
    SECRET_BYTES,
    chain_head,
    chain_links,
    link_below,
    permutation_secret,
    scale_pads,
    secret_permutation,
    value_pads,
)

GROUPS, CODE_DIM = 4, 32
ROOT = bytes(range(SECRET_BYTES))
NONCE = bytes(range(100, 100 + NONCE_BYTES))


# --- independent references: RFC 5869 HKDF and RFC 8439 ChaCha20 in plain Python --------------------


def hkdf_sha256(root: bytes, info: bytes, length: int = 32) -> bytes:
    prk = hmac.new(bytes(32), root, hashlib.sha256).digest()  # no salt: HashLen zeros
    block, out = b"", b""
    for counter in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
    return out[:length]


def chacha20_stream(key: bytes, nonce: bytes, count: int) -> bytes:
    """RFC 8439 ChaCha20 keystream from block counter 0."""

    def rotl(value: int, shift: int) -> int:
        return ((value << shift) | (value >> (32 - shift))) & 0xFFFFFFFF

    def quarter(s: list[int], a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = rotl(s[b] ^ s[c], 7)

    out = b""
    for counter in range(-(-count // 64)):
        state = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574, *struct.unpack("<8I", key), counter, *struct.unpack("<3I", nonce)]
        working = list(state)
        for _ in range(10):
            for a, b, c, d in ((0, 4, 8, 12), (1, 5, 9, 13), (2, 6, 10, 14), (3, 7, 11, 15)):
                quarter(working, a, b, c, d)
            for a, b, c, d in ((0, 5, 10, 15), (1, 6, 11, 12), (2, 7, 8, 13), (3, 4, 9, 14)):
                quarter(working, a, b, c, d)
        out += struct.pack("<16I", *((w + s) & 0xFFFFFFFF for w, s in zip(working, state, strict=True)))
    return out[:count]


def test_reference_chacha20_matches_the_rfc_8439_test_vector():
    """Section 2.4.2's keystream starts 224f51f3401bd9e1 2fde276fb8631ded (block counter 1)."""
    key = bytes(range(32))
    nonce = bytes.fromhex("000000000000004a00000000")
    assert chacha20_stream(key, nonce, 80)[64:80].hex() == "224f51f3401bd9e12fde276fb8631ded"


# --- the secret permutation ----------------------------------------------------------------------


def test_secret_permutation_is_a_permutation_that_depends_on_the_secret_only():
    first = secret_permutation(b"a" * 32, 3, GROUPS, CODE_DIM)
    assert torch.equal(first.sort(-1).values, torch.arange(CODE_DIM).expand(3, GROUPS, CODE_DIM))
    assert torch.equal(secret_permutation(b"a" * 32, 5, GROUPS, CODE_DIM)[:3], first)  # batch size independent
    assert not torch.equal(secret_permutation(b"b" * 32, 3, GROUPS, CODE_DIM), first)
    assert not torch.equal(first[0], first[1])  # every image gets its own
    assert not torch.equal(first[0, 0], first[0, 1])  # and every group
    with pytest.raises(ValueError, match="16 bytes"):
        secret_permutation(b"short", 1, GROUPS, CODE_DIM)


def test_a_cached_permutation_is_a_fresh_writable_tensor_equal_to_the_uncached_one():
    secret = bytes(range(1, 33))
    first = secret_permutation(secret, 1, GROUPS, CODE_DIM)  # one image: cached
    first[0, 0, 0] = -1  # the caller owns its tensor: the cache must not see this
    again = secret_permutation(secret, 1, GROUPS, CODE_DIM)
    assert torch.equal(again.sort(-1).values, torch.arange(CODE_DIM).expand(1, GROUPS, CODE_DIM))
    assert torch.equal(secret_permutation(secret, 3, GROUPS, CODE_DIM)[:1], again)  # a batch: computed afresh
    assert link_below(ROOT, 9, 3) == link_below(ROOT, 9, 3) == chain_links(ROOT, 9)[2]


def test_secret_permutation_golden_values():
    """Pinned: SHAKE-256 sort keys of b"sae/permutation/v1" | groups, code_dim | secret (version 1 files rely on it)."""
    permutation = secret_permutation(bytes(range(32)), 1, 2, 8)
    assert permutation.tolist() == [[[3, 5, 6, 7, 2, 1, 0, 4], [5, 6, 4, 2, 0, 1, 3, 7]]]
    stream = hashlib.shake_256(b"sae/permutation/v1" + struct.pack("<HH", 2, 8) + bytes(range(32))).digest(8 * 16)
    keys = np.frombuffer(stream, dtype="<u8").reshape(1, 2, 8)
    assert permutation.tolist() == np.argsort(keys, axis=-1, kind="stable").tolist()


def test_secret_permutation_is_close_to_uniform():
    """Each model coordinate lands on each public coordinate about equally often."""
    permutation = secret_permutation(b"u" * 32, 400, 1, 8)[:, 0]  # (400, 8)
    counts = torch.zeros(8, 8)
    counts.index_put_((torch.arange(8).expand(400, 8).flatten(), permutation.flatten()), torch.ones(3200), accumulate=True)
    assert counts.sum() == 3200 and counts.min() > 25 and counts.max() < 80  # expected 50 each


# --- HKDF and the hash chain ---------------------------------------------------------------------


def test_root_derivations_are_hkdf_sha256_with_distinct_labels():
    assert permutation_secret(ROOT) == hkdf_sha256(ROOT, b"sae/keyed/permutation")
    assert chain_head(ROOT, 3) == hkdf_sha256(ROOT, b"sae/keyed/pad-chain" + struct.pack("<I", 3))
    heads = {chain_head(ROOT, image) for image in range(16)} | {permutation_secret(ROOT)}
    assert len(heads) == 17 and all(len(head) == SECRET_BYTES for head in heads)
    assert chain_head(bytes(32), 0) != chain_head(ROOT, 0)


def test_root_derivations_golden_values():
    assert permutation_secret(ROOT).hex() == "2a0c2ea3583fdda56ec2d57b8fdae0acf07b03df3c318019a909a2533ab2ddc4"
    assert chain_head(ROOT, 0).hex() == "394f8b3711c62df459229af0baab08914edff6176eb6b91ba6ee413675810c75"
    assert chain_head(ROOT, 1).hex() == "750e0ac70fca94522bee5ffdfb8e9fcc11e60feb7b876aa92749af4751b1765e"


def test_chain_links_hash_downwards_from_the_given_link():
    head = chain_head(ROOT, 0)
    links = chain_links(head, CODE_DIM)
    assert len(links) == CODE_DIM and links[-1] == head
    for lower, upper in zip(links, links[1:], strict=False):
        assert lower == hashlib.sha256(b"sae/keyed/chain" + upper).digest()
    assert chain_links(head, 0) == [] and chain_links(head, 1) == [head]
    for cutoff in (1, 5, CODE_DIM):
        link = link_below(head, CODE_DIM, cutoff)
        assert link == links[cutoff - 1]
        assert chain_links(link, cutoff) == links[:cutoff]  # a restricted holder derives exactly the lower links
    with pytest.raises(ValueError):
        link_below(head, 4, 5)
    with pytest.raises(ValueError):
        link_below(head, 4, 0)


# --- pads ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_bytes", [1, 2])
def test_value_pads_are_chacha20_keystreams_of_each_coordinates_link(value_bytes):
    head = chain_head(ROOT, 0)
    pads = value_pads([head], [CODE_DIM], NONCE, GROUPS, CODE_DIM, value_bytes)
    assert pads.shape == (1, GROUPS, CODE_DIM) and pads.dtype == torch.int64
    assert pads.min() >= 0 and pads.max() < 256**value_bytes
    for coordinate, link in enumerate(chain_links(head, CODE_DIM)):
        stream = chacha20_stream(link, NONCE, GROUPS * value_bytes)
        expected = np.frombuffer(stream, dtype="<u1" if value_bytes == 1 else "<u2")
        assert pads[0, :, coordinate].tolist() == expected.tolist()


def test_value_pads_golden_values():
    head = chain_head(ROOT, 0)
    pads8 = value_pads([head], [8], NONCE, 2, 8, 1)
    assert pads8.tolist() == [[[196, 118, 75, 185, 73, 158, 204, 20], [134, 32, 46, 216, 233, 146, 139, 1]]]
    pads16 = value_pads([head], [8], NONCE, 2, 8, 2)
    assert pads16[0, :, :3].tolist() == [[34500, 8310, 11851], [16656, 10325, 46413]]
    assert scale_pads([head], [8], NONCE, 2).tolist() == [[21414, 54530]]


def test_a_restricted_link_gives_the_same_pads_below_its_cutoff_and_none_past_it():
    heads = [chain_head(ROOT, image) for image in range(3)]
    full = value_pads(heads, [CODE_DIM] * 3, NONCE, GROUPS, CODE_DIM, 2)
    cutoffs = [5, 1, CODE_DIM]
    links = [link_below(head, CODE_DIM, cutoff) for head, cutoff in zip(heads, cutoffs, strict=True)]
    partial = value_pads(links, cutoffs, NONCE, GROUPS, CODE_DIM, 2)
    for image, cutoff in enumerate(cutoffs):
        assert torch.equal(partial[image, :, :cutoff], full[image, :, :cutoff])
        assert (partial[image, :, cutoff:] == -1).all()
    assert torch.equal(scale_pads(links, cutoffs, NONCE, GROUPS), scale_pads(heads, [CODE_DIM] * 3, NONCE, GROUPS))


def test_pads_depend_on_the_image_the_nonce_and_the_coordinate():
    heads = [chain_head(ROOT, image) for image in range(2)]
    pads = value_pads(heads, [CODE_DIM] * 2, NONCE, GROUPS, CODE_DIM, 2)
    other_nonce = value_pads(heads, [CODE_DIM] * 2, bytes(NONCE_BYTES), GROUPS, CODE_DIM, 2)
    assert (pads[0] != pads[1]).float().mean() > 0.99
    assert (pads != other_nonce).float().mean() > 0.99
    assert (pads[..., 1:] != pads[..., :-1]).float().mean() > 0.99
    with pytest.raises(ValueError, match="nonce"):
        value_pads(heads, [CODE_DIM] * 2, b"short", GROUPS, CODE_DIM, 1)
    with pytest.raises(ValueError, match="no coordinate"):
        scale_pads(heads, [0, CODE_DIM], NONCE, GROUPS)


def test_scale_pads_come_from_a_hash_of_the_first_link():
    head = chain_head(ROOT, 0)
    first = chain_links(head, CODE_DIM)[0]
    stream = chacha20_stream(hashlib.sha256(b"sae/keyed/scales" + first).digest(), NONCE, 2 * GROUPS)
    assert scale_pads([head], [CODE_DIM], NONCE, GROUPS)[0].tolist() == np.frombuffer(stream, dtype="<u2").tolist()
