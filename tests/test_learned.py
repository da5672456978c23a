"""Attackers that learn from public codes of their own faces (sae.privacy.learned): the per-entry scorer, the ridge
regression, the MLP inversion and the linear probe."""

from __future__ import annotations

import pytest
import torch

from sae.core.model import SparseAutoencoder, topk_by_magnitude
from sae.privacy.attacks import inversion_attack, learned_attack, regression_attack, support_recovery
from sae.privacy.learned import (
    CompactRegression,
    Inversion,
    LearnedAttack,
    LinearProbe,
    RegressionAttack,
    fit_inversion,
    fit_learned_attack,
    fit_linear_probe,
    fit_regression_attack,
    inversion_features,
    public_features,
    shared_values,
)
from sae.privacy.linkage import majority_rate
from sae.privacy.scheme import SCHEMES, ambiguate
from tests.conftest import TINY

K, K_PRIME = 8, 16
PAPER, KEYED = SCHEMES["paper"].options(), SCHEMES["keyed"].options()


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def recovery(code, public, key) -> float:
    return float(support_recovery(code, public, key).mean())


@pytest.fixture(scope="module")
def model() -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(**TINY).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(64, 3, 64, 64, generator=gen(0))


@pytest.fixture(scope="module")
def train_codes(model, images) -> torch.Tensor:
    """The attacker's own faces' sparse codes."""
    with torch.no_grad():
        return model.sparsify(model.encode(images), K)


@pytest.fixture(scope="module")
def codes(train_codes) -> torch.Tensor:
    return train_codes.half().float()


@pytest.fixture(scope="module")
def factors() -> dict[str, torch.Tensor]:
    """Synthetic faces with signal: 8x8 images and sparse codes that are both linear in six hidden factors."""
    generator = gen(0)
    z = torch.randn(480, 6, generator=generator)
    images = (0.5 + 0.08 * z @ torch.randn(6, 3 * 8 * 8, generator=generator)).clamp(0, 1).reshape(480, 3, 8, 8)
    codes = topk_by_magnitude((z @ torch.randn(6, 4 * 32, generator=generator)).reshape(480, 4, 32), K)
    return dict(images=images, codes=codes, train=slice(0, 400), test=slice(400, 480))


def mean_face_error(factors) -> float:
    train, test = factors["images"][factors["train"]], factors["images"][factors["test"]]
    return float(((test - train.mean(0)) ** 2).mean())


# --- the learned scorer ------------------------------------------------------------------------------


def test_learned_attack_is_at_chance_under_the_secret_permutation(train_codes, codes):
    attacker = fit_learned_attack(train_codes, K_PRIME, 60, gen(3), batch_size=32, hidden=32, permute=True)
    public, key = ambiguate(codes, K_PRIME, gen(4), permute=True)
    assert abs(recovery(learned_attack(public, K, attacker), public, key) - 0.5) < 0.08


def test_learned_attack_breaks_the_reference_decoys(train_codes, codes):
    attacker = fit_learned_attack(train_codes, K_PRIME, 60, gen(3), batch_size=32, hidden=32, decoy_values="reference")
    assert isinstance(attacker, LearnedAttack) and not attacker.training
    public, key = ambiguate(codes, K_PRIME, gen(4), decoy_values="reference")
    assert recovery(learned_attack(public, K, attacker), public, key) > 0.9
    soft = learned_attack(public, K, attacker, soft=True)
    assert ((soft != 0) <= public.support()).all()
    assert (soft.abs() <= public.dense().abs()).all()


def test_learned_attack_is_at_chance_on_keyed_codes_even_with_the_reference_decoys(train_codes, codes):
    options = KEYED | dict(decoy_values="reference", permute=False)
    attacker = fit_learned_attack(train_codes, K_PRIME, 30, gen(3), batch_size=32, hidden=32, **options)
    public, key = ambiguate(codes, K_PRIME, gen(4), **options)
    assert abs(recovery(learned_attack(public, K, attacker), public, key) - 0.5) < 0.08


def test_learned_attack_training_is_reproducible_and_logs(train_codes):
    def train(log=None):
        return fit_learned_attack(train_codes[:16], K_PRIME, 3, gen(3), batch_size=8, hidden=8, log=log)

    losses = []
    first, second = train(), train(lambda step, loss: losses.append((step, loss)))
    for a, b in zip(first.parameters(), second.parameters(), strict=True):
        assert torch.equal(a, b)
    assert [step for step, _ in losses] == [0, 1, 2] and all(loss > 0 for _, loss in losses)


