"""Baselines (sae.core.baselines): PCA first n and largest n, JPEG at a byte budget, the mean face."""

from __future__ import annotations

import pytest
import torch

from sae.core.baselines import PCA, decode_jpeg, jpeg_at_size, jpeg_bytes, jpeg_fitting, mean_face
from sae.core.metrics import psnr


@pytest.fixture
def images() -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 16, 16, generator=generator)
    return (base + 0.2 * torch.rand(40, 3, 16, 16, generator=generator)).clamp(0, 1)


def test_pca_components_orthonormal_and_exact_with_all(images):
    pca = PCA.fit(images)
    gram = pca.components @ pca.components.T
    torch.testing.assert_close(gram, torch.eye(len(gram)), atol=1e-4, rtol=0)
    torch.testing.assert_close(pca.first_n(images, len(gram)), images, atol=1e-4, rtol=0)


def test_pca_more_components_is_better_and_largest_beats_first(images):
    pca = PCA.fit(images[:30])
    held_out = images[30:]
    first = [psnr(held_out, pca.first_n(held_out, n)).mean() for n in (2, 5, 10)]
    assert first[0] < first[1] < first[2]
    assert psnr(held_out, pca.largest_n(held_out, 5)).mean() >= first[1] - 1e-6


def test_jpeg_fits_the_byte_budget(images):
    decoded, sizes = jpeg_at_size(images[:3], 800)
    assert decoded.shape == images[:3].shape
    assert (sizes <= 800).all()
    better, bigger = jpeg_at_size(images[:3], 2000)
    assert psnr(images[:3], better).mean() >= psnr(images[:3], decoded).mean()


def test_jpeg_fitting_returns_the_largest_quality_that_fits(images):
    image = (images[0] * 255).round().byte().permute(1, 2, 0).numpy()
    data, quality = jpeg_fitting(image, 800)
    assert data == jpeg_bytes(image, quality) and len(data) <= 800
    assert quality == 95 or len(jpeg_bytes(image, quality + 1)) > 800
    assert decode_jpeg(data).shape == image.shape


def test_mean_face(images):
    mean = mean_face(images, 4)
    assert mean.shape == (4, 3, 16, 16)
    torch.testing.assert_close(mean[0], images.mean(0))


def test_pca_fitted_in_chunks_is_the_same_pca(images):
    """The Gram matrix and the components are summed over chunks of pixels: the chunk size changes nothing."""
    whole, chunked = PCA.fit(images, num_components=8), PCA.fit(images, num_components=8, chunk=100)
    torch.testing.assert_close(chunked.mean, whole.mean)
    torch.testing.assert_close(chunked.components, whole.components, atol=1e-4, rtol=0)
    torch.testing.assert_close(chunked.first_n(images, 8), whole.first_n(images, 8), atol=1e-5, rtol=0)


def test_pca_keeps_only_components_with_variance(images):
    """40 images have at most 39 directions of variance around their mean: no more components than that."""
    pca = PCA.fit(images)
    assert len(pca.components) <= 39 and PCA.fit(images, num_components=5).components.shape == (5, 3 * 16 * 16)


def test_transform_and_inverse_in_chunks_equal_one_pass(images):
    pca = PCA.fit(images, num_components=10)
    many = images.repeat(8, 1, 1, 1)  # 320 images: more than one chunk of 256
    coefficients = pca.transform(many)
    torch.testing.assert_close(coefficients, (many.flatten(1) - pca.mean) @ pca.components.T, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(pca.inverse(coefficients, many.shape), pca.first_n(many, 10))
