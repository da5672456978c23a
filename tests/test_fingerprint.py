"""A model's identity (sae.core.fingerprint): the SHA-256 of its weights, the same wherever the weights came from."""

from __future__ import annotations

import copy

import torch

from sae.core.fingerprint import model_id, tensor_digest, weights_digest
from sae.core.model import SparseAutoencoder
from tests.conftest import TINY


def test_digest_is_hex_sha256_and_the_model_id_its_first_eight_bytes(tiny_model):
    digest = weights_digest(tiny_model)
    assert len(digest) == 64 and int(digest, 16) >= 0
    assert model_id(tiny_model) == bytes.fromhex(digest)[:8] and len(model_id(tiny_model)) == 8


def test_stable_across_save_load_and_copies(tiny_model, tmp_path):
    digest = weights_digest(tiny_model)
    assert weights_digest(tiny_model) == digest  # cached, and the cache gives the same answer
    tiny_model.save_pretrained(tmp_path)
    assert weights_digest(SparseAutoencoder.from_pretrained(tmp_path, strict=True)) == digest
    assert weights_digest(copy.deepcopy(tiny_model)) == digest
    assert weights_digest(tiny_model.train()) == digest  # the mode is not a weight


def test_changes_when_a_weight_changes(tiny_model):
    before = weights_digest(tiny_model)
    with torch.no_grad():
        tiny_model.encoder_bias[0, 0] += 1e-3  # one number, in place: the cache must notice
    changed = weights_digest(tiny_model)
    assert changed != before
    with torch.no_grad():
        tiny_model.encoder_bias[0, 0] -= 1e-3
    assert weights_digest(tiny_model) == before  # the same numbers again: the same digest


def test_changes_when_weights_are_loaded_or_replaced(tiny_model):
    before = weights_digest(tiny_model)
    torch.manual_seed(1)
    other = SparseAutoencoder(**TINY)
    assert weights_digest(other) != before  # same architecture, other weights
    loaded = copy.deepcopy(tiny_model)
    assert weights_digest(loaded) == before
    loaded.load_state_dict(other.state_dict())  # copied in place
    assert weights_digest(loaded) == weights_digest(other)
    # new tensors instead of in-place copies: both fresh models went through the same initialisation steps, so their
    # tensors' version counters sum to the same number, and a cache keyed on that sum alone would miss the change
    tiny_model.load_state_dict(other.state_dict(), assign=True)
    assert weights_digest(tiny_model) == weights_digest(other)


def test_the_architecture_counts_not_only_the_numbers():
    torch.manual_seed(0)
    untied = SparseAutoencoder(**TINY)
    torch.manual_seed(0)
    tied = SparseAutoencoder(**(TINY | {"tied": True}))
    assert weights_digest(untied) != weights_digest(tied)


def test_the_tensor_digest_sees_every_value_shape_and_type():
    faces = torch.rand(3, 3, 8, 8)
    digest = tensor_digest(faces)
    assert tensor_digest(faces.clone()) == digest
    changed = faces.clone()
    changed[2, 1, 7, 7] += 1e-6
    assert tensor_digest(changed) != digest
    assert tensor_digest(faces.reshape(3, 3, 64)) != digest and tensor_digest(faces.double()) != digest
    assert tensor_digest(faces[:2], faces[2:]) != digest
