"""Baselines the learned code must beat: PCA (first n, largest n), JPEG at equal size, mean face.

All take and return float images (B, 3, H, W) in [0, 1], like the model.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from sae.core.data import as_float, to_uint8


@dataclass
class PCA:
    """Principal components of flattened training images: mean (D,) and components (n, D), rows orthonormal."""

    mean: torch.Tensor
    components: torch.Tensor

    @classmethod
    def fit(cls, images: torch.Tensor, num_components: int | None = None, chunk: int = 4096) -> PCA:
        """Fit on (N, 3, H, W) images through the N x N Gram matrix (N < D, so this is the cheap side).

        The data stay float32 and the Gram matrix is summed in float64 over chunks of pixels, so a whole UTKFace
        train split at 128x128 fits in memory; the components are built chunk by chunk the same way.
        """
        x = images.flatten(1).float()
        mean = x.double().mean(0)
        gram = torch.zeros(len(x), len(x), dtype=torch.float64)
        for start in range(0, x.shape[1], chunk):
            block = x[:, start : start + chunk].double() - mean[start : start + chunk]
            gram += block @ block.T
        eigenvalues, eigenvectors = torch.linalg.eigh(gram)
        del gram
        order = eigenvalues.flip(0)
        keep = int((order > order[0] * 1e-12).sum()) if num_components is None else num_components
        values, vectors = order[:keep], eigenvectors.flip(1)[:, :keep].contiguous()
        del eigenvectors
        components = torch.empty(keep, x.shape[1])
        for start in range(0, x.shape[1], chunk):
            block = x[:, start : start + chunk].double() - mean[start : start + chunk]
            components[:, start : start + chunk] = (block.T @ vectors / values.sqrt()).T.float()
        return cls(mean.float(), components)

    def transform(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> coefficients (B, n), a few hundred images at a time."""
        return torch.cat([(chunk.flatten(1) - self.mean) @ self.components.T for chunk in images.split(256)])

    def inverse(self, coefficients: torch.Tensor, shape: torch.Size) -> torch.Tensor:
        n = coefficients.shape[1]
        images = torch.cat([chunk @ self.components[:n] + self.mean for chunk in coefficients.split(256)])
        return images.reshape(shape).clamp(0, 1)

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
    """The training mean face (of float or uint8 images, summed in chunks), repeated `count` times: the floor every
    method must clear."""
    total = sum(as_float(chunk).sum(0, dtype=torch.float64) for chunk in train_images.split(1024))
    return (total / len(train_images)).float()[None].expand(count, -1, -1, -1)


def jpeg_bytes(image: np.ndarray, quality: int) -> bytes:
    """One (H, W, 3) uint8 image as a whole Pillow JPEG file (headers included: that is what would be shared)."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def decode_jpeg(data: bytes) -> np.ndarray:
    """JPEG file bytes -> (H, W, 3) uint8."""
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
    uint8 = to_uint8(images).permute(0, 2, 3, 1).numpy()
    files = [jpeg_fitting(image, max_bytes)[0] for image in uint8]
    decoded = np.stack([decode_jpeg(data) for data in files])
    return torch.from_numpy(decoded).permute(0, 3, 1, 2).float() / 255, np.array([len(data) for data in files])
