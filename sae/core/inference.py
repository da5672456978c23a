"""The model over many faces at once, in chunks, so a thousand faces never sit in one activation tensor.

Every tool that encodes or decodes a whole split goes through these (training's validation, the coordinate
ordering, evaluation, the privacy evaluation, fitting the shipped attacks).
"""

from __future__ import annotations

import torch

from sae.core.model import SparseAutoencoder

BATCH = 250


@torch.inference_mode()
def encode_batched(model: SparseAutoencoder, images: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> dense codes (N, L, m)."""
    return torch.cat([model.encode(chunk) for chunk in images.split(batch)])


@torch.inference_mode()
def decode_batched(model: SparseAutoencoder, codes: torch.Tensor, batch: int = BATCH) -> torch.Tensor:
    """(N, L, m) sparse codes -> images (N, 3, H, W) in [0, 1]."""
    return torch.cat([model.decode(chunk) for chunk in codes.split(batch)])


@torch.inference_mode()
def sparse_codes(model: SparseAutoencoder, images: torch.Tensor, k: int, batch: int = BATCH) -> torch.Tensor:
    """(N, 3, H, W) -> the k-sparse codes (N, L, m), rounded to float16 so 16-bit public codes hold them exactly."""
    return torch.cat([model.sparsify(model.encode(chunk), k) for chunk in images.split(batch)]).half().float()
