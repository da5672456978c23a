"""Attacks on public codes (sae.privacy.attacks): fair decoys hold at chance, the reference decoys do not, keyed codes
leave nothing to attack."""

from __future__ import annotations

import pytest
import torch

from sae.core.model import SparseAutoencoder
from sae.privacy.attacks import (
    chance_level,
    decoy_attack,
    keep_by_score,
    magnitude_attack,
    permutation_attack,
    reencode_attack,
    support_recovery,
    true_mask_dense,
)
from sae.privacy.scheme import SCHEMES, ambiguate, restrict, reveal
from tests.conftest import TINY

K, K_PRIME = 8, 16


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model() -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(**TINY).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(64, 3, 64, 64, generator=gen(0))


@pytest.fixture(scope="module")
def codes(model, images) -> torch.Tensor:
    with torch.no_grad():
        return model.sparsify(model.encode(images), K).half().float()


def recovery(code, public, key) -> float:
    return float(support_recovery(code, public, key).mean())


def kept_per_group(code: torch.Tensor) -> torch.Tensor:
    return (code != 0).sum(-1)


def test_support_recovery_and_chance_level(codes):
    public, key = ambiguate(codes, K_PRIME, gen())
    assert chance_level(K, K_PRIME) == 0.5
    assert recovery(reveal(public, key), public, key) == 1.0
    assert recovery(decoy_attack(public), public, key) == chance_level(K, K_PRIME)
    assert torch.equal(decoy_attack(public), public.dense())
    mask = true_mask_dense(public, key)
    assert torch.equal(mask, reveal(public, key) != 0) and (mask.sum(-1) == K).all()
    assert torch.equal(support_recovery(torch.zeros_like(codes), public, key), torch.zeros(len(codes)))  # nothing kept


def test_attacks_keep_k_public_entries_with_their_public_values(codes, model):
    public, _key = ambiguate(codes, K_PRIME, gen())
    dense = public.dense()
    attacked = [
        permutation_attack(public, K, gen()),
        magnitude_attack(public, K, "smallest"),
        magnitude_attack(public, K, "largest"),
        reencode_attack(public, K, model),
    ]
    for code in attacked:
        assert (kept_per_group(code) == K).all()
        assert torch.equal(code[code != 0], dense[code != 0])
    with pytest.raises(ValueError):
        keep_by_score(public, public.values, K_PRIME + 1)
    with pytest.raises(ValueError, match="mode"):
        magnitude_attack(public, K, "median")


def test_keep_by_score_keeps_the_highest_scores_and_breaks_ties_by_position(codes):
    public, _ = ambiguate(codes[:2], K_PRIME, gen())
    scores = torch.zeros(public.positions.shape)
    scores[..., -1] = 1.0
    kept = keep_by_score(public, scores, 3)  # the last entry, then the two lowest positions
    expected = public.positions[..., [-1, 0, 1]]
    assert torch.equal(kept != 0, torch.zeros_like(kept, dtype=torch.bool).scatter(-1, expected, True) & (public.dense() != 0))


def test_value_attacks_are_near_chance_for_fair_decoys(codes):
    public, key = ambiguate(codes, K_PRIME, gen())
    chance = chance_level(K, K_PRIME)
    assert abs(recovery(permutation_attack(public, K, gen(2)), public, key) - chance) < 0.06
    for mode in ("smallest", "largest"):
        assert abs(recovery(magnitude_attack(public, K, mode), public, key) - chance) < 0.06


def test_magnitude_attack_breaks_the_reference_decoys(codes, model):
    public, key = ambiguate(codes, K_PRIME, gen(), decoy_values="reference")
    assert recovery(magnitude_attack(public, K, "smallest"), public, key) > 0.95
    with torch.no_grad():
        faces = model.decode(codes)  # what an untrained model makes of the true codes: "best" must pick the variant nearer
    best = magnitude_attack(public, K, "best", model=model, target=faces)
    assert recovery(best, public, key) > 0.95
    assert abs(recovery(permutation_attack(public, K, gen(2)), public, key) - 0.5) < 0.06  # blind guessing
    with pytest.raises(ValueError):
        magnitude_attack(public, K, "best")


def test_known_fraction_of_the_key_raises_recovery_as_expected(codes):
    public, key = ambiguate(codes, K_PRIME, gen())
    known = K // 2  # kept_count(8, 0.5)
    expected = (known + (K - known) * (K - known) / (K_PRIME - known)) / K  # the rest guessed among the others
    assert abs(recovery(permutation_attack(public, K, gen(2), 0.5, key), public, key) - expected) < 0.06
    largest = permutation_attack(public, K, gen(2), 0.5, key, known="largest")
    half = reveal(public, key, 0.5)  # a lower-fidelity key holder's entries are all kept
    assert torch.equal(largest[half != 0], half[half != 0])
    with pytest.raises(ValueError, match="needs the key"):
        permutation_attack(public, K, gen(), 0.5)
    with pytest.raises(ValueError, match="known"):
        permutation_attack(public, K, gen(), 0.5, key, known="smallest")


def test_attacks_work_when_every_position_is_public(codes, model):
    public, key = ambiguate(codes, 32, gen())
    chance = chance_level(K, 32)
    for code in (magnitude_attack(public, K, "largest"), permutation_attack(public, K, gen(2))):
        assert (kept_per_group(code) == K).all()
        assert abs(recovery(code, public, key) - chance) < 0.06
    assert (kept_per_group(reencode_attack(public, K, model)) == K).all()


def test_reencode_attack_is_at_chance_under_the_secret_permutation(codes, model):
    public, key = ambiguate(codes, K_PRIME, gen(), permute=True)
    assert abs(recovery(reencode_attack(public, K, model, iterations=2), public, key) - 0.5) < 0.06


@pytest.mark.parametrize("permute", [False, True])
def test_every_code_attack_is_at_chance_on_a_keyed_code_even_against_the_reference_decoys(codes, model, permute):
    """A keyed code's values are pads: the magnitude attack that breaks the reference decoys in the clear finds nothing."""
    public, key = ambiguate(codes, K_PRIME, gen(), keyed=True, value_bits=8, decoy_values="reference", permute=permute)
    chance = chance_level(K, K_PRIME)
    attacked = [
        permutation_attack(public, K, gen(2)),
        magnitude_attack(public, K, "smallest"),
        magnitude_attack(public, K, "largest"),
        reencode_attack(public, K, model),
    ]
    for code in attacked:
        assert abs(recovery(code, public, key) - chance) < 0.06
    assert recovery(decoy_attack(public), public, key) == pytest.approx(chance, abs=0.01)  # zero levels do not count


def test_known_fraction_on_a_keyed_code_and_a_restricted_key(codes):
    public, key = ambiguate(codes, K_PRIME, gen(), **SCHEMES["keyed"].options())
    known = K // 2
    expected = (known + (K - known) * (K - known) / (K_PRIME - known)) / K
    assert abs(recovery(permutation_attack(public, K, gen(2), 0.5, key), public, key) - expected) < 0.06
    grant = restrict(public, key, 0.5)  # a restricted key's holder knows only its granted entries
    assert (true_mask_dense(public, grant) <= true_mask_dense(public, key)).all()
    granted = public.dense() * true_mask_dense(public, grant)  # in public coordinates, what support_recovery scores
    assert 0 < int((granted != 0).sum()) < int(true_mask_dense(public, key).sum())
    assert recovery(granted, public, key) == 1.0
