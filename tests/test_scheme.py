"""Sharing a sparse code (sae.privacy.scheme): ambiguate, reveal, restrict, check_key and check_model, both schemes."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from scipy.stats import chisquare, ks_2samp

from sae.core.model import topk_by_magnitude
from sae.privacy import keystream
from sae.privacy.formats import MODEL_ID_BYTES, Key, KeyMismatchError, PublicCode, level_scales, max_level
from sae.privacy.keystream import NONCE_BYTES, chain_head, chain_links, link_below
from sae.privacy.scheme import (
    DEFAULT_K,
    DEFAULT_SCHEME,
    SCHEMES,
    UNNAMED_MODEL,
    ambiguate,
    check_key,
    check_model,
    k_prime_for,
    kept_count,
    model_positions,
    open_values,
    restrict,
    reveal,
    to_model_coordinates,
    true_support,
)

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


def levels_of(codes: torch.Tensor, value_bits: int) -> torch.Tensor:
    """The integer levels a keyed share stores for true values (the scale of each group's peak)."""
    scales = level_scales(codes.gather(-1, true_support(codes)), value_bits)
    return (codes / scales[..., None]).round().clamp(-max_level(value_bits), max_level(value_bits))


def value_bytes(public: PublicCode) -> np.ndarray:
    """The stored value bytes of a public code with k' = code_dim (no position bytes), as the file holds them."""
    assert public.k_prime == public.code_dim
    start = 18 + MODEL_ID_BYTES + (NONCE_BYTES if public.keyed else 0)
    count = public.values.numel() * public.value_bits // 8
    return np.frombuffer(public.to_bytes()[start : start + count], dtype=np.uint8)


def byte_pvalue(data: np.ndarray) -> float:
    """Chi-square test that the bytes are uniform over 0..255."""
    return float(chisquare(np.bincount(data, minlength=256)).pvalue)


# --- decoys -----------------------------------------------------------------------------------------


def test_public_code_has_k_prime_distinct_sorted_positions_and_k_true_entries():
    codes = sparse_codes()
    for options in (dict(), dict(keyed=True)):
        public, key = ambiguate(codes, 20, gen(), **options)
        assert public.positions.shape == (16, GROUPS, 20)
        assert (public.positions.diff(dim=-1) > 0).all()
        assert (key.true_mask.sum(-1) == K).all() and key.k == K and key.k_prime == 20
        true_positions = public.positions[key.true_mask].reshape(16, GROUPS, K)
        assert torch.equal(true_positions.sort(-1).values, (codes != 0).nonzero()[:, 2].reshape(16, GROUPS, K))


def test_fair_decoys_pass_a_two_sample_test_and_reference_decoys_fail():
    codes = sparse_codes(images=64)
    fair_decoys, fair_true = decoy_and_true_magnitudes(*ambiguate(codes, 2 * K, gen()))
    assert ks_2samp(fair_decoys.numpy(), fair_true.numpy()).pvalue > 0.01
    buggy_decoys, buggy_true = decoy_and_true_magnitudes(*ambiguate(codes, 2 * K, gen(), decoy_values="reference"))
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


def test_keyed_decoys_are_uniformly_random_levels():
    codes = sparse_codes(images=64)
    public, key = ambiguate(codes, CODE_DIM, gen(), keyed=True, value_bits=8)
    values, readable = open_values(public, key)
    assert readable.all()
    scales = level_scales(codes.gather(-1, true_support(codes)), 8)
    decoy_levels = (values / scales[..., None]).round()[~key.true_mask]
    assert decoy_levels.abs().max() <= 127
    counts = torch.bincount((decoy_levels + 127).long(), minlength=255).numpy()
    assert chisquare(counts).pvalue > 0.001


@pytest.mark.parametrize("keyed", [False, True])
def test_ambiguate_is_reproducible_with_the_same_generator_seed(keyed):
    codes = sparse_codes()
    first, first_key = ambiguate(codes, 16, gen(5), permute=True, keyed=keyed)
    second, second_key = ambiguate(codes, 16, gen(5), permute=True, keyed=keyed)
    assert torch.equal(first.positions, second.positions) and torch.equal(first.values, second.values)
    assert first_key.to_bytes() == second_key.to_bytes() and first.to_bytes() == second.to_bytes()
    third, _ = ambiguate(codes, 16, gen(6), permute=True, keyed=keyed)
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
    keyed, keyed_key = ambiguate(codes, K, gen(), keyed=True, value_bits=16)
    assert keyed_key.true_mask.all() and torch.equal(reveal(keyed, keyed_key) != 0, codes != 0)


def test_position_weights_put_decoys_where_true_entries_usually_are():
    codes = sparse_codes(images=64)
    weights = torch.zeros(GROUPS, CODE_DIM)
    weights[:, :16] = 1.0  # decoys should (almost) only land on the first half
    for keyed in (False, True):
        public, key = ambiguate(codes, 12, gen(), position_weights=weights, keyed=keyed)
        decoy_positions = public.positions[~key.true_mask]
        assert (decoy_positions < 16).float().mean() > 0.95
    frequency = (codes != 0).float().mean(0)  # how often each position is non-zero: a natural weighting
    public, key = ambiguate(codes, 12, gen(), position_weights=frequency)
    assert torch.equal(reveal(public, key), codes)


def test_invalid_arguments_are_rejected():
    codes = sparse_codes()
    with pytest.raises(ValueError):
        ambiguate(codes, K - 1, gen())
    with pytest.raises(ValueError):
        ambiguate(codes, CODE_DIM + 1, gen())
    with pytest.raises(ValueError):
        ambiguate(codes, 16, gen(), decoy_values="gaussian")
    with pytest.raises(ValueError):
        ambiguate(codes, 16, gen(), value_bits=12)
    with pytest.raises(ValueError, match="signs"):
        ambiguate(codes, 16, gen(), signs="random")
    with pytest.raises(ValueError, match="permute"):
        ambiguate(codes, 16, gen(), secret=bytes(32))
    with pytest.raises(ValueError, match="root"):
        ambiguate(codes, 16, gen(), keyed=True, permute=True, secret=bytes(32))
    for bits in (12, 32):  # a keyed code stores 8- or 16-bit levels
        with pytest.raises(ValueError, match="value_bits"):
            ambiguate(codes, 16, gen(), keyed=True, value_bits=bits)
    with pytest.raises(ValueError):
        ambiguate(codes[0], 16, gen())
    with pytest.raises(ValueError, match="shape"):
        true_support(codes[0])
    ragged = codes.clone()
    ragged[0, 0, ragged[0, 0].nonzero()[0]] = 0
    with pytest.raises(ValueError, match="pass k"):
        ambiguate(ragged, 16, gen())
    public, key = ambiguate(ragged, 16, gen(), k=K)  # explicit k: a zero-valued true entry is allowed
    assert torch.equal(reveal(public, key), ragged)


def test_balanced_signs_fix_each_groups_positive_count_and_keep_reveal_exact():
    codes = sparse_codes(images=32)
    codes[:, 0] = codes[:, 0].abs()  # a group whose true values are all positive
    for k_prime in (2 * K, CODE_DIM):
        public, key = ambiguate(codes, k_prime, gen(), signs="balanced", permute=True)
        assert ((public.values > 0).sum(-1) == k_prime // 2).all()
        assert torch.equal(reveal(public, key), codes)


# --- schemes and defaults ----------------------------------------------------------------------------


def test_schemes_and_k_prime_for():
    assert DEFAULT_SCHEME == "keyed" and SCHEMES["keyed"].keyed and not SCHEMES["paper"].keyed
    assert DEFAULT_K == 32
    for scheme in SCHEMES.values():
        options = scheme.options()
        assert options == dict(keyed=scheme.keyed, permute=True, signs="balanced", value_bits=8, decoy_values="resample")
        public, key = ambiguate(sparse_codes(images=2), 16, gen(), **options)
        assert public.keyed == key.keyed == scheme.keyed and public.permuted and public.value_bits == 8
    assert k_prime_for(8, 32) == 32  # None: every position
    assert k_prime_for(8, 32, 2) == 16 and k_prime_for(8, 32, 1) == 8 and k_prime_for(8, 32, 10) == 32
    assert k_prime_for(8, 32, 1.3) == 10
    with pytest.raises(ValueError):
        k_prime_for(8, 32, 0.5)


def test_kept_count_rounds_half_up_and_keeps_at_least_one():
    assert [kept_count(128, f) for f in (1, 0.5, 0.25)] == [128, 64, 32]
    assert kept_count(3, 0.5) == 2  # 1.5 rounds up
    assert kept_count(8, 0.01) == 1 and kept_count(8, 0.0) == 0
    with pytest.raises(ValueError):
        kept_count(8, 1.5)


# --- reveal -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("permute", [False, True])
def test_reveal_with_the_right_key_gives_back_the_sparse_code_exactly(permute):
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), permute=permute)
    assert torch.equal(reveal(public, key), codes)
    loaded = PublicCode.from_bytes(public.to_bytes()), Key.from_bytes(key.to_bytes())
    assert torch.equal(reveal(*loaded), codes)


