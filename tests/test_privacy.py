"""Public codes, keys, reveal and their byte formats (sae.privacy.scheme)."""

from __future__ import annotations

import math

import pytest
import torch
from scipy.stats import ks_2samp

from sae.core.model import topk_by_magnitude
from sae.privacy.scheme import (
    CodeFormatError,
    Key,
    KeyMismatchError,
    PassphraseError,
    PublicCode,
    UnsupportedVersionError,
    ambiguate,
    check_key,
    kept_count,
    key_nbytes,
    public_nbytes,
    quantize_values,
    reveal,
    secret_permutation,
    subset_bits,
    support_frequency,
)

torch.set_num_threads(1)

GROUPS, CODE_DIM, K = 4, 32, 8


def sparse_codes(images: int = 16, k: int = K, seed: int = 0, groups: int = GROUPS, code_dim: int = CODE_DIM):
    """Sparse codes with a per-image, per-group scale, rounded to float16-representable values."""
    generator = torch.Generator().manual_seed(seed)
    dense = torch.randn(images, groups, code_dim, generator=generator)
    dense = dense * (0.5 + 2 * torch.rand(images, groups, 1, generator=generator))
    return topk_by_magnitude(dense.half().float(), k)


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def decoy_and_true_magnitudes(public: PublicCode, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
    magnitudes = public.values.abs()
    return magnitudes[~key.true_mask], magnitudes[key.true_mask]


# --- decoys -----------------------------------------------------------------------------------------


def test_public_code_has_k_prime_distinct_sorted_positions_and_k_true_entries():
    codes = sparse_codes()
    public, key = ambiguate(codes, 20, gen())
    assert public.positions.shape == (16, GROUPS, 20)
    assert (public.positions.diff(dim=-1) > 0).all()
    assert (key.true_mask.sum(-1) == K).all() and key.k == K and key.k_prime == 20
    true_positions = public.positions[key.true_mask].reshape(16, GROUPS, K)
    assert torch.equal(true_positions.sort(-1).values, (codes != 0).nonzero()[:, 2].reshape(16, GROUPS, K))


def test_fair_decoys_pass_a_two_sample_test_and_reference_decoys_fail():
    codes = sparse_codes(images=64)
    fair_decoys, fair_true = decoy_and_true_magnitudes(*ambiguate(codes, 2 * K, gen()))
    assert ks_2samp(fair_decoys.numpy(), fair_true.numpy()).pvalue > 0.01
    buggy_decoys, buggy_true = decoy_and_true_magnitudes(*ambiguate(codes, 2 * K, gen(), decoys="reference"))
    assert ks_2samp(buggy_decoys.numpy(), buggy_true.numpy()).pvalue < 1e-6
    assert buggy_decoys.median() > 2 * buggy_true.median()  # the m/k scaling


def test_fair_decoys_keep_each_groups_scale_and_sign_balance():
    codes = sparse_codes(images=64)
    codes[:, 0] = codes[:, 0].abs() * 100  # group 0: large and all positive
    public, key = ambiguate(codes, 3 * K, gen())
    decoys = public.values[:, 0][~key.true_mask[:, 0]]
    assert (decoys > 0).all()
    assert 30 < decoys.median() < 300
    assert ks_2samp(decoys.numpy(), public.values[:, 0][key.true_mask[:, 0]].numpy()).pvalue > 0.01


def test_ambiguate_is_reproducible_with_the_same_generator_seed():
    codes = sparse_codes()
    first, first_key = ambiguate(codes, 16, gen(5), permute=True)
    second, second_key = ambiguate(codes, 16, gen(5), permute=True)
    assert torch.equal(first.positions, second.positions) and torch.equal(first.values, second.values)
    assert first_key.to_bytes() == second_key.to_bytes()
    third, _ = ambiguate(codes, 16, gen(6), permute=True)
    assert not torch.equal(first.positions, third.positions)


def test_k_prime_equal_to_code_dim_fills_every_position():
    codes = sparse_codes()
    public, key = ambiguate(codes, CODE_DIM, gen())
    assert (public.dense() != 0).all()
    assert torch.equal(public.positions, torch.arange(CODE_DIM).expand(16, GROUPS, CODE_DIM))
    assert torch.equal(reveal(public, key), codes)
    again = PublicCode.from_bytes(public.to_bytes())
    assert torch.equal(again.values, public.values)
    assert torch.equal(reveal(again, Key.from_bytes(key.to_bytes())), codes)


def test_k_prime_equal_to_k_publishes_the_code_itself():
    codes = sparse_codes()
    public, key = ambiguate(codes, K, gen())
    assert torch.equal(public.dense(), codes) and key.true_mask.all()


def test_position_weights_put_decoys_where_true_entries_usually_are():
    codes = sparse_codes(images=64)
    weights = torch.zeros(GROUPS, CODE_DIM)
    weights[:, :16] = 1.0  # decoys should (almost) only land on the first half
    public, key = ambiguate(codes, 12, gen(), position_weights=weights)
    decoy_positions = public.positions[~key.true_mask]
    assert (decoy_positions < 16).float().mean() > 0.95
    assert support_frequency(codes).shape == (GROUPS, CODE_DIM)


def test_invalid_arguments_are_rejected():
    codes = sparse_codes()
    with pytest.raises(ValueError):
        ambiguate(codes, K - 1, gen())
    with pytest.raises(ValueError):
        ambiguate(codes, CODE_DIM + 1, gen())
    with pytest.raises(ValueError):
        ambiguate(codes, 16, gen(), decoys="gaussian")
    with pytest.raises(ValueError):
        ambiguate(codes, 16, gen(), value_bits=12)
    ragged = codes.clone()
    ragged[0, 0, ragged[0, 0].nonzero()[0]] = 0
    with pytest.raises(ValueError, match="pass k"):
        ambiguate(ragged, 16, gen())
    public, key = ambiguate(ragged, 16, gen(), k=K)  # explicit k: a zero-valued true entry is allowed
    assert torch.equal(reveal(public, key), ragged)


# --- values -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value_bits", [16, 32])
def test_public_bytes_round_trip_exactly(value_bits):
    public, key = ambiguate(sparse_codes(), 16, gen(), value_bits=value_bits)
    data = public.to_bytes()
    assert len(data) == public.nbytes
    again = PublicCode.from_bytes(data)
    assert torch.equal(again.positions, public.positions) and torch.equal(again.values, public.values)
    assert again.to_bytes() == data
    assert again.fingerprint() == key.fingerprint


def test_eight_bit_values_round_trip_exactly_and_stay_within_half_a_step():
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), value_bits=8)
    again = PublicCode.from_bytes(public.to_bytes())
    assert len(public.to_bytes()) == public.nbytes
    assert torch.equal(again.values, public.values) and torch.equal(again.scales, public.scales)
    assert ((reveal(again, key) - codes).abs() <= 0.51 * public.scales[..., None]).all()  # half a step per group
    assert public.nbytes < ambiguate(codes, 16, gen(), value_bits=16)[0].nbytes


