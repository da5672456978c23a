"""Relabeling code coordinates by importance (sae.core.ordering): reconstructions unchanged, most used first."""

from __future__ import annotations

import copy

import pytest
import torch

from sae.core.fingerprint import weights_digest
from sae.core.model import SparseAutoencoder
from sae.core.ordering import coordinate_importance, order_codes_by_importance
from tests.conftest import TINY

K = 4


def _images(count: int, seed: int) -> torch.Tensor:
    return torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


@pytest.fixture(params=[False, True], ids=["untied", "tied"])
def model(request) -> SparseAutoencoder:
    torch.manual_seed(0)
    model = SparseAutoencoder(**(TINY | {"tied": request.param})).eval()
    with torch.no_grad():  # a random encoder bias makes some coordinates far more used than others
        model.encoder_bias.copy_(torch.randn(model.num_groups, model.code_dim, generator=torch.Generator().manual_seed(1)))
    return model


def test_importance_is_the_mean_magnitude_in_k_sparse_codes(model):
    images = _images(10, 0)
    importance = coordinate_importance(model, images, K)
    with torch.no_grad():
        expected = model.sparsify(model.encode(images), K).abs().mean(0)
    assert importance.shape == (model.num_groups, model.code_dim)
    torch.testing.assert_close(importance, expected, atol=1e-6, rtol=1e-5)


def test_reordering_leaves_every_reconstruction_unchanged(model):
    original = copy.deepcopy(model)
    order = order_codes_by_importance(model, _images(20, 0), K)
    assert not torch.equal(order, torch.arange(model.code_dim).expand_as(order))  # something was relabeled
    held_out = _images(6, 1)
    with torch.no_grad():
        for k in (1, K, 9, model.k_max, model.code_dim):
            torch.testing.assert_close(model(held_out, k), original(held_out, k), atol=1e-5, rtol=0)
        old_codes, new_codes = original.encode(held_out), model.encode(held_out)
    # new coordinate j of group g was old coordinate order[g, j]
    torch.testing.assert_close(new_codes, old_codes.gather(-1, order.expand_as(old_codes)), atol=1e-5, rtol=1e-5)
    assert weights_digest(model) != weights_digest(original)  # a relabeled model is another model to a public code


def test_after_reordering_importance_is_sorted_descending(model):
    images = _images(20, 0)
    order = order_codes_by_importance(model, images, K)
    assert torch.equal(order.sort(-1).values, torch.arange(model.code_dim).expand_as(order))  # a permutation per group
    importance = coordinate_importance(model, images, K)
    assert (importance[:, :-1] >= importance[:, 1:] - 1e-6).all()
    assert (importance[:, 0] > importance[:, -1]).all()


def test_reordering_twice_changes_nothing_more(model):
    images = _images(20, 0)
    order_codes_by_importance(model, images, K)
    again = copy.deepcopy(model)
    second = order_codes_by_importance(again, images, K)
    assert torch.equal(second, torch.arange(model.code_dim).expand_as(second))
    assert weights_digest(again) == weights_digest(model)