@pytest.mark.parametrize("value_bits", [8, 16])
@pytest.mark.parametrize("permute", [False, True])
def test_keyed_reveal_gives_back_the_quantised_levels(value_bits, permute):
    codes = sparse_codes()
    public, key = ambiguate(codes, 16, gen(), keyed=True, value_bits=value_bits, permute=permute)
    revealed = reveal(public, key)
    scales = level_scales(codes.gather(-1, true_support(codes)), value_bits)
    assert torch.equal(revealed, levels_of(codes, value_bits) * scales[..., None])
    loaded = PublicCode.from_bytes(public.to_bytes()), Key.from_bytes(key.to_bytes("pass", scrypt_log2_n=10), "pass")
    assert torch.equal(reveal(*loaded), revealed)


def test_keyed_values_are_hidden_from_decoding_as_is():
    codes = sparse_codes()
    plain, plain_key = ambiguate(codes, 16, gen(3), value_bits=8)
    keyed, keyed_key = ambiguate(codes, 16, gen(3), keyed=True, value_bits=8)
    assert torch.equal(keyed.positions, plain.positions)  # the same layout ...
    true_levels = levels_of(codes, 8).gather(-1, keyed.positions)[keyed_key.true_mask]
    assert (keyed.values[keyed_key.true_mask] == true_levels).float().mean() < 0.05  # ... but not the same levels
    assert (keyed.values.abs() <= 128).all() and keyed.scales is None


