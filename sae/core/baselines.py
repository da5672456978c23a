"""Baselines the learned code must beat: PCA (first n, largest n), JPEG at equal size, mean face.

All take and return float images (B, 3, H, W) in [0, 1], like the model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image


@dataclass
class PCA:
    """Principal components of flattened training images: mean (D,) and components (n, D), rows orthonormal."""

    mean: torch.Tensor
    components: torch.Tensor

    @classmethod
    def fit(cls, images: torch.Tensor, num_components: int | None = None) -> PCA:
        """Fit on (N, 3, H, W) images through the N x N Gram matrix (N < D, so this is the cheap side)."""
        x = images.flatten(1).double()
        mean = x.mean(0)
        centred = x - mean
        eigenvalues, eigenvectors = torch.linalg.eigh(centred @ centred.T)
        order = eigenvalues.flip(0)
        keep = int((order > order[0] * 1e-12).sum()) if num_components is None else num_components
        values, vectors = order[:keep], eigenvectors.flip(1)[:, :keep]
        components = (centred.T @ vectors / values.sqrt()).T
        return cls(mean.float(), components.float().contiguous())

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> coefficients (B, n)."""
        return (images.flatten(1) - self.mean) @ self.components.T

    def inverse(self, coefficients: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        n = coefficients.shape[1]
        return (coefficients @ self.components[:n] + self.mean).reshape(shape).clamp(0, 1)

    def first_n(self, images: torch.Tensor, n: int) -> torch.Tensor:
        """Reconstruction from the n leading components (a linear code of n numbers)."""
        return self.inverse(self.transform(images)[:, :n], images.shape)

    def largest_n(self, images: torch.Tensor, n: int) -> torch.Tensor:
        """Reconstruction from each image's n largest-magnitude coefficients (a sparse code over the full basis)."""
        coefficients = self.transform(images)
        index = coefficients.abs().topk(min(n, coefficients.shape[1]), dim=1).indices
        sparse = torch.zeros_like(coefficients).scatter(1, index, coefficients.gather(1, index))
        return self.inverse(sparse, images.shape)


def mean_face(train_images: torch.Tensor, count: int) -> torch.Tensor:
    """The training mean face, repeated `count` times: the floor every method must clear."""
    return train_images.float().mean(0, keepdim=True).expand(count, -1, -1, -1)


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """One (H, W, 3) uint8 image as a whole Pillow JPEG file (headers included: that is what would be shared)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as image:
        return np.asarray(image.convert("RGB"))


def jpeg_fitting(image: np.ndarray, max_bytes: int) -> tuple[bytes, int]:
    """The highest-quality (1-95) whole file of at most `max_bytes` and its quality (quality 1 if none fits)."""
    low, high, best, best_quality = 1, 95, jpeg_bytes(image, 1), 1
    while low <= high:  # file size grows with quality: binary search the largest that fits
        quality = (low + high) // 2
        data = jpeg_bytes(image, quality)
        if len(data) <= max_bytes:
            best, best_quality, low = data, quality, quality + 1
        else:
            high = quality - 1
    return best, best_quality


def jpeg_at_size(images: torch.Tensor, max_bytes: int) -> tuple[torch.Tensor, np.ndarray]:
    """Each image as the highest-quality Pillow JPEG whole file of at most `max_bytes` (quality 1 if none fits).

    Returns the decoded images and each file's size in bytes.
    """
    uint8 = (images.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).numpy()
    files = [jpeg_fitting(image, max_bytes)[0] for image in uint8]
    decoded = np.stack([decode_jpeg(data) for data in files])
    return torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255, np.array([len(data) for data in files])
