"""Linking public codes to faces (sae.privacy.linkage): the paper's values in the clear point to their face, keyed
codes do not; ranking, chance intervals, Fisherfaces and coarse statistics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sae.core.model import topk_by_magnitude
from sae.privacy.formats import PublicCode
from sae.privacy.linkage import (
    STATISTICS,
    IdentitySpace,
    attacker_levels,
    chance_interval,
    coarse_statistics,
    correlations,
    fit_identity_space,
    level_matches,
    majority_rate,
    nearest_distance,
    sorted_distance,
    top_rates,
)
from sae.privacy.scheme import SCHEMES, ambiguate, true_support

GROUPS, CODE_DIM, K, FACES = 4, 32, 8, 64


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def codes() -> torch.Tensor:
    generator = gen(0)
    dense = torch.randn(FACES, GROUPS, CODE_DIM, generator=generator)
    dense = dense * (0.5 + 2 * torch.rand(FACES, GROUPS, 1, generator=generator))
    return topk_by_magnitude(dense, K)


@pytest.fixture(scope="module")
def true_values(codes) -> torch.Tensor:
    """(A, L, k) what an attacker holding the faces computes: each face's true values (its own sparse code)."""
    return codes.gather(-1, true_support(codes))


CORRECT = torch.eye(FACES, dtype=torch.bool)  # face a's code is code a


def share(codes, scheme: str, seed: int = 1, **overrides) -> PublicCode:
    return ambiguate(codes, CODE_DIM, gen(seed), **(SCHEMES[scheme].options() | overrides))[0]


# --- ranking ----------------------------------------------------------------------------------------


def test_top_rates_counts_ties_against_the_attacker():
    scores = torch.tensor([[1.0, 1.0, 0.0], [0.0, 2.0, 2.0], [0.0, 0.0, 3.0]])
    correct = torch.eye(3, dtype=torch.bool)  # rows 0 and 1 tie a wrong column: second; row 2 is first
    assert top_rates(scores, correct, (1, 2, 3)) == {"top1": pytest.approx(1 / 3), "top2": 1.0, "top3": 1.0}
    assert top_rates(-scores, correct, (1, 2, 3)) == {"top1": 0.0, "top2": 0.0, "top3": 1.0}
    both = torch.tensor([[True, True, False]])  # two right answers tied at the top: a hit
    assert top_rates(torch.tensor([[1.0, 1.0, 0.0]]), both) == {"top1": 1.0, "top5": 1.0}
    assert top_rates(torch.zeros(2, 4), torch.eye(2, 4, dtype=torch.bool), (1, 4)) == {"top1": 0.0, "top4": 1.0}  # all tied


def test_chance_interval_is_the_binomial_central_interval():
    assert chance_interval(0.5, 100) == (0.4, 0.6)
    low, high = chance_interval(1 / 64, 64)
    assert low == 0.0 and 1 / 64 < high <= 4 / 64
    assert chance_interval(0.1, 1000, level=0.99)[0] < chance_interval(0.1, 1000)[0]


# --- level matches and distances ----------------------------------------------------------------------


def test_level_matches_and_nearest_distance_on_a_hand_made_code():
    levels = torch.tensor([[[-3.0, 1.0, 2.0, 5.0]]])
    public = PublicCode(torch.tensor([[[0, 2, 5, 7]]]), levels * 0.1, 8, value_bits=8, scales=torch.tensor([[0.1]]))
    attackers = torch.tensor([[[0.2, 0.5]], [[0.3, -0.1]]])  # levels (2, 5): both present; (3, -1): none
    assert level_matches(attackers, public).tolist() == [[2], [0]]
    assert torch.allclose(nearest_distance(attackers, public), torch.tensor([[0.0], [3.0]]), atol=1e-5)  # |3-2| + |-1-1|
    assert torch.equal(attacker_levels(attackers, torch.full((2, 1, 1), 0.1)), torch.tensor([[[[2.0, 5.0]]], [[[3.0, -1.0]]]]))
    wide = PublicCode(public.positions, levels * 0.1, 8)  # 16-bit values: no levels, distances in value units
    with pytest.raises(ValueError, match="integer levels"):
        level_matches(attackers, wide)
    assert torch.allclose(nearest_distance(attackers, wide), torch.tensor([[0.0], [0.3]]), atol=1e-5)


def test_the_papers_values_in_the_clear_point_to_their_face(codes, true_values):
    public = share(codes, "paper")
    matches = level_matches(true_values, public)
    assert matches.shape == (FACES, FACES) and (matches.diagonal() == GROUPS * K).all()
    assert top_rates(matches.float(), CORRECT) == {"top1": 1.0, "top5": 1.0}
    distance = nearest_distance(true_values, public)  # in levels: at most half a level per true value from its own code
    assert (distance.diagonal() <= 0.5 * GROUPS * K).all() and (distance.diagonal() < distance.mean(1) / 10).all()
    assert top_rates(-distance, CORRECT) == {"top1": 1.0, "top5": 1.0}
    wide = nearest_distance(true_values, share(codes, "paper", value_bits=16))  # float16 values: off by their rounding
    assert (wide.diagonal() < 0.05).all() and top_rates(-wide, CORRECT)["top1"] == 1.0