def test_model_positions_and_to_model_coordinates_undo_the_permutation():
    codes = sparse_codes()
    for keyed in (False, True):
        public, key = ambiguate(codes, 16, gen(), permute=True, keyed=keyed)
        positions = model_positions(public, key)
        assert torch.equal(positions[key.true_mask].reshape(16, GROUPS, K).sort(-1).values, true_support(codes).sort(-1).values)
        model_support = to_model_coordinates(public.support(), key)
        assert ((codes != 0) <= model_support).all() and (model_support.sum(-1) == 16).all()
        assert torch.equal(model_support, torch.zeros_like(model_support).scatter(-1, positions, True))
    plain, plain_key = ambiguate(codes, 16, gen())
    assert model_positions(plain, plain_key) is plain.positions
    assert torch.equal(to_model_coordinates(plain.dense(), plain_key), plain.dense())


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


def test_keyed_share_takes_its_root_and_nonce():
    codes = sparse_codes(images=2)
    root, nonce = bytes(range(32)), bytes(range(12))
    public, key = ambiguate(codes, 16, gen(), keyed=True, permute=True, root=root, nonce=nonce)
    assert key.root == root and public.nonce == nonce and key.secret == keystream.permutation_secret(root)
    other, _ = ambiguate(codes, 16, gen(), keyed=True, permute=True, root=root, nonce=bytes(12))
    assert torch.equal(other.positions, public.positions) and not torch.equal(other.values, public.values)


