"""Attacks on public codes (sae.privacy.attacks): fair decoys hold at chance, the reference decoys do not."""

from __future__ import annotations

import pytest
import torch

from sae.core.model import SparseAutoencoder
from sae.privacy.attacks import (
    LearnedAttack,
    chance_level,
    decoy_attack,
    fit_regression_attack,
    keep_by_score,
    learned_attack,
    magnitude_attack,
    permutation_attack,
    reencode_attack,
    regression_attack,
    support_recovery,
    train_learned_attack,
)
from sae.privacy.scheme import ambiguate, reveal

torch.set_num_threads(1)

K, K_PRIME = 8, 16


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model() -> SparseAutoencoder:
    torch.manual_seed(0)
    tiny = SparseAutoencoder(num_groups=4, code_dim=32, k_max=16, channels=[16], blocks=1, group_channels=1, stem=4, image_size=64)
    return tiny.eval()


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


def test_value_attacks_are_near_chance_for_fair_decoys(codes):
    public, key = ambiguate(codes, K_PRIME, gen())
    chance = chance_level(K, K_PRIME)
    assert abs(recovery(permutation_attack(public, K, gen(2)), public, key) - chance) < 0.06
    for mode in ("smallest", "largest"):
        assert abs(recovery(magnitude_attack(public, K, mode), public, key) - chance) < 0.06


def test_magnitude_attack_breaks_the_reference_decoys(codes, model):
    public, key = ambiguate(codes, K_PRIME, gen(), decoys="reference")
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


def test_reencode_and_learned_attacks_are_at_chance_under_the_secret_permutation(codes, model, images):
    public, key = ambiguate(codes, K_PRIME, gen(), permute=True)
    assert abs(recovery(reencode_attack(public, K, model, iterations=2), public, key) - 0.5) < 0.06
    attacker = train_learned_attack(model, images, K, K_PRIME, 60, gen(3), batch_size=32, hidden=32, permute=True)
    public, key = ambiguate(codes, K_PRIME, gen(4), permute=True)
    assert abs(recovery(learned_attack(public, K, attacker), public, key) - 0.5) < 0.08


def test_learned_attack_breaks_the_reference_decoys(codes, model, images):
    attacker = train_learned_attack(model, images, K, K_PRIME, 60, gen(3), batch_size=32, hidden=32, decoys="reference")
    assert isinstance(attacker, LearnedAttack) and not attacker.training
    public, key = ambiguate(codes, K_PRIME, gen(4), decoys="reference")
    assert recovery(learned_attack(public, K, attacker), public, key) > 0.9
    soft = learned_attack(public, K, attacker, soft=True)
    assert ((soft != 0) <= public.support()).all()
    assert (soft.abs() <= public.dense().abs()).all()


def test_learned_attack_training_is_reproducible(codes, model, images):
    def train():
        return train_learned_attack(model, images[:16], K, K_PRIME, 3, gen(3), batch_size=8, hidden=8)

    first, second = train(), train()
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)


def test_attacks_work_when_every_position_is_public(codes, model):
    public, key = ambiguate(codes, 32, gen())
    chance = chance_level(K, 32)
    for code in (magnitude_attack(public, K, "largest"), permutation_attack(public, K, gen(2))):
        assert (kept_per_group(code) == K).all()
        assert abs(recovery(code, public, key) - chance) < 0.06
    assert (kept_per_group(reencode_attack(public, K, model)) == K).all()


def test_regression_attack_decodes_public_codes_to_images_without_the_model(codes, images):
    public, _ = ambiguate(codes[:16], K_PRIME, gen(5), permute=True, signs="balanced")
    attacker = fit_regression_attack(codes, images, K_PRIME, gen(4), permute=True, signs="balanced")
    decoded = regression_attack(public, attacker)
    assert decoded.shape == (16, 3, 64, 64) and 0 <= decoded.min() and decoded.max() <= 1
    assert attacker.ridge in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
