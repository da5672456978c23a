"""Relabel each group's code coordinates so that the ones faces use most come first.

Top-k by magnitude does not care how a group's coordinates are numbered, so permuting them (the encoder's output
columns and biases, the decoder's input rows) leaves every reconstruction unchanged. The order matters to a keyed
share's restricted keys (`sae.privacy.scheme.restrict`): they unlock a prefix of the coordinates, so the prefix
should hold what matters most. Importance is each coordinate's mean magnitude in the k-sparse codes of training faces.
"""

from __future__ import annotations

import torch

from sae.core.inference import encode_batched
from sae.core.model import SparseAutoencoder


@torch.no_grad()
def coordinate_importance(model: SparseAutoencoder, images: torch.Tensor, k: int) -> torch.Tensor:
    """(L, m) mean |value| of each coordinate in the k-sparse codes of `images` (N, 3, H, W) in [0, 1]."""
    return model.sparsify(encode_batched(model, images), k).abs().mean(0)


@torch.no_grad()
def order_codes_by_importance(model: SparseAutoencoder, images: torch.Tensor, k: int) -> torch.Tensor:
    """Permute `model`'s coordinates in place, most important first per group; returns the (L, m) order applied
    (new coordinate j of group g was old coordinate order[g, j])."""
    order = coordinate_importance(model, images, k).argsort(dim=-1, descending=True, stable=True)
    model.encoder_weight.copy_(model.encoder_weight.gather(-1, order[:, None, :].expand_as(model.encoder_weight)))
    model.encoder_bias.copy_(model.encoder_bias.gather(-1, order))
    if model.decoder_weight is not None:
        model.decoder_weight.copy_(model.decoder_weight.gather(1, order[:, :, None].expand_as(model.decoder_weight)))
    return order