# --- key and model checks ----------------------------------------------------------------------------


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
    keyed, keyed_key = ambiguate(codes, 16, gen(1), keyed=True)
    with pytest.raises(KeyMismatchError, match="scheme"):
        reveal(public, keyed_key)
    with pytest.raises(KeyMismatchError, match="scheme"):
        reveal(keyed, key)
    _, other_keyed_key = ambiguate(codes, 16, gen(2), keyed=True)
    with pytest.raises(KeyMismatchError, match="fingerprint"):
        reveal(keyed, other_keyed_key)
    with pytest.raises(KeyMismatchError):
        restrict(keyed, other_keyed_key, 0.5)


def test_a_public_code_edited_consistently_is_caught_by_the_key_fingerprint():
    public, key = ambiguate(sparse_codes(), 16, gen())
    values = public.values.clone()
    values[0, 0, 0] += 1.0
    edited = PublicCode.from_bytes(PublicCode(public.positions, values, public.code_dim).to_bytes())  # valid CRC
    with pytest.raises(KeyMismatchError):
        check_key(edited, key)
    keyed, keyed_key = ambiguate(sparse_codes(), 16, gen(), keyed=True)
    values = keyed.values.clone()
    values[0, 0, 0] = -values[0, 0, 0] - 1
    fields = vars(keyed) | dict(values=values)
    with pytest.raises(KeyMismatchError):
        check_key(PublicCode(**fields), keyed_key)
    check_key(keyed, keyed_key)


def test_the_model_id_is_covered_by_the_key_and_checked_against_the_decoding_model():
    model_a, model_b = bytes(range(1, 9)), bytes(range(2, 10))
    public, key = ambiguate(sparse_codes(), 16, gen(), keyed=True, model_id=model_a)
    assert PublicCode.from_bytes(public.to_bytes()).model_id == model_a
    check_model(public, model_a)
    with pytest.raises(KeyMismatchError, match="another model"):
        check_model(public, model_b)
    check_model(public, UNNAMED_MODEL)  # a caller that cannot name its model does not check
    relabelled = PublicCode(**(vars(public) | dict(model_id=model_b)))  # the file's model id changed after the key was made
    check_model(relabelled, model_b)
    with pytest.raises(KeyMismatchError, match="fingerprint"):
        reveal(relabelled, key)
    unnamed, _ = ambiguate(sparse_codes(), 16, gen())
    assert unnamed.model_id == UNNAMED_MODEL
    check_model(unnamed, model_a)  # an unnamed code (tests, sweeps) fits any model


# --- restricted keys ------------------------------------------------------------------------------------


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
    half = Key.from_bytes(restrict(public, key, 0.5).to_bytes())
    assert half.k == K // 2 and half.nbytes < key.nbytes and not half.keyed
    assert torch.equal(reveal(public, half), reveal(public, key, 0.5))
    assert torch.equal(reveal(public, key, 0.0), torch.zeros_like(codes))
    quarter = restrict(public, half, 0.5)  # restricting again keeps the largest of what is left
    assert quarter.k == K // 4 and torch.equal(reveal(public, quarter), topk_by_magnitude(codes, K // 4))


def keyed_share(images: int = 8, value_bits: int = 16, permute: bool = True):
    codes = sparse_codes(images=images)
    public, key = ambiguate(codes, CODE_DIM, gen(), keyed=True, value_bits=value_bits, permute=permute)
    return codes, public, key


@pytest.mark.parametrize("permute", [False, True])
def test_restricted_keyed_key_reveals_exactly_the_entries_below_its_cutoff(permute):
    codes, public, key = keyed_share(permute=permute)
    full = reveal(public, key)
    for fraction in (0.5, 0.25, 1.0):
        grant = restrict(public, key, fraction)
        assert grant.restricted and grant.keyed and grant.root is None and grant.secret == key.secret
        partial = reveal(public, grant)
        coordinates = torch.arange(CODE_DIM)
        for image, cutoff in enumerate(grant.cutoffs):
            below = coordinates < cutoff
            assert torch.equal(partial[image], torch.where(below, full[image], torch.zeros(())))
            target = kept_count(int((codes[image] != 0).sum()), fraction)
            assert int((partial[image] != 0).sum()) >= target  # at least what was asked ...
            assert int((codes[image][:, : cutoff - 1] != 0).sum()) < target  # ... at the smallest cutoff giving it
        assert grant.granted == int((partial != 0).sum())
    assert torch.equal(reveal(public, restrict(public, key, 1.0)), full)
    with pytest.raises(ValueError, match="at least one"):
        restrict(public, key, 0.0)