def test_keyed_codes_link_at_chance(codes, true_values):
    _, high = chance_interval(1 / FACES, FACES, level=0.999)  # several draws are checked: a wide interval keeps this from flaking
    for seed in (1, 2):
        public = share(codes, "keyed", seed)
        matches = level_matches(true_values, public)
        assert matches.diagonal().float().mean() < 2 * matches.float().mean()  # the right code holds no more matches
        assert top_rates(matches.float(), CORRECT)["top1"] <= high
        assert top_rates(-nearest_distance(true_values, public), CORRECT)["top1"] <= high
    wide = share(codes, "keyed", value_bits=16)
    assert top_rates(-nearest_distance(true_values, wide), CORRECT)["top1"] <= high


def test_sorted_distance_links_two_shares_in_the_clear_but_not_two_keyed_ones(codes):
    first, second = share(codes, "paper", 1), share(codes, "paper", 2)
    distance = sorted_distance(first, second)
    assert distance.shape == (FACES, FACES) and top_rates(-distance, CORRECT)["top1"] == 1.0
    assert sorted_distance(first, first).diagonal().abs().max() < 1e-4
    _, high = chance_interval(1 / FACES, FACES)
    keyed = sorted_distance(share(codes, "keyed", 1), share(codes, "keyed", 2))
    assert top_rates(-keyed, CORRECT)["top1"] <= high


def test_chunking_does_not_change_the_scores(codes, true_values, monkeypatch):
    import sae.privacy.linkage as linkage

    public = share(codes[:20], "paper")
    matches, distance = level_matches(true_values, public), nearest_distance(true_values, public)
    monkeypatch.setattr(linkage, "CHUNK", 7)
    assert torch.equal(level_matches(true_values, public), matches)
    assert torch.allclose(nearest_distance(true_values, public), distance)


# --- identity -----------------------------------------------------------------------------------------


def photos(base: torch.Tensor, nuisance: torch.Tensor, per_person: int, generator: torch.Generator):
    """Photos of each person: their face, plus a large random mix of nuisance patterns (lighting), plus noise."""
    identities = torch.arange(len(base)).repeat_interleave(per_person)
    mix = torch.randn(len(identities), len(nuisance), generator=generator) @ nuisance
    images = 0.5 + base[identities] + mix + 0.01 * torch.randn(len(identities), base.shape[1], generator=generator)
    return images.reshape(-1, 3, 8, 8), identities


def test_fisherfaces_separate_identities_that_raw_pixels_confuse():
    generator = gen(0)
    base = 0.05 * torch.randn(12, 3 * 8 * 8, generator=generator)
    nuisance = F.normalize(torch.randn(3, 3 * 8 * 8, generator=generator), dim=1)
    train, train_ids = photos(base, nuisance, 4, generator)
    test, test_ids = photos(base, nuisance, 2, generator)
    lonely = torch.rand(1, 3, 8, 8, generator=generator)  # one photo only: not used for the fit
    space = fit_identity_space(torch.cat([train, lonely]), torch.cat([train_ids, torch.tensor([99])]), pca_dims=40, lda_dims=11)
    assert isinstance(space, IdentitySpace) and space.projection.shape == (3 * 8 * 8, 11)
    assert torch.allclose(space.mean, train.flatten(1).double().mean(0))
    embedded_test, embedded_train = space.embed(test), space.embed(train)
    assert torch.allclose(embedded_test.norm(dim=1), torch.ones(len(test)))
    correct = test_ids[:, None] == train_ids[None]
    fisher = top_rates(embedded_test @ embedded_train.T, correct)["top1"]
    centred_test, centred_train = (F.normalize(x.flatten(1) - train.flatten(1).mean(0), dim=1) for x in (test, train))
    raw = top_rates(centred_test @ centred_train.T, correct)["top1"]
    assert fisher == 1.0 and raw < 0.8
    same = (embedded_test @ embedded_train.T)[correct].mean()
    other = (embedded_test @ embedded_train.T)[~correct].mean()
    assert same > 0.8 and other < 0.2


# --- attributes ---------------------------------------------------------------------------------------


def test_coarse_statistics_of_constructed_images():
    gray = torch.full((1, 3, 8, 8), 0.5)
    left = torch.zeros(1, 3, 8, 8)
    left[..., :4] = 1.0
    top = torch.zeros(1, 3, 8, 8)
    top[..., :4, :] = 1.0
    statistics = coarse_statistics(torch.cat([gray, left, top]))
    assert statistics.shape == (3, len(STATISTICS)) == (3, 3)
    assert torch.allclose(statistics, torch.tensor([[0.5, 0.0, 0.0], [0.5, 1.0, 0.0], [0.5, 0.0, 1.0]]))
    red = torch.zeros(1, 3, 8, 8)
    red[:, 0] = 0.9  # brightness is the mean over colour channels
    assert torch.allclose(coarse_statistics(red)[0], torch.tensor([0.3, 0.0, 0.0]))


def test_correlations_per_column_and_majority_rate():
    truth = torch.tensor([[1.0, 1.0, 5.0], [2.0, 2.0, 5.0], [3.0, 3.0, 5.0], [4.0, 4.0, 5.0]])
    predicted = torch.tensor([[2.0, 4.0, 1.0], [4.0, 3.0, 2.0], [6.0, 2.0, 3.0], [8.0, 1.0, 4.0]])
    assert correlations(predicted, truth) == pytest.approx([1.0, -1.0, 0.0])  # a constant column scores 0
    noisy = truth[:, 0] + torch.tensor([0.5, -0.5, -0.5, 0.5])
    assert 0 < correlations(noisy[:, None], truth[:, :1])[0] < 1
    assert majority_rate(torch.tensor([0, 1, 1, 1]), torch.tensor([1, 1, 0, 0])) == 0.5
