"""Public codes and keys as files (sae.privacy.formats): v2 written, v1 and v2 read, sizes, sealing, damage rejected."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch

from sae.core.model import topk_by_magnitude
from sae.privacy.combinadic import packed_nbytes, subset_bits
from sae.privacy.formats import (
    FORMAT_VERSION,
    MODEL_ID_BYTES,
    CodeFormatError,
    Key,
    KeyMismatchError,
    PassphraseError,
    PublicCode,
    UnsupportedVersionError,
    float16_bits,
    float16_from_bits,
    key_nbytes,
    level_scales,
    max_level,
    public_nbytes,
    quantize_values,
)
from sae.privacy.keystream import NONCE_BYTES, SECRET_BYTES
from sae.privacy.scheme import ambiguate, restrict, reveal

GROUPS, CODE_DIM, K = 4, 32, 8
DATA = Path(__file__).resolve().parent / "data"
V1_PASSPHRASE = "v1 golden passphrase"  # tests/data/make_v1_files.py
PUBLIC_HEADER, KEY_HEADER = 18, 20


def sparse_codes(images: int = 16, k: int = K, seed: int = 0) -> torch.Tensor:
    """Sparse codes with a per-image, per-group scale, rounded to float16-representable values."""
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randn(images, GROUPS, CODE_DIM, generator=generator)
    dense = dense * (0.5 + 2 * torch.rand(images, GROUPS, 1, generator=generator))
    return topk_by_magnitude(dense.half().float(), k)


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def with_crc(body: bytes) -> bytes:
    """Bytes with a valid trailing CRC-32: damage that the checksum alone would not catch."""
    return body + struct.pack("<I", zlib.crc32(body))


def edited(data: bytes, offset: int, new: bytes) -> bytes:
    """`data` with `new` written at `offset` and its CRC fixed."""
    body = bytearray(data[:-4])
    body[offset : offset + len(new)] = new
    return with_crc(bytes(body))


SHARES = {
    "plain": dict(),
    "plain 8-bit permuted": dict(value_bits=8, permute=True),
    "keyed": dict(keyed=True),
    "keyed 8-bit permuted": dict(keyed=True, value_bits=8, permute=True),
}


# --- values -----------------------------------------------------------------------------------------


def test_quantize_values_rejects_what_float16_cannot_hold():
    with pytest.raises(ValueError):
        quantize_values(torch.tensor([[[1e6, 1.0]]]), 16)
    values, _ = quantize_values(torch.tensor([[[1e6, 1.0]]]), 32)
    assert values[0, 0, 0] == 1e6
    with pytest.raises(ValueError, match="value_bits"):
        quantize_values(torch.ones(1, 1, 2), 12)
    with pytest.raises(ValueError, match="finite"):
        quantize_values(torch.tensor([[[float("nan"), 1.0]]]), 32)


def test_eight_bit_levels_and_scales():
    assert max_level(8) == 127 and max_level(16) == 32767
    values = torch.tensor([[[-2.0, 1.0, 0.5], [0.0, 0.0, 0.0]]])
    scales = level_scales(values, 8)
    assert scales[0, 1] == 1.0  # an all-zero group gets scale 1, not 0
    nearest = torch.tensor(2.0 / 127).half()  # rounds below 2/127: the next float16 up, so that the peak fits in 127 levels
    assert scales[0, 0] == torch.nextafter(nearest, torch.tensor(torch.inf, dtype=torch.half)).float() and scales[0, 0] * 127 >= 2.0
    stored, stored_scales = quantize_values(values, 8)
    assert torch.equal(stored_scales, scales)
    assert stored[0, 0, 0] == -127 * scales[0, 0]  # the peak maps to the largest level
    assert ((stored - values).abs() <= 0.5 * scales[..., None] + 1e-7).all()
    with pytest.raises(ValueError, match="value_bits=32"):
        level_scales(torch.tensor([[1e9]]), 8)


def test_float16_bit_patterns_round_trip():
    scales = torch.tensor([[1.0, 0.5, 2.0**-14, 65504.0]])
    bits = float16_bits(scales)
    assert bits.tolist() == [[0x3C00, 0x3800, 0x0400, 0x7BFF]]
    assert torch.equal(float16_from_bits(bits), scales)


# --- round trips ------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_bits", [16, 32])
def test_public_bytes_round_trip_exactly(value_bits):
    public, key = ambiguate(sparse_codes(), 16, gen(), value_bits=value_bits)
    data = public.to_bytes()
    assert len(data) == public.nbytes
    again = PublicCode.from_bytes(data)
    assert torch.equal(again.positions, public.positions) and torch.equal(again.values, public.values)
    assert again.to_bytes() == data
    assert again.fingerprint() == key.fingerprint
    assert again.version == FORMAT_VERSION == 2 and data[4] == 2


def test_eight_bit_values_round_trip_exactly_and_stay_within_half_a_step():
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), value_bits=8)
    again = PublicCode.from_bytes(public.to_bytes())
    assert len(public.to_bytes()) == public.nbytes
    assert torch.equal(again.values, public.values) and torch.equal(again.scales, public.scales)
    assert ((reveal(again, key) - codes).abs() <= 0.51 * public.scales[..., None]).all()  # half a step per group
    assert public.nbytes < ambiguate(codes, 16, gen(), value_bits=16)[0].nbytes


@pytest.mark.parametrize("value_bits", [8, 16])
@pytest.mark.parametrize("permute", [False, True])
def test_keyed_public_code_and_key_round_trip(value_bits, permute):
    codes = sparse_codes()
    model_id = bytes(range(1, 9))
    public, key = ambiguate(codes, 16, gen(), keyed=True, value_bits=value_bits, permute=permute, model_id=model_id)
    data = public.to_bytes()
    assert len(data) == public.nbytes == public_nbytes(16, GROUPS, CODE_DIM, 16, value_bits, keyed=True)
    again = PublicCode.from_bytes(data)
    assert again.keyed and again.permuted == permute and again.model_id == model_id and again.nonce == public.nonce
    assert torch.equal(again.values, public.values) and torch.equal(again.scale_cipher, public.scale_cipher)
    assert again.scales is None and again.to_bytes() == data
    key_data = key.to_bytes()
    assert len(key_data) == key.nbytes == key_nbytes(16, GROUPS, K, 16, permuted=permute, keyed=True)
    loaded = Key.from_bytes(key_data)
    assert loaded.root == key.root and loaded.secret == key.secret and loaded.keyed and not loaded.restricted
    assert loaded.to_bytes() == key_data
    revealed = reveal(again, loaded)
    assert torch.equal(revealed, reveal(public, key))
    assert torch.equal(revealed != 0, codes != 0)
    peak = codes.abs().amax(-1, keepdim=True)
    error, is_peak = (revealed - codes).abs(), codes.abs() == peak
    # quantised levels: half a step, except the peak, which the float16 rounding of the scale may clip a little
    assert (error[~is_peak] <= (0.51 * peak / max_level(value_bits)).expand_as(codes)[~is_peak]).all()
    assert (error <= 0.51 * peak / max_level(value_bits) + peak * 2**-11).all()


@pytest.mark.parametrize("permute", [False, True])
def test_key_bytes_round_trip_exactly(permute):
    _public, key = ambiguate(sparse_codes(), 16, gen(), permute=permute)
    data = key.to_bytes()
    assert len(data) == key.nbytes == key_nbytes(16, GROUPS, K, 16, permuted=permute)
    again = Key.from_bytes(data)
    assert torch.equal(again.true_mask, key.true_mask)
    assert again.fingerprint == key.fingerprint and again.secret == key.secret
    assert again.to_bytes() == data


@pytest.mark.parametrize("permute", [False, True])
def test_restricted_keyed_key_round_trips_with_its_links_and_varying_counts(permute):
    public, key = ambiguate(sparse_codes(images=5), CODE_DIM, gen(), keyed=True, permute=permute)
    half = restrict(public, key, 0.5)
    assert not half.uniform  # groups get different counts: the key stores them
    data = half.to_bytes()
    assert len(data) == half.nbytes
    again = Key.from_bytes(data)
    assert again.restricted and again.keyed and again.root is None
    assert again.links == half.links and again.cutoffs == half.cutoffs and again.secret == key.secret
    assert torch.equal(again.true_mask, half.true_mask) and again.to_bytes() == data
    assert torch.equal(reveal(public, again), reveal(public, half))
    counts_at = KEY_HEADER + 16 + (SECRET_BYTES if permute else 0) + 5 * (SECRET_BYTES + 2)
    counts = np.frombuffer(data[counts_at : counts_at + 2 * 5 * GROUPS], dtype="<u2")
    assert counts.tolist() == half.true_mask.sum(-1).flatten().tolist()
    assert struct.unpack_from("<H", data, 16)[0] == 0xFFFF  # the header's k says: a count per group follows


# --- sizes ------------------------------------------------------------------------------------------


def test_key_mask_costs_ceil_log2_binomial_bits_per_group():
    _public, key = ambiguate(sparse_codes(images=5), 16, gen())
    mask_bytes = len(key.to_bytes()) - key_nbytes(5, GROUPS, K, K)  # C(8, 8) = 1 costs nothing
    assert subset_bits(16, K) == math.ceil(math.log2(math.comb(16, K)))
    assert mask_bytes == math.ceil(5 * GROUPS * subset_bits(16, K) / 8)
    assert key_nbytes(1, 20, 32, 64) == 20 + 16 + 4 + math.ceil(20 * 61 / 8)
    assert key_nbytes(1, 20, 32, 64, keyed=True) == key_nbytes(1, 20, 32, 64, permuted=True) == key_nbytes(1, 20, 32, 64) + 32
    assert key_nbytes(1, 20, 32, 64, passphrase=True) == key_nbytes(1, 20, 32, 64) + 37 + 16


def test_public_code_size_counts_enumerative_positions_and_values():
    # version 1: no model id
    assert public_nbytes(1, 20, 256, 256, 16, version=1) == 18 + 20 * 256 * 2 + 4  # positions cost nothing at k' = m
    assert public_nbytes(1, 20, 256, 64, 8, version=1) == 18 + math.ceil(20 * subset_bits(256, 64) / 8) + 20 * 64 + 40 + 4
    # version 2: the model id, and a keyed code's nonce and padded scales
    assert public_nbytes(1, 20, 256, 256, 16) == 18 + 8 + 20 * 256 * 2 + 4
    assert public_nbytes(1, 20, 256, 64, 8) == 18 + 8 + math.ceil(20 * subset_bits(256, 64) / 8) + 20 * 64 + 40 + 4
    assert public_nbytes(1, 20, 256, 256, 8, keyed=True) == 18 + 8 + 12 + 20 * 256 + 40 + 4
    assert public_nbytes(2, 20, 256, 256, 16, keyed=True) == 18 + 8 + 12 + 2 * 20 * 256 * 2 + 2 * 40 + 4


# --- files: tampering, versions, passphrases ----------------------------------------------------------


@pytest.mark.parametrize("share", list(SHARES))
@pytest.mark.parametrize("which", ["public", "key"])
def test_truncated_or_tampered_files_are_rejected(which, share):
    public, key = ambiguate(sparse_codes(), 16, gen(), **SHARES[share])
    data = public.to_bytes() if which == "public" else key.to_bytes()
    read = PublicCode.from_bytes if which == "public" else Key.from_bytes
    assert read(data).to_bytes() == data
    for bad in (data[:-1], data[: len(data) // 2], data[:3], b"", data + b"\0"):
        with pytest.raises(CodeFormatError):
            read(bad)
    for index in (len(data) // 2, 12, len(data) - 1, 7):
        tampered = bytearray(data)
        tampered[index] ^= 0x10
        with pytest.raises(CodeFormatError):
            read(bytes(tampered))
    with pytest.raises(CodeFormatError, match="magic"):
        read(b"JPEG" + data[4:])
    with pytest.raises(UnsupportedVersionError):
        read(data[:4] + bytes([99]) + data[5:])
    with pytest.raises(UnsupportedVersionError):
        read(with_crc(data[:4] + bytes([3]) + data[5:-4]))  # a valid checksum does not make a future version readable


def test_a_v2_public_code_relabelled_as_v1_is_rejected():
    for options in (dict(), dict(keyed=True)):
        public, _ = ambiguate(sparse_codes(), 16, gen(), **options)
        with pytest.raises(CodeFormatError):
            PublicCode.from_bytes(edited(public.to_bytes(), 4, bytes([1])))


def test_invalid_headers_are_rejected_even_with_a_valid_checksum():
    public, key = ambiguate(sparse_codes(), 16, gen(), permute=True)
    data = public.to_bytes()
    for offset, new in ((5, bytes([0x80])), (6, bytes([12])), (16, struct.pack("<H", 0)), (16, struct.pack("<H", 33))):
        with pytest.raises(CodeFormatError, match="header"):
            PublicCode.from_bytes(edited(data, offset, new))  # unknown flag, value width, k' = 0, k' > code_dim
    key_data = key.to_bytes()
    for offset, new in ((5, bytes([0x40])), (5, bytes([1 | 8])), (16, struct.pack("<H", 17))):
        with pytest.raises(CodeFormatError, match="header"):
            Key.from_bytes(edited(key_data, offset, new))  # unknown flag, restricted but not keyed, k > k'


def test_version_1_files_cannot_carry_the_keyed_flags():
    public, key = ambiguate(sparse_codes(), 16, gen(), keyed=True)
    with pytest.raises(CodeFormatError):
        PublicCode.from_bytes(edited(public.to_bytes(), 4, bytes([1])))
    with pytest.raises(CodeFormatError, match="header"):
        Key.from_bytes(edited(key.to_bytes(), 4, bytes([1])))


def test_corrupted_rank_fields_are_rejected():
    """Ranks past C(n, r) behind a valid checksum: positions of a public code, the mask of a key (fixed or varying)."""
    public, key = ambiguate(sparse_codes(images=2), 16, gen())  # C(32, 16) and C(16, 8): ranks can overflow
    ranks = packed_nbytes(2 * GROUPS, subset_bits(CODE_DIM, 16))
    with pytest.raises(CodeFormatError, match="out of range"):
        PublicCode.from_bytes(edited(public.to_bytes(), PUBLIC_HEADER + MODEL_ID_BYTES, b"\xff" * ranks))
    key_data = key.to_bytes()
    mask = packed_nbytes(2 * GROUPS, subset_bits(16, K))
    with pytest.raises(CodeFormatError, match="out of range"):
        Key.from_bytes(edited(key_data, len(key_data) - 4 - mask, b"\xff" * mask))

    keyed, keyed_key = ambiguate(sparse_codes(images=2), 16, gen(), keyed=True)
    with pytest.raises(CodeFormatError, match="out of range"):
        PublicCode.from_bytes(edited(keyed.to_bytes(), PUBLIC_HEADER + MODEL_ID_BYTES + NONCE_BYTES, b"\xff" * ranks))
    half = restrict(keyed, keyed_key, 0.5).to_bytes()
    assert struct.unpack_from("<H", half, 16)[0] == 0xFFFF  # varying counts
    counts_at = KEY_HEADER + 16 + 2 * (SECRET_BYTES + 2)
    ranks_at = counts_at + 2 * 2 * GROUPS
    with pytest.raises(CodeFormatError, match="out of range"):
        Key.from_bytes(edited(half, ranks_at, b"\xff" * (len(half) - 4 - ranks_at)))
    with pytest.raises(CodeFormatError, match="exceeds"):
        Key.from_bytes(edited(half, counts_at, struct.pack("<H", 17)))
    with pytest.raises(CodeFormatError):  # a count that changes the mask's length
        Key.from_bytes(edited(half, counts_at, struct.pack("<H", 0)))
    cutoff_at = KEY_HEADER + 16 + SECRET_BYTES
    for cutoff in (0, CODE_DIM + 1):
        with pytest.raises(CodeFormatError, match="cutoff"):
            Key.from_bytes(edited(half, cutoff_at, struct.pack("<H", cutoff)))


def test_corrupted_eight_bit_scales_are_rejected():
    public, _ = ambiguate(sparse_codes(images=2), 16, gen(), value_bits=8)
    data = public.to_bytes()
    scales_at = len(data) - 4 - 2 * 2 * GROUPS
    for bad in (struct.pack("<e", 0.0), struct.pack("<e", -1.0), b"\x00\x7c"):  # zero, negative, inf
        with pytest.raises(CodeFormatError, match="scales"):
            PublicCode.from_bytes(edited(data, scales_at, bad))
    with pytest.raises(CodeFormatError, match="levels"):
        PublicCode.from_bytes(edited(data, scales_at - 1, b"\x80"))  # level -128 is never written


def test_passphrase_protected_keys():
    public, key = ambiguate(sparse_codes(), 16, gen(), permute=True)
    sealed = key.to_bytes("correct horse", scrypt_log2_n=10)
    assert len(sealed) == key_nbytes(16, GROUPS, K, 16, permuted=True, passphrase=True)
    assert key.secret not in sealed
    opened = Key.from_bytes(sealed, "correct horse")
    assert torch.equal(reveal(public, opened), reveal(public, key))
    with pytest.raises(PassphraseError, match="wrong passphrase"):
        Key.from_bytes(sealed, "wrong horse")
    with pytest.raises(PassphraseError, match="none was given"):
        Key.from_bytes(sealed)
    tampered = bytearray(sealed)
    tampered[-20] ^= 1
    with pytest.raises(PassphraseError):
        Key.from_bytes(bytes(tampered), "correct horse")
    with pytest.raises(CodeFormatError):
        Key.from_bytes(sealed[:30], "correct horse")
    assert Key.from_bytes(key.to_bytes(), "unused").fingerprint == key.fingerprint
    header = bytearray(sealed)
    header[6] = 40  # scrypt log2 N out of range: refused before any work
    with pytest.raises(CodeFormatError, match="header"):
        Key.from_bytes(bytes(header), "correct horse")
    header = bytearray(sealed)
    header[10] ^= 1  # the salt is authenticated data
    with pytest.raises(PassphraseError):
        Key.from_bytes(bytes(header), "correct horse")
    with pytest.raises(ValueError, match="scrypt_log2_n"):
        key.to_bytes("x", scrypt_log2_n=9)


def test_passphrase_sealed_keyed_keys_hide_the_root_and_restricted_links():
    public, key = ambiguate(sparse_codes(images=3), CODE_DIM, gen(), keyed=True, permute=True)
    sealed = key.to_bytes(b"bytes work too", scrypt_log2_n=10)
    assert key.root not in sealed and key.root in key.to_bytes()
    assert Key.from_bytes(sealed, b"bytes work too").root == key.root
    half = restrict(public, key, 0.5)
    sealed_half = half.to_bytes("grant", scrypt_log2_n=10)
    assert not any(link in sealed_half for link in half.links)
    opened = Key.from_bytes(sealed_half, "grant")
    assert torch.equal(reveal(public, opened), reveal(public, half))
    with pytest.raises(PassphraseError):
        Key.from_bytes(sealed_half, "grant!")


# --- version 1 files written by the old implementation (tests/data/make_v1_files.py) --------------------


def golden(name: str) -> torch.Tensor:
    return torch.from_numpy(np.load(DATA / name))


@pytest.mark.parametrize("share", ["v1_plain", "v1_permuted"])
def test_version_1_files_reveal_exactly_what_the_old_code_revealed(share):
    data = (DATA / f"{share}.public").read_bytes()
    public = PublicCode.from_bytes(data)
    key = Key.from_bytes((DATA / f"{share}.key").read_bytes())
    assert public.version == key.version == 1 and public.model_id == b"" and not public.keyed and not key.keyed
    assert public.permuted == (share == "v1_permuted") and public.value_bits == (8 if public.permuted else 16)
    revealed = reveal(public, key)
    assert torch.equal(revealed, golden(f"{share}_revealed.npy"))
    assert public.to_bytes() == data and len(data) == public.nbytes  # rewritten as version 1, byte for byte
    assert key.to_bytes() == (DATA / f"{share}.key").read_bytes()


def test_version_1_plain_16_bit_share_gives_back_the_code_itself():
    public = PublicCode.from_bytes((DATA / "v1_plain.public").read_bytes())
    key = Key.from_bytes((DATA / "v1_plain.key").read_bytes())
    assert torch.equal(reveal(public, key), golden("v1_code.npy"))


def test_version_1_sealed_and_restricted_keys():
    public = PublicCode.from_bytes((DATA / "v1_permuted.public").read_bytes())
    sealed = (DATA / "v1_permuted_sealed.key").read_bytes()
    assert sealed[4] == 1
    key = Key.from_bytes(sealed, V1_PASSPHRASE)
    assert torch.equal(reveal(public, key), golden("v1_permuted_revealed.npy"))
    with pytest.raises(PassphraseError):
        Key.from_bytes(sealed, "not it")
    with pytest.raises(PassphraseError):
        Key.from_bytes(sealed)
    half = Key.from_bytes((DATA / "v1_permuted_half.key").read_bytes())
    assert half.k == 2 and half.version == 1
    expected = golden("v1_permuted_half_revealed.npy")
    assert torch.equal(reveal(public, half), expected)
    assert torch.equal(reveal(public, key, 0.5), expected)  # the new restrict keeps the largest entries, as v1 did
    assert torch.equal(reveal(public, Key.from_bytes(restrict(public, key, 0.5).to_bytes())), expected)


def test_version_1_files_are_checked_like_version_2_ones():
    data = (DATA / "v1_permuted.public").read_bytes()
    key = Key.from_bytes((DATA / "v1_permuted.key").read_bytes())
    tampered = bytearray(data)
    tampered[len(data) // 2] ^= 1
    with pytest.raises(CodeFormatError):
        PublicCode.from_bytes(bytes(tampered))
    other = PublicCode.from_bytes((DATA / "v1_plain.public").read_bytes())
    with pytest.raises(KeyMismatchError):
        reveal(other, Key.from_bytes((DATA / "v1_permuted.key").read_bytes()))
    edited_public = PublicCode.from_bytes(edited(data, len(data) - 4 - 2 * 2 * 3 - 1, b"\x05"))  # one level changed
    with pytest.raises(KeyMismatchError):
        reveal(edited_public, key)


# --- in-memory validation -----------------------------------------------------------------------------


def test_public_code_and_key_constructors_validate_their_fields():
    positions = torch.arange(4).expand(1, 2, 4).contiguous()
    values = torch.ones(1, 2, 4)
    assert PublicCode(positions, values, 8).model_id == bytes(MODEL_ID_BYTES)
    with pytest.raises(ValueError, match="shape"):
        PublicCode(positions, values[..., :3], 8)
    with pytest.raises(ValueError, match="value_bits"):
        PublicCode(positions, values, 8, value_bits=12)
    with pytest.raises(ValueError, match="scales"):
        PublicCode(positions, values, 8, value_bits=8)
    with pytest.raises(ValueError, match="k'"):
        PublicCode(positions, values, 3)
    with pytest.raises(ValueError, match="nonce"):
        PublicCode(positions, values, 8, keyed=True)
    with pytest.raises(ValueError, match="model id"):
        PublicCode(positions, values, 8, model_id=b"short")
    with pytest.raises(ValueError, match="model id"):
        PublicCode(positions, values, 8, version=1)  # a version 1 code has no model id
    mask = torch.tensor([[[True, False, True, False], [False, True, True, False]]])
    with pytest.raises(ValueError, match="fingerprint"):
        Key(mask, 8, b"short")
    with pytest.raises(ValueError, match="same number"):
        Key(torch.tensor([[[True, False], [True, True]]]), 8, bytes(16))
    with pytest.raises(ValueError, match="secret"):
        Key(mask, 8, bytes(16), secret=b"x" * 31)
    with pytest.raises(ValueError, match="either"):
        Key(mask, 8, bytes(16), root=bytes(32), links=(bytes(32),), cutoffs=(4,))
    with pytest.raises(ValueError, match="one link"):
        Key(mask, 8, bytes(16), links=(bytes(32), bytes(32)), cutoffs=(4, 4))
    with pytest.raises(ValueError, match="cutoffs"):
        Key(mask, 8, bytes(16), links=(bytes(32),), cutoffs=(0,))
    ragged = Key(torch.tensor([[[True, False], [True, True]]]), 8, bytes(16), links=(bytes(32),), cutoffs=(8,))
    assert ragged.restricted and ragged.k == 2 and ragged.granted == 3


def test_a_crafted_header_is_refused_before_anything_is_decoded():
    """A few bytes must not buy minutes of CPU or gigabytes: huge shapes, k = 0 keys, costly scrypt, another model."""
    import struct
    import time

    from sae.privacy import formats

    started = time.perf_counter()
    huge = struct.pack("<4sBBBBIHHH", b"SAEP", 2, 0, 8, 0, 100_000, 200, 512, 256) + bytes(8)
    with pytest.raises(CodeFormatError, match="more than this reader decodes"):
        PublicCode.from_bytes(formats._with_crc(huge))
    wide = struct.pack("<4sBBBBIHHH", b"SAEP", 2, 0, 8, 0, 1, 4, 2048, 1024) + bytes(8)
    with pytest.raises(CodeFormatError, match="more than this reader decodes"):
        PublicCode.from_bytes(formats._with_crc(wide))
    empty_key = struct.pack("<4sBBHIHHHH", b"SAEK", 2, 0, 0, 1, 4, 32, 0, 16) + bytes(16)
    with pytest.raises(CodeFormatError, match="header is invalid"):
        Key.from_bytes(formats._with_crc(empty_key))
    costly = struct.pack("<4sBBBBB16s12s", b"SAEK", 2, 2, 22, 32, 16, bytes(16), bytes(12)) + bytes(40)
    with pytest.raises(CodeFormatError, match="protected key header is invalid"):
        Key.from_bytes(costly, "any passphrase")
    assert time.perf_counter() - started < 5  # refused from the header, not after decoding


def test_a_code_for_another_shape_or_too_many_faces_is_refused_from_its_header():
    codes = torch.zeros(3, 4, 32)
    codes[..., :4] = 1.0
    public, key = ambiguate(codes, 16, torch.Generator().manual_seed(0), k=4)
    data, key_data = public.to_bytes(), key.to_bytes()
    assert PublicCode.from_bytes(data, (4, 32), 3).num_images == 3 and Key.from_bytes(key_data, None, (4, 32), 3).k == 4
    with pytest.raises(KeyMismatchError, match="4 groups of 32; the model has 2 groups of 32"):
        PublicCode.from_bytes(data, (2, 32))
    with pytest.raises(KeyMismatchError):
        Key.from_bytes(key_data, None, (4, 64))
    with pytest.raises(CodeFormatError, match="holds 3 faces; at most 2"):
        PublicCode.from_bytes(data, (4, 32), 2)