def test_restricted_keyed_key_holds_no_link_past_its_cutoff():
    codes, public, key = keyed_share()
    grant = restrict(public, key, 0.5)
    data = grant.to_bytes()
    assert key.root in key.to_bytes() and key.root not in data
    for image, cutoff in enumerate(grant.cutoffs):
        assert cutoff < CODE_DIM  # otherwise the grant would be the whole chain
        chain = chain_links(chain_head(key.root, image), CODE_DIM)
        assert grant.links[image] == chain[cutoff - 1] and grant.links[image] in data
        assert chain_head(key.root, image) not in data
        assert not any(link in data for link in chain[cutoff:])  # the link at the cutoff and every later one
    assert keystream.permutation_secret(key.root) in data  # the permutation is the holder's: it places the entries


def test_a_restricted_keyed_key_cannot_decrypt_the_entries_it_was_not_granted():
    codes, public, key = keyed_share(value_bits=16)
    grant = restrict(public, key, 0.5)
    positions = model_positions(public, key)
    true_levels = levels_of(codes, 16).gather(-1, positions).long() & 0xFFFF  # the true level of each public entry
    cipher = public.values.long() & 0xFFFF
    full_pads = keystream.value_pads([chain_head(key.root, b) for b in range(8)], [CODE_DIM] * 8, public.nonce, GROUPS, CODE_DIM, 2)
    assert torch.equal((cipher ^ full_pads.gather(-1, positions))[key.true_mask], true_levels[key.true_mask])  # sanity
    hits = tried = 0
    for image, (link, cutoff) in enumerate(zip(grant.links, grant.cutoffs, strict=True)):
        hidden = key.true_mask[image] & (positions[image] >= cutoff)  # true entries the grant leaves out
        assert hidden.any()
        for derived in chain_links(link, cutoff):  # every link the holder can compute
            pads = keystream.value_pads([derived], [1], public.nonce, GROUPS, CODE_DIM, 2)[0, :, 0]  # (L,) its pads
            guess = cipher[image] ^ pads[:, None]
            hits += int((guess == true_levels[image])[hidden].sum())
            tried += int(hidden.sum())
    assert tried > 1000 and hits <= 1  # chance: about tried / 65536
    fake = Key(key.true_mask, CODE_DIM, grant.fingerprint, grant.secret, None, grant.links, (CODE_DIM,) * 8)
    upgraded = reveal(public, fake)  # claiming the link sits higher in the chain does not help
    full = reveal(public, key)
    hidden = to_model_coordinates(torch.zeros_like(full, dtype=torch.bool).scatter(-1, public.positions, key.true_mask), key)
    past = hidden & (torch.arange(CODE_DIM) >= torch.tensor(grant.cutoffs)[:, None, None])
    assert past.sum() > 50 and (upgraded[past] == full[past]).float().mean() < 0.02


def test_restricting_a_restricted_keyed_key_further():
    codes, public, key = keyed_share()
    half = restrict(public, key, 0.5)
    quarter = restrict(public, half, 0.5)
    half_revealed = reveal(public, half)
    quarter_revealed = reveal(public, quarter)
    for image, (cutoff, lower) in enumerate(zip(half.cutoffs, quarter.cutoffs, strict=True)):
        assert lower <= cutoff
        assert quarter.links[image] == link_below(half.links[image], cutoff, lower)
        assert torch.equal(quarter_revealed[image], torch.where(torch.arange(CODE_DIM) < lower, half_revealed[image], torch.zeros(())))
        assert int((quarter_revealed[image] != 0).sum()) >= kept_count(int((half_revealed[image] != 0).sum()), 0.5)
    assert torch.equal(reveal(public, half, 0.5), quarter_revealed)
    loaded = Key.from_bytes(quarter.to_bytes())
    assert torch.equal(reveal(public, loaded), quarter_revealed) and quarter.granted < half.granted < key.granted
    assert all(link not in quarter.to_bytes() for link in half.links if link not in quarter.links)