def test_learned_attack_refuses_another_code_shape(train_codes):
    attacker = fit_learned_attack(train_codes[:16], K_PRIME, 1, gen(3), batch_size=8, hidden=8)
    other, _ = ambiguate(topk_by_magnitude(torch.randn(2, 4, 16), K), K_PRIME, gen())
    with pytest.raises(ValueError, match="another code shape"):
        attacker(other)
    public, _ = ambiguate(train_codes[:2], K_PRIME, gen())
    assert attacker(public).shape == public.positions.shape


# --- the regression -------------------------------------------------------------------------------------


def test_regression_attack_decodes_public_codes_to_images_without_the_model(codes, images):
    public, _ = ambiguate(codes[:16], K_PRIME, gen(5), permute=True, signs="balanced")
    attacker = fit_regression_attack(codes, images, K_PRIME, gen(4), permute=True, signs="balanced")
    assert isinstance(attacker, RegressionAttack)
    decoded = regression_attack(public, attacker)
    assert decoded.shape == (16, 3, 64, 64) and 0 <= decoded.min() and decoded.max() <= 1
    assert attacker.ridge in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)


def test_compact_regression_predicts_the_same_at_full_rank_and_is_smaller_below(codes, images):
    attacker = fit_regression_attack(codes, images, K_PRIME, gen(4), **PAPER)
    public, _ = ambiguate(codes[:8], K_PRIME, gen(5), **PAPER)
    full = regression_attack(public, attacker)
    compact = attacker.compact(rank=64)
    assert isinstance(compact, CompactRegression) and compact.rank == 64
    assert compact.weights.shape[0] == public_features(public, 1.0).shape[1]
    assert torch.allclose(regression_attack(public, compact), full, atol=1e-4)
    small = attacker.compact(rank=4)
    assert small.rank == 4 and small.weights.numel() < attacker.train_features.numel()
    assert not torch.allclose(regression_attack(public, small), full, atol=1e-4)


def test_regression_beats_the_mean_face_where_the_code_carries_the_face(factors):
    train, test = factors["train"], factors["test"]
    options = dict(permute=False)  # values and positions in the clear
    attacker = fit_regression_attack(factors["codes"][train], factors["images"][train], K_PRIME, gen(4), **options)
    public, _ = ambiguate(factors["codes"][test], K_PRIME, gen(5), **options)
    error = float(((regression_attack(public, attacker, (3, 8, 8)) - factors["images"][test]) ** 2).mean())
    assert error < 0.5 * mean_face_error(factors)


def test_public_features_are_the_dense_code_and_the_sorted_values(codes):
    public, _ = ambiguate(codes[:3], K_PRIME, gen(), permute=True)
    features = public_features(public, 2.0)
    assert features.dtype == torch.float64 and features.shape == (3, 4 * 32 + 4 * K_PRIME)
    assert torch.equal(features[:, : 4 * 32], (public.dense().flatten(1) / 2.0).double())
    assert torch.equal(features[:, 4 * 32 :], (public.values.sort(-1).values.flatten(1) / 2.0).double())


# --- the inversion ------------------------------------------------------------------------------------


def inversion_error(factors, options: dict, steps: int = 300, batch_size: int = 64, pair: bool = False) -> float:
    train, test = factors["train"], factors["test"]
    inversion = fit_inversion(
        factors["codes"][train], factors["images"][train], K_PRIME, steps, gen(1),
        pair=pair, batch_size=batch_size, hidden=64, rank=8, check_every=50, **options,
    )  # fmt: skip
    assert isinstance(inversion, Inversion) and not inversion.training and inversion.pair == pair
    generator = gen(2)
    public = ambiguate(factors["codes"][test], K_PRIME, generator, **options)[0]
    other = ambiguate(factors["codes"][test], K_PRIME, generator, **options)[0] if pair else None
    predicted = inversion_attack(public, inversion, other)
    assert predicted.shape == (80, 3, 8, 8) and 0 <= predicted.min() and predicted.max() <= 1
    return float(((predicted - factors["images"][test]) ** 2).mean())


def test_inversion_beats_the_mean_face_where_the_code_carries_the_face(factors):
    assert inversion_error(factors, dict(permute=False)) < 0.25 * mean_face_error(factors)


