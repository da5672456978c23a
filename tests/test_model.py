"""The sparse autoencoder (sae.core.model): top-k by magnitude, shapes, save/load, tied and untied decoders."""

from __future__ import annotations

import json

import pytest
import torch

from sae.core.model import SparseAutoencoder, topk_by_magnitude
from tests.conftest import TINY


def test_topk_golden():
    codes = torch.tensor([[0.5, -3.0, 2.0, 0.1, -2.0]])
    # 2.0 and -2.0 tie for second place: the lower index wins, the sign is kept
    assert topk_by_magnitude(codes, 2).tolist() == [[0.0, -3.0, 2.0, 0.0, 0.0]]
    assert topk_by_magnitude(codes, 3).tolist() == [[0.0, -3.0, 2.0, 0.0, -2.0]]
    assert topk_by_magnitude(codes, 5).tolist() == codes.tolist()


def test_topk_ties_broken_towards_lower_index():
    codes = torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert topk_by_magnitude(codes, 2).tolist() == [[1.0, -1.0, 0.0, 0.0]]


@pytest.mark.parametrize("k", [0, 1, 5, 31, 32])
def test_topk_keeps_exactly_k_largest(k):
    torch.manual_seed(1)
    codes = torch.randn(3, 4, 32)
    sparse = topk_by_magnitude(codes, k)
    assert ((sparse != 0).sum(-1) == k).all()
    kept = sparse != 0
    # kept entries are unchanged and every kept magnitude >= every dropped magnitude
    assert torch.equal(sparse[kept], codes[kept])
    if 0 < k < 32:
        smallest_kept = torch.where(kept, codes.abs(), torch.inf).amin(-1)
        largest_dropped = torch.where(kept, -torch.inf, codes.abs()).amax(-1)
        assert (smallest_kept >= largest_dropped).all()


def test_topk_rejects_bad_k():
    with pytest.raises(ValueError):
        topk_by_magnitude(torch.zeros(1, 4), 5)
    with pytest.raises(ValueError):
        topk_by_magnitude(torch.zeros(1, 4), -1)


def test_topk_passes_gradient_to_kept_entries_only():
    codes = torch.tensor([[3.0, -0.1, 2.0]], requires_grad=True)
    topk_by_magnitude(codes, 2).sum().backward()
    assert codes.grad.tolist() == [[1.0, 0.0, 1.0]]


def test_shapes_and_ranges(tiny_model):
    x = torch.rand(2, 3, 64, 64)
    codes = tiny_model.encode(x)
    assert codes.shape == (2, 4, 32)
    sparse = tiny_model.sparsify(codes, 3)
    assert ((sparse != 0).sum(-1) == 3).all()
    y = tiny_model.decode(sparse)
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert tiny_model(x).shape == x.shape
    assert tiny_model(x, k=1).shape == x.shape


def test_save_load_round_trip_strict(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = SparseAutoencoder.from_pretrained(tmp_path, strict=True)
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x, k=5), tiny_model(x, k=5))
    assert (loaded.num_groups, loaded.code_dim, loaded.k_max, loaded.image_size) == (4, 32, 16, 64)


@pytest.mark.parametrize("tied", [True, False])
def test_tied_and_untied(tied):
    model = SparseAutoencoder(**(TINY | {"tied": tied}))
    names = {name for name, _ in model.named_parameters()}
    assert ("decoder_weight" in names) is not tied
    assert model.group_decoder_weight.shape == (4, 32, 256)


def test_a_tied_decoder_is_the_group_linear_map_of_the_transposed_encoder_weight_and_trains_it():
    model = SparseAutoencoder(**(TINY | {"tied": True}))
    codes = model.sparsify(torch.randn(3, 4, 32), 5)
    groups = torch.einsum("blm,lmd->bld", codes, model.encoder_weight.transpose(1, 2)) + model.decoder_bias
    expected = model.decoder(groups.reshape(3, -1, model.map_size, model.map_size))
    torch.testing.assert_close(model.decode_unclamped(codes), expected, atol=1e-6, rtol=1e-5)
    model.decode_unclamped(codes).square().sum().backward()
    assert model.encoder_weight.grad is not None and model.encoder_weight.grad.abs().sum() > 0


def test_invalid_config():
    with pytest.raises(ValueError):
        SparseAutoencoder(**(TINY | {"image_size": 62}))
    with pytest.raises(ValueError):
        SparseAutoencoder(**(TINY | {"k_max": 64}))


def test_batch_items_are_independent(tiny_model):
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        together = tiny_model(x, k=4)
        alone = tiny_model(x[1:2], k=4)
    torch.testing.assert_close(together[1:2], alone, atol=1e-5, rtol=1e-5)


def test_sparsify_is_topk_and_forward_uses_k_max_by_default(tiny_model):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        codes = tiny_model.encode(x)
        assert torch.equal(tiny_model.sparsify(codes, 3), topk_by_magnitude(codes, 3))
        assert torch.equal(tiny_model(x), tiny_model.decode(tiny_model.sparsify(codes, tiny_model.k_max)))
        unclamped = tiny_model(x, k=2, clamp=False)
        assert torch.equal(unclamped.clamp(0, 1), tiny_model(x, k=2))


def test_a_128_model_and_the_map_size():
    model = SparseAutoencoder(**(TINY | {"image_size": 128}))
    assert model.map_size == 32
    with torch.no_grad():
        assert model(torch.rand(1, 3, 128, 128), k=2).shape == (1, 3, 128, 128)


def test_decoder_blocks_give_the_decoder_its_own_count_and_round_trip(tmp_path):
    from sae.core.model import ResidualBlock

    model = SparseAutoencoder(**(TINY | {"blocks": 1, "decoder_blocks": 0}))
    assert sum(isinstance(layer, ResidualBlock) for layer in model.encoder) == 1
    assert not any(isinstance(layer, ResidualBlock) for layer in model.decoder)
    assert sum(isinstance(layer, ResidualBlock) for layer in SparseAutoencoder(**TINY).decoder) == 1  # default: blocks
    model.save_pretrained(tmp_path / "own")
    loaded = SparseAutoencoder.from_pretrained(tmp_path / "own", strict=True)
    assert [type(layer) for layer in loaded.decoder] == [type(layer) for layer in model.decoder]
    SparseAutoencoder(**TINY).save_pretrained(tmp_path / "default")  # the default is not written: older code loads it
    assert "decoder_blocks" not in json.loads((tmp_path / "default" / "config.json").read_text())
    assert json.loads((tmp_path / "own" / "config.json").read_text())["decoder_blocks"] == 0
