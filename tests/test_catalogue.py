"""The one list of attacks (sae.privacy.catalogue): every entry runs on a tiny model and says what it needs."""

from __future__ import annotations

import pytest
import torch

from sae.core.model import SparseAutoencoder
from sae.privacy.attacks import chance_level, support_recovery
from sae.privacy.catalogue import ATTACKS, CODE, EXTRA_ATTACKS, IMAGE, INVERSION, REGRESSION, SCORER, AttackContext
from sae.privacy.learned import fit_inversion, fit_learned_attack, fit_regression_attack
from sae.privacy.scheme import SCHEMES, ambiguate
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
    return torch.rand(48, 3, 64, 64, generator=gen(0))


@pytest.fixture(scope="module")
def codes(model, images) -> torch.Tensor:
    with torch.no_grad():
        return model.sparsify(model.encode(images), K)


@pytest.fixture(scope="module", params=list(SCHEMES))
def scheme(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def fitted(codes, images, scheme) -> dict[str, object]:
    """Tiny fitted parts of an attacker, trained on the first 40 faces under the scheme attacked."""
    options = SCHEMES[scheme].options()
    train_codes, train_images = codes[:40], images[:40]
    return {
        SCORER: fit_learned_attack(train_codes, K_PRIME, 2, gen(3), batch_size=8, hidden=8, **options),
        REGRESSION: fit_regression_attack(train_codes, train_images, K_PRIME, gen(4), **options),
        INVERSION: fit_inversion(train_codes, train_images, K_PRIME, 2, gen(5), batch_size=8, hidden=8, rank=4, **options),
    }


@pytest.fixture(scope="module")
def share(codes, scheme):
    """A public code of the 8 held-out faces and its key."""
    return ambiguate(codes[40:], K_PRIME, gen(6), **SCHEMES[scheme].options())


def context(share, model, **fields) -> AttackContext:
    public, _ = share
    return AttackContext(public=public, k=K, model=model, generator=gen(7), **fields)


def test_the_catalogue_names_each_attack_once_with_what_it_makes_and_needs():
    names = ["decode as is", "guess", "magnitude", "re-encode", "learned (keep k)", "learned (soft)", "regression", "inversion"]
    assert list(ATTACKS) == names
    for name, attack in ATTACKS.items():
        assert attack.name == name and attack.title and attack.summary and attack.makes in (CODE, IMAGE)
        assert attack.needs in (None, SCORER, REGRESSION, INVERSION)
    assert {name: attack.needs for name, attack in ATTACKS.items() if attack.needs} == {
        "learned (keep k)": SCORER,
        "learned (soft)": SCORER,
        "regression": REGRESSION,
        "inversion": INVERSION,
    }
    assert [name for name, attack in ATTACKS.items() if attack.makes == IMAGE] == ["regression", "inversion"]
    assert set(EXTRA_ATTACKS) <= set(ATTACKS)


def test_available_says_whether_the_fitted_part_is_there():
    for attack in ATTACKS.values():
        if attack.needs is None:
            assert attack.available({}) and attack.available({SCORER: None})
        else:
            assert not attack.available({}) and not attack.available({attack.needs: None})
            assert attack.available({attack.needs: object()})
            others = {need: object() for need in (SCORER, REGRESSION, INVERSION) if need != attack.needs}
            assert not attack.available(others)


def test_every_attack_runs_and_returns_a_code_or_images(share, model, fitted):
    public, _ = share
    for attack in ATTACKS.values():
        result = attack.run(context(share, model, fitted=fitted))
        if attack.makes == CODE:
            assert result.shape == (8, model.num_groups, model.code_dim)
            assert ((result != 0) <= public.support()).all()  # a code in the public code's coordinates
            with torch.no_grad():
                assert model.decode(result).shape == (8, 3, 64, 64)
        else:
            assert result.shape == (8, 3, 64, 64) and 0 <= result.min() and result.max() <= 1


def test_attacks_that_need_a_fitted_part_fail_without_it(share, model):
    for attack in ATTACKS.values():
        if attack.needs is not None:
            with pytest.raises(KeyError):
                attack.run(context(share, model))


def test_guess_with_a_known_fraction_needs_the_key_and_raises_recovery(share, model):
    public, key = share
    guess = ATTACKS["guess"]
    blind = guess.run(context(share, model))
    assert ((blind != 0).sum(-1) <= K).all()
    with pytest.raises(ValueError, match="needs the key"):
        guess.run(context(share, model, known_fraction=0.5))
    informed = guess.run(context(share, model, known_fraction=0.5, key=key))
    chance = chance_level(K, K_PRIME)
    assert abs(float(support_recovery(blind, public, key).mean()) - chance) < 0.12
    assert float(support_recovery(informed, public, key).mean()) > chance + 0.15


def test_magnitude_picks_the_better_side_when_it_has_the_true_faces(share, model, images):
    magnitude = ATTACKS["magnitude"]
    smallest = magnitude.run(context(share, model))
    best = magnitude.run(context(share, model, target=images[40:]))
    assert ((smallest != 0).sum(-1) <= K).all() and ((best != 0).sum(-1) <= K).all()  # a keyed level may be 0
    with torch.no_grad():
        errors = [float(((model.decode(code) - images[40:]) ** 2).mean()) for code in (smallest, best)]
    assert errors[1] <= errors[0]


def test_attack_context_image_shape(share, model):
    assert context(share, model).image_shape == (3, 64, 64)