def test_a_second_share_helps_the_inversion_of_values_in_the_clear(factors):
    options = PAPER | dict(value_bits=16)  # exact values: what two shares have in common is the true code
    single = inversion_error(factors, options)
    paired = inversion_error(factors, options, pair=True)
    assert paired < 0.8 * single and paired < 0.8 * mean_face_error(factors)


def test_inversion_learns_nothing_from_keyed_codes(factors):
    assert inversion_error(factors, KEYED, steps=40, batch_size=32) > 0.95 * mean_face_error(factors)


def test_inversion_reads_as_many_shares_as_it_was_trained_on(factors):
    codes, images = factors["codes"][:64], factors["images"][:64]
    single = fit_inversion(codes, images, K_PRIME, 2, gen(1), batch_size=16, hidden=8, rank=4, **PAPER)
    paired = fit_inversion(codes, images, K_PRIME, 2, gen(1), pair=True, batch_size=16, hidden=8, rank=4, **PAPER)
    first, _ = ambiguate(codes[:4], K_PRIME, gen(2), **PAPER)
    second, _ = ambiguate(codes[:4], K_PRIME, gen(3), **PAPER)
    assert single.predict(first).shape == paired.predict(first, second).shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="two shares"):
        paired.predict(first)
    with pytest.raises(ValueError, match="one share"):
        single.predict(first, second)
    with pytest.raises(ValueError, match="two shares"):
        inversion_attack(first, paired)


def test_shared_values_and_inversion_features(codes):
    options = PAPER | dict(value_bits=16)
    first, key = ambiguate(codes[:4], K_PRIME, gen(1), **options)
    second, _ = ambiguate(codes[:4], K_PRIME, gen(2), **options)
    common = shared_values(first, second)
    assert ((common != 0).sum(-1) >= K).all()  # at least the true values are in both
    assert ((common != 0) | ~key.true_mask).all() and torch.equal(common[common != 0], first.values[common != 0])
    assert inversion_features(first, 1.0).shape == (4, 4 * 32 + 4 * K_PRIME)
    assert inversion_features(first, 1.0, second).shape == (4, 4 * 32 + 3 * 4 * K_PRIME)


# --- the linear probe ---------------------------------------------------------------------------------


def test_linear_probe_reads_a_label_that_the_features_carry_and_not_one_they_do_not():
    generator = gen(0)
    features = torch.randn(400, 10, generator=generator)
    signal = (features[:, 0] + 0.3 * torch.randn(400, generator=generator) > 0).long()
    noise = torch.randint(0, 2, (400,), generator=generator)
    for labels, low, high in ((signal, 0.85, 1.0), (noise, 0.0, 0.65)):
        probe = fit_linear_probe(features[:300], labels[:300], gen(1), steps=50)
        assert isinstance(probe, LinearProbe) and probe.weight.shape == (10, 2)
        accuracy = float((probe.predict(features[300:]) == labels[300:]).float().mean())
        assert low < accuracy <= high
        if labels is signal:
            assert accuracy > majority_rate(labels[:300], labels[300:]) + 0.2


def test_linear_probe_falls_back_to_the_most_common_label_when_no_fit_beats_it_on_held_out_data():
    generator = gen(0)
    features = torch.randn(600, 40, generator=generator)
    labels = (torch.rand(600, generator=generator) < 0.3).long() * 2  # classes 0 and 2, 0 the most common, 1 unseen
    probe = fit_linear_probe(features[:400], labels[:400], gen(1), steps=50, decays=(1e-4, 1e-3))  # noise fits: clearly worse
    assert probe.decay is None and torch.equal(probe.weight, torch.zeros(40, 3))
    assert torch.equal(probe.predict(features[400:]), torch.zeros(200, dtype=torch.long))
    accuracy = float((probe.predict(features[400:]) == labels[400:]).float().mean())
    assert accuracy == majority_rate(labels[:400], labels[400:])


def test_linear_probe_handles_several_classes():
    generator = gen(0)
    centres = 3 * torch.randn(3, 5, generator=generator)
    labels = torch.randint(0, 3, (300,), generator=generator)
    features = centres[labels] + torch.randn(300, 5, generator=generator)
    probe = fit_linear_probe(features[:200], labels[:200], gen(1), steps=50)
    assert probe.predict(features[200:]).shape == (100,)
    assert float((probe.predict(features[200:]) == labels[200:]).float().mean()) > 0.8
