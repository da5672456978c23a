"""A face's share end to end over a model (sae.privacy.codec): the model is named, checked, and real shares use OS
entropy."""

from __future__ import annotations

import pytest
import torch

from sae.core.fingerprint import model_id
from sae.core.model import SparseAutoencoder
from sae.privacy.codec import check_fits, decode_share, share_codes
from sae.privacy.formats import Key, KeyMismatchError, PublicCode
from sae.privacy.scheme import SCHEMES, UNNAMED_MODEL, ambiguate, reveal
from tests.conftest import TINY

K, K_PRIME = 4, 16


def gen(seed: int = 1) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="module")
def model() -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(**TINY).eval()


@pytest.fixture(scope="module")
def other_model() -> SparseAutoencoder:
    torch.manual_seed(1)
    return SparseAutoencoder(**TINY).eval()  # the same code shape, other weights


@pytest.fixture(scope="module")
def dense(model) -> torch.Tensor:
    with torch.no_grad():
        return model.encode(torch.rand(3, 3, 64, 64, generator=gen(0)))


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_a_real_share_draws_nothing_from_a_seeded_generator(model, dense, scheme, monkeypatch):
    """Without a generator every draw and secret comes from os.urandom: torch's generators (32-bit seeds) are never used,
    and two real shares of the same code differ in every secret and every decoy."""
    import os

    from sae.privacy import randomness

    calls = []
    real_urandom = os.urandom
    monkeypatch.setattr(randomness.os, "urandom", lambda n: calls.append(n) or real_urandom(n))
    for name in ("rand", "randn", "randint", "multinomial"):
        monkeypatch.setattr(torch, name, lambda *a, _name=name, **k: pytest.fail(f"a real share called torch.{_name}"))
    first, first_key = share_codes(model, dense, K, K_PRIME, scheme)
    second, second_key = share_codes(model, dense, K, K_PRIME, scheme)
    assert calls and sum(calls) >= 32
    assert first.to_bytes() != second.to_bytes() and first_key.to_bytes() != second_key.to_bytes()
    if scheme == "keyed":
        assert first.nonce != second.nonce and first_key.root != second_key.root
    else:
        assert first_key.secret != second_key.secret
    monkeypatch.undo()
    # the same face behind both (the paper's 8-bit scale spans its decoys too, so its levels may differ by one step)
    torch.testing.assert_close(reveal(first, first_key), reveal(second, second_key), atol=0.02, rtol=0)


@pytest.mark.parametrize("scheme", list(SCHEMES))
def test_share_codes_names_the_model_and_decodes_for_the_key_holder(model, dense, scheme):
    public, key = share_codes(model, dense, K, K_PRIME, scheme, gen())
    assert public.model_id == model_id(model) != UNNAMED_MODEL and public.keyed == SCHEMES[scheme].keyed
    assert public.k_prime == K_PRIME and key.k == K and public.value_bits == SCHEMES[scheme].value_bits
    with torch.no_grad():
        sparse = model.sparsify(dense, K)
    revealed = reveal(public, key)
    assert torch.equal(revealed != 0, sparse != 0)
    assert torch.allclose(revealed, sparse, atol=float(sparse.abs().max()) / 100)  # 8-bit levels
    with torch.no_grad():
        assert torch.equal(decode_share(model, public, key), model.decode(revealed))
        assert torch.equal(decode_share(model, public, key, 0.5), model.decode(reveal(public, key, 0.5)))
    again = PublicCode.from_bytes(public.to_bytes())
    assert again.model_id == model_id(model)
    check_fits(model, again)


def test_share_codes_is_reproducible_with_a_generator_and_fresh_without(model, dense):
    first = share_codes(model, dense, K, K_PRIME, "keyed", gen(3))
    second = share_codes(model, dense, K, K_PRIME, "keyed", gen(3))
    assert first[0].to_bytes() == second[0].to_bytes() and first[1].to_bytes() == second[1].to_bytes()
    real = [share_codes(model, dense, K, K_PRIME, "keyed") for _ in range(2)]
    assert real[0][1].root != real[1][1].root and real[0][0].nonce != real[1][0].nonce
    assert real[0][0].to_bytes() != real[1][0].to_bytes()
    assert torch.equal(reveal(*real[0]), reveal(*real[1]))  # the same face all the same
    paper = [share_codes(model, dense, K, K_PRIME, "paper") for _ in range(2)]
    assert paper[0][1].secret != paper[1][1].secret


def test_share_codes_takes_overrides_of_the_schemes_options(model, dense):
    public, key = share_codes(model, dense, K, K_PRIME, "keyed", gen(), value_bits=16, permute=False)
    assert public.value_bits == 16 and not public.permuted and key.secret is None
    public, key = share_codes(model, dense, K, K, "paper", gen(), permute=False, value_bits=32)
    with torch.no_grad():
        assert torch.equal(reveal(public, key), model.sparsify(dense, K))  # no decoys, 32-bit: the code itself


def test_check_fits_rejects_a_code_of_another_model(model, other_model, dense):
    public, key = share_codes(model, dense, K, K_PRIME, "keyed", gen())
    check_fits(model, public)
    assert model_id(other_model) != model_id(model)
    with pytest.raises(KeyMismatchError, match="another model"):
        check_fits(other_model, public)
    with pytest.raises(KeyMismatchError, match="another model"):
        decode_share(other_model, public, key)
    wider = SparseAutoencoder(**(TINY | dict(code_dim=48))).eval()
    with pytest.raises(KeyMismatchError, match="groups of"):
        check_fits(wider, public)
    relabelled = PublicCode(**(vars(public) | dict(model_id=model_id(other_model))))
    check_fits(other_model, relabelled)  # the label fits, but the key no longer opens the edited code
    with pytest.raises(KeyMismatchError, match="fingerprint"):
        decode_share(other_model, relabelled, key)


def test_unnamed_and_version_1_codes_fit_any_model_of_their_shape(model, other_model, dense):
    with torch.no_grad():
        sparse = model.sparsify(dense, K)
    unnamed, key = ambiguate(sparse, K_PRIME, gen(), value_bits=32)
    for candidate in (model, other_model):
        check_fits(candidate, unnamed)
    v1 = PublicCode.from_bytes(PublicCode(**(vars(unnamed) | dict(model_id=b"", version=1))).to_bytes())
    assert v1.version == 1 and v1.model_id == b""
    check_fits(other_model, v1)
    v1_key = Key(key.true_mask, key.code_dim, v1.fingerprint(), version=1)
    with torch.no_grad():
        assert torch.equal(decode_share(other_model, v1, v1_key), other_model.decode(sparse))
