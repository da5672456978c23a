"""The straight path from a face tensor to reconstructions and numbers, batched.

A face is encoded once; every k (or every panel) is one batched decode of the cached codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sae.metrics import psnr, ssim
from sae.model import SparseAutoencoder


@dataclass(frozen=True)
class EncodedFace:
    """A model input (1, 3, 64, 64) and its dense codes (1, num_groups, code_dim)."""

    image: torch.Tensor
    codes: torch.Tensor


@torch.inference_mode()
def encode_face(model: SparseAutoencoder, image: torch.Tensor) -> EncodedFace:
    return EncodedFace(image, model.encode(image))


@torch.inference_mode()
def decode_many(model: SparseAutoencoder, sparse_codes: torch.Tensor) -> torch.Tensor:
    """(N, L, m) sparse codes -> (N, 3, H, W) images in one decoder call."""
    return model.decode(sparse_codes)


def sparsify_each(model: SparseAutoencoder, codes: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """One face's dense codes (1, L, m) -> (len(ks), L, m) sparse codes, row i keeping ks[i] per group.

    One stable sort serves every k: row i keeps the ks[i] first entries of the magnitude order, which is
    exactly `model.sparsify(codes, ks[i])`.
    """
    order = torch.sort(codes.abs(), dim=-1, descending=True, stable=True).indices  # (1, L, m)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(codes.shape[-1]).expand_as(order))
    keep = rank < torch.tensor(ks).view(-1, 1, 1)  # (N, L, m)
    return torch.where(keep, codes, torch.zeros(()))


@dataclass(frozen=True)
class QualityCurve:
    ks: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray


def quality_curve(model: SparseAutoencoder, face: EncodedFace, ks: list[int] | None = None) -> QualityCurve:
    """PSNR and SSIM of the reconstruction at every k (default 1..k_max), one batched decode."""
    ks = list(range(1, model.k_max + 1)) if ks is None else ks
    images = decode_many(model, sparsify_each(model, face.codes, ks))
    reference = face.image.expand_as(images)
    return QualityCurve(np.array(ks), psnr(reference, images), ssim(reference, images))