def test_quantize_values_rejects_what_float16_cannot_hold():
    with pytest.raises(ValueError):
        quantize_values(torch.tensor([[[1e6, 1.0]]]), 16)
    values, _ = quantize_values(torch.tensor([[[1e6, 1.0]]]), 32)
    assert values[0, 0, 0] == 1e6


# --- reveal -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("permute", [False, True])
def test_reveal_with_the_right_key_gives_back_the_sparse_code_exactly(permute):
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), permute=permute)
    assert torch.equal(reveal(public, key), codes)
    loaded = PublicCode.from_bytes(public.to_bytes()), Key.from_bytes(key.to_bytes())
    assert torch.equal(reveal(*loaded), codes)


def test_kept_count_rounds_half_up_and_keeps_at_least_one():
    assert [kept_count(128, f) for f in (1, 0.5, 0.25)] == [128, 64, 32]
    assert kept_count(3, 0.5) == 2  # 1.5 rounds up
    assert kept_count(8, 0.01) == 1 and kept_count(8, 0.0) == 0
    with pytest.raises(ValueError):
        kept_count(8, 1.5)


@pytest.mark.parametrize("fraction", [0.5, 0.25])
def test_fraction_keeps_the_largest_true_entries(fraction):
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), permute=True)
    partial = reveal(public, key, fraction)
    kept = kept_count(K, fraction)
    assert ((partial != 0).sum(-1) == kept).all()
    assert torch.equal(partial, topk_by_magnitude(codes, kept))


def test_restricted_key_is_a_smaller_key_to_the_same_public_code():
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen())
    half = Key.from_bytes(key.restrict(public, 0.5).to_bytes())
    assert half.k == K // 2 and half.nbytes < key.nbytes
    assert torch.equal(reveal(public, half), reveal(public, key, 0.5))
    assert torch.equal(reveal(public, key, 0.0), torch.zeros_like(codes))


# --- files: keys, tampering, passphrases -------------------------------------------------------------


@pytest.mark.parametrize("permute", [False, True])
def test_key_bytes_round_trip_exactly(permute):
    _public, key = ambiguate(sparse_codes(), 16, gen(), permute=permute)
    data = key.to_bytes()
    assert len(data) == key.nbytes == key_nbytes(16, GROUPS, K, 16, permuted=permute)
    again = Key.from_bytes(data)
    assert torch.equal(again.true_mask, key.true_mask)
    assert again.fingerprint == key.fingerprint and again.secret == key.secret
    assert again.to_bytes() == data