def test_open_values_marks_what_a_key_can_read():
    codes, public, key = keyed_share(images=4)
    values, readable = open_values(public, key)
    assert readable.all()
    grant = restrict(public, key, 0.25)
    granted_values, granted_readable = open_values(public, grant)
    positions = model_positions(public, key)
    assert torch.equal(granted_readable, positions < torch.tensor(grant.cutoffs)[:, None, None])
    assert torch.equal(granted_values[granted_readable], values[granted_readable])
    assert (granted_values[~granted_readable] == 0).all()


# --- what the bytes of a keyed code look like -----------------------------------------------------------


def test_keyed_value_bytes_look_uniform_and_the_papers_do_not():
    codes = sparse_codes(images=128)
    keyed, _ = ambiguate(codes, CODE_DIM, gen(), **SCHEMES["keyed"].options())
    paper, _ = ambiguate(codes, CODE_DIM, gen(), **SCHEMES["paper"].options())
    assert len(value_bytes(keyed)) == len(value_bytes(paper)) == 128 * GROUPS * CODE_DIM
    assert byte_pvalue(value_bytes(keyed)) > 0.001
    assert byte_pvalue(value_bytes(paper)) < 1e-6
    wide, _ = ambiguate(codes, CODE_DIM, gen(), keyed=True, value_bits=16)
    low, high = value_bytes(wide)[0::2], value_bytes(wide)[1::2]
    assert byte_pvalue(low) > 0.001 and byte_pvalue(high) > 0.001
    scale_bytes = np.frombuffer(keyed.scale_cipher.numpy().astype("<u2").tobytes(), dtype=np.uint8)
    assert byte_pvalue(scale_bytes[1::2]) > 0.001  # even the high bytes of the scales (float16 exponents)


def test_two_keyed_shares_of_the_same_code_are_unrelated():
    codes = sparse_codes(images=128)
    first, _ = ambiguate(codes, CODE_DIM, gen(1), keyed=True, value_bits=8, permute=False)
    second, _ = ambiguate(codes, CODE_DIM, gen(2), keyed=True, value_bits=8, permute=False)
    a, b = value_bytes(first), value_bytes(second)
    assert abs((a == b).mean() - 1 / 256) < 0.002
    assert abs(np.corrcoef(a.astype(float), b.astype(float))[0, 1]) < 0.03
    assert byte_pvalue(a ^ b) > 0.001
    # the check can fail: two shares with the same root and nonce (pad reuse) are related
    root, nonce = bytes(range(32)), bytes(12)
    reused = [ambiguate(codes, CODE_DIM, gen(seed), keyed=True, value_bits=8, root=root, nonce=nonce)[0] for seed in (1, 2)]
    assert byte_pvalue(value_bytes(reused[0]) ^ value_bytes(reused[1])) < 1e-6
    # and two shares in the clear have their true values in common
    paper = [ambiguate(codes, CODE_DIM, gen(seed), **(SCHEMES["paper"].options() | dict(value_bits=16)))[0] for seed in (1, 2)]
    common = (paper[0].values.sort(-1).values[..., :, None] == paper[1].values[..., None, :]).any(-1).sum(-1)
    assert (common >= K).all()


def test_fingerprints_differ_between_shares_and_name_the_content():
    codes = sparse_codes(images=2)
    first, key = ambiguate(codes, 16, gen(1), keyed=True)
    second, _ = ambiguate(codes, 16, gen(2), keyed=True)
    assert first.fingerprint() != second.fingerprint() and len(first.short_id()) == 8
    assert first.fingerprint() == hashlib.sha256(b"sae/public-code/v2" + first.to_bytes()[:-4]).digest()[:16] == key.fingerprint
