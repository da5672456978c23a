from __future__ import annotations

import pytest
import torch

from sae.core.init import channel_layout, pca_init
from sae.core.metrics import psnr
from sae.core.model import SparseAutoencoder

WIDE = dict(image_size=64, num_groups=4, code_dim=32, k_max=32, channels=[48], blocks=1, group_channels=3, stem=4)


def smooth_faces(n: int, seed: int = 0) -> torch.Tensor:
    """Low-rank, smooth images: a PCA start must reconstruct them well from few codes."""
    generator = torch.Generator().manual_seed(seed)
    basis = torch.nn.functional.interpolate(torch.rand(6, 3, 8, 8, generator=generator), size=64, mode="bilinear")
    weights = torch.rand(n, 6, generator=generator)
    return (0.2 + 0.6 * torch.einsum("nb,bchw->nchw", weights, basis) / 6).clamp(0, 1)


@pytest.fixture(params=[True, False], ids=["tied", "untied"])
def fitted(request) -> tuple[SparseAutoencoder, torch.Tensor]:
    torch.manual_seed(0)
    images = smooth_faces(64)
    return pca_init(SparseAutoencoder(**(WIDE | {"tied": request.param})), images).eval(), images


def test_channel_layout():
    assert channel_layout(SparseAutoencoder(**WIDE)) == (2, 1)  # 2 shared axes + 1 own axis per group
    assert channel_layout(SparseAutoencoder(**(WIDE | {"group_channels": 1}))) == (1, 0)
    # 20 groups with 6 maps: 5 shared + 20 own axes of the 48 a 4x4 patch has
    assert channel_layout(SparseAutoencoder(**(WIDE | {"num_groups": 20, "group_channels": 6}))) == (5, 1)


def test_codes_are_centred_and_zero_code_decodes_to_the_mean_face(fitted):
    model, images = fitted
    with torch.no_grad():
        codes = model.encode(images)
        torch.testing.assert_close(codes.mean(0), torch.zeros_like(codes[0]), atol=1e-4, rtol=0)
        mean_face = model.decode(torch.zeros_like(codes[:1]))
    assert psnr(images.mean(0, keepdim=True), mean_face).item() > 35


def test_the_started_model_is_linear(fitted):
    model, _ = fitted
    generator = torch.Generator().manual_seed(1)
    a, b = torch.randn(2, 1, 4, 32, generator=generator)
    with torch.no_grad():
        zero = model.decode_unclamped(torch.zeros_like(a))
        combined = model.decode_unclamped(2 * a - b) - zero
        separate = 2 * (model.decode_unclamped(a) - zero) - (model.decode_unclamped(b) - zero)
    torch.testing.assert_close(combined, separate, atol=1e-4, rtol=1e-4)


def test_group_codes_are_orthonormal_projections(fitted):
    model, _ = fitted
    weight = model.encoder_weight.detach().double()  # (groups, features, code)
    gram = weight.transpose(1, 2) @ weight
    used = gram.diagonal(dim1=1, dim2=2) > 0.5
    assert used.sum() >= 4 * 8
    for g in range(4):
        block = gram[g][used[g]][:, used[g]]
        torch.testing.assert_close(block, torch.eye(len(block), dtype=block.dtype), atol=1e-6, rtol=0)


def test_quality_grows_with_k_and_beats_the_mean_face(fitted):
    model, images = fitted
    with torch.no_grad():
        scores = [psnr(images, model(images, k=k)).mean().item() for k in (1, 2, 8, 32)]
    mean_face = psnr(images, images.mean(0, keepdim=True).expand_as(images)).mean().item()
    assert all(later >= earlier - 1e-3 for earlier, later in zip(scores, scores[1:], strict=False))  # equal once the 6 components are in
    assert scores[2] > scores[0] + 1
    assert scores[0] > mean_face + 3
    assert scores[-1] > 40  # six smooth components: nearly exact at full k


def test_rejects_a_model_it_cannot_start():
    with pytest.raises(ValueError, match="single-resolution"):
        pca_init(SparseAutoencoder(**(WIDE | {"channels": [48, 64]})), smooth_faces(4))
    with pytest.raises(ValueError, match="every local axis"):  # 4 groups x 1 own axis + the shared ones need > 4 channels
        pca_init(SparseAutoencoder(**(WIDE | {"channels": [4]})), smooth_faces(4))


def test_a_width_below_the_patch_carries_the_strongest_axes_and_starts_the_same_code(fitted):
    """A stem narrower than its patch (3 x 8 x 8 at stem 8) passes on only the local axes the groups read: the linear
    code and reconstruction match those of a full-width model started on the same faces."""
    model, images = fitted
    narrow = SparseAutoencoder(**(WIDE | {"channels": [model.group_channels - 1 + model.num_groups]}))
    pca_init(narrow, images)
    with torch.no_grad():
        torch.testing.assert_close(narrow.encode(images), model.encode(images), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(narrow(images, k=8), model(images, k=8), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("blocks, decoder_blocks", [(1, 0), (0, 2), (2, 1)])
def test_a_decoder_with_its_own_block_count_starts_the_same_code_and_reconstruction(fitted, blocks, decoder_blocks):
    """Residual blocks start as identity wherever they are, so any block counts give the same linear start."""
    model, images = fitted
    other = SparseAutoencoder(**(WIDE | {"tied": model.decoder_weight is None, "blocks": blocks, "decoder_blocks": decoder_blocks}))
    pca_init(other, images)
    with torch.no_grad():
        torch.testing.assert_close(other.encode(images), model.encode(images), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(other(images, k=8), model(images, k=8), atol=1e-4, rtol=1e-4)
