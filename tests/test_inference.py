"""The model over many faces in chunks (sae.core.inference): chunked equals unchunked."""

from __future__ import annotations

import pytest
import torch

from sae.core.inference import BATCH, decode_batched, encode_batched, sparse_codes


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(7, 3, 64, 64, generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("batch", [1, 3, 7, BATCH])
def test_chunked_encode_and_decode_equal_one_pass(tiny_model, images, batch):
    with torch.no_grad():
        dense = tiny_model.encode(images)
        sparse = tiny_model.sparsify(dense, 4)
        decoded = tiny_model.decode(sparse)
    torch.testing.assert_close(encode_batched(tiny_model, images, batch), dense, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(decode_batched(tiny_model, sparse, batch), decoded, atol=1e-5, rtol=0)
    assert encode_batched(tiny_model, images, batch).shape == (7, tiny_model.num_groups, tiny_model.code_dim)


@pytest.mark.parametrize("batch", [2, BATCH])
def test_sparse_codes_are_k_sparse_and_float16_exact(tiny_model, images, batch):
    codes = sparse_codes(tiny_model, images, 5, batch)
    assert codes.dtype == torch.float32 and ((codes != 0).sum(-1) == 5).all()
    assert torch.equal(codes, codes.half().float())  # what a 16-bit public code stores exactly
    with torch.no_grad():
        expected = tiny_model.sparsify(tiny_model.encode(images), 5).half().float()
    torch.testing.assert_close(codes, expected, atol=1e-3, rtol=1e-3)
    assert ((codes != 0) == (expected != 0)).float().mean() > 0.99


def test_results_carry_no_autograd_history(tiny_model, images):
    for result in (encode_batched(tiny_model, images), decode_batched(tiny_model, sparse_codes(tiny_model, images, 2))):
        assert not result.requires_grad


def test_decoded_images_are_in_the_unit_range(tiny_model, images):
    decoded = decode_batched(tiny_model, sparse_codes(tiny_model, images, 3), 4)
    assert decoded.shape == images.shape and decoded.min() >= 0 and decoded.max() <= 1