def test_key_mask_costs_ceil_log2_binomial_bits_per_group():
    _public, key = ambiguate(sparse_codes(images=5), 16, gen())
    mask_bytes = len(key.to_bytes()) - key_nbytes(5, GROUPS, K, K)  # C(8, 8) = 1 costs nothing
    assert subset_bits(16, K) == math.ceil(math.log2(math.comb(16, K)))
    assert mask_bytes == math.ceil(5 * GROUPS * subset_bits(16, K) / 8)
    assert key_nbytes(1, 20, 32, 64) == 20 + 16 + 4 + math.ceil(20 * 61 / 8)


def test_public_code_size_counts_enumerative_positions_and_values():
    assert public_nbytes(1, 20, 256, 256, 16) == 18 + 20 * 256 * 2 + 4  # positions cost nothing at k' = m
    assert public_nbytes(1, 20, 256, 64, 8) == 18 + math.ceil(20 * subset_bits(256, 64) / 8) + 20 * 64 + 40 + 4


@pytest.mark.parametrize("which", ["public", "key"])
def test_truncated_or_tampered_files_are_rejected(which):
    public, key = ambiguate(sparse_codes(), 16, gen())
    data = public.to_bytes() if which == "public" else key.to_bytes()
    read = PublicCode.from_bytes if which == "public" else Key.from_bytes
    for bad in (data[:-1], data[: len(data) // 2], data[:3], b"", data + b"\0"):
        with pytest.raises(CodeFormatError):
            read(bad)
    for index in (len(data) // 2, 12, len(data) - 1):
        tampered = bytearray(data)
        tampered[index] ^= 0x10
        with pytest.raises(CodeFormatError):
            read(bytes(tampered))
    with pytest.raises(CodeFormatError, match="magic"):
        read(b"JPEG" + data[4:])
    with pytest.raises(UnsupportedVersionError):
        read(data[:4] + bytes([99]) + data[5:])


def test_a_key_for_another_public_code_is_rejected():
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(1))
    other_public, other_key = ambiguate(codes, 16, gen(2))
    with pytest.raises(KeyMismatchError):
        reveal(public, other_key)
    with pytest.raises(KeyMismatchError):
        reveal(other_public, key)
    _, wrong_shape = ambiguate(codes, 12, gen(1))
    with pytest.raises(KeyMismatchError):
        reveal(public, wrong_shape)
    _, permuted_key = ambiguate(codes, 16, gen(1), permute=True)
    with pytest.raises(KeyMismatchError):
        reveal(public, permuted_key)


def test_a_public_code_edited_consistently_is_caught_by_the_key_fingerprint():
    public, key = ambiguate(sparse_codes(), 16, gen())
    values = public.values.clone()
    values[0, 0, 0] += 1.0
    edited = PublicCode.from_bytes(PublicCode(public.positions, values, public.code_dim).to_bytes())  # valid CRC
    with pytest.raises(KeyMismatchError):
        check_key(edited, key)


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


# --- the secret permutation --------------------------------------------------------------------------


def test_secret_permutation_is_a_permutation_that_depends_on_the_secret_only():
    first = secret_permutation(b"a" * 32, 3, GROUPS, CODE_DIM)
    assert torch.equal(first.sort(-1).values, torch.arange(CODE_DIM).expand(3, GROUPS, CODE_DIM))
    assert torch.equal(secret_permutation(b"a" * 32, 5, GROUPS, CODE_DIM)[:3], first)  # batch size independent
    assert not torch.equal(secret_permutation(b"b" * 32, 3, GROUPS, CODE_DIM), first)
    assert not torch.equal(first[0], first[1])  # every image gets its own


def test_permuted_public_code_hides_positions_and_round_trips():
    codes = sparse_codes()
    plain, _plain_key = ambiguate(codes, 16, gen(3))
    permuted, key = ambiguate(codes, 16, gen(3), permute=True)
    assert permuted.permuted and key.secret is not None and len(key.secret) == 32
    assert not torch.equal(permuted.dense(), plain.dense())  # what decoding as is sees differs
    assert not torch.equal(permuted.positions, plain.positions)
    again = PublicCode.from_bytes(permuted.to_bytes())
    assert again.permuted and torch.equal(reveal(again, Key.from_bytes(key.to_bytes())), codes)
    chosen, chosen_key = ambiguate(codes, 16, gen(3), permute=True, secret=bytes(range(32)))
    assert Key.from_bytes(chosen_key.to_bytes()).secret == bytes(range(32))
    assert torch.equal(reveal(chosen, chosen_key), codes)


def test_balanced_signs_fix_each_groups_positive_count_and_keep_reveal_exact():
    codes = sparse_codes(images=32)
    codes[:, 0] = codes[:, 0].abs()  # a group whose true values are all positive
    for k_prime in (2 * K, CODE_DIM):
        public, key = ambiguate(codes, k_prime, gen(), signs="balanced", permute=True)
        assert ((public.values > 0).sum(-1) == k_prime // 2).all()
        assert torch.equal(reveal(public, key), codes)
    with pytest.raises(ValueError, match="signs"):
        ambiguate(codes, 2 * K, gen(), signs="random")
