"""Image quality metrics (sae.core.metrics): PSNR and SSIM with data_range=1, equal to scikit-image per image."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from sae.core.metrics import psnr, score, ssim


def test_psnr_hand_computed():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.1)  # MSE 0.01 -> 20 dB
    assert psnr(a, b) == pytest.approx([20.0])


def test_psnr_identical_is_inf_without_crash():
    a = torch.rand(2, 3, 8, 8)
    values = psnr(a, a)
    assert np.isinf(values).all()
    assert math.isinf(score(a, a)["psnr"])  # honest, not capped


def test_ssim_identical_is_one_and_constant_shift_lowers_it():
    a = torch.rand(1, 3, 16, 16)
    assert ssim(a, a) == pytest.approx([1.0])
    assert ssim(a, (a + 0.2).clamp(0, 1))[0] < 1.0


def test_batched_equals_skimage_per_image():
    torch.manual_seed(0)
    a = torch.rand(3, 3, 32, 32)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    for i in range(3):
        ref, est = a[i].permute(1, 2, 0).double().numpy(), b[i].permute(1, 2, 0).double().numpy()
        assert psnr(a, b)[i] == pytest.approx(peak_signal_noise_ratio(ref, est, data_range=1))
        assert ssim(a, b)[i] == pytest.approx(structural_similarity(ref, est, data_range=1, channel_axis=-1))


def test_numpy_input_of_any_layout_equals_skimage():
    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 16, 16))
    b = np.clip(a + 0.05 * rng.standard_normal(a.shape), 0, 1)
    flipped, big_endian = b[..., ::-1], b.astype(">f8")  # negative strides, another byte order
    read_only = np.broadcast_to(a[:1], (2, 3, 16, 16))
    for estimate in (flipped, big_endian):
        for i in range(2):
            ref, est = a[i].transpose(1, 2, 0), np.ascontiguousarray(estimate[i].transpose(1, 2, 0), dtype=np.float64)
            assert ssim(a, estimate)[i] == pytest.approx(structural_similarity(ref, est, data_range=1, channel_axis=-1), abs=1e-6)
            assert psnr(a, estimate)[i] == pytest.approx(peak_signal_noise_ratio(ref, est, data_range=1))
    assert ssim(read_only, read_only) == pytest.approx([1.0, 1.0])


def test_bright_flat_images_keep_their_precision():
    """E[x²] - E[x]² in float32 loses digits on a bright, nearly flat patch; centring each channel keeps them."""
    rng = np.random.default_rng(1)
    a = 0.95 + 0.004 * rng.random((1, 3, 7, 7))
    b = 0.95 + 0.004 * rng.random((1, 3, 7, 7))
    expected = structural_similarity(a[0].transpose(1, 2, 0), b[0].transpose(1, 2, 0), data_range=1, channel_axis=-1)
    assert ssim(a, b)[0] == pytest.approx(expected, abs=1e-6)


def test_integer_images_are_refused_not_guessed():
    with pytest.raises(ValueError, match="float images"):
        ssim(torch.zeros(1, 3, 8, 8, dtype=torch.uint8), torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="as_float"):
        psnr(np.zeros((3, 8, 8), dtype=np.uint8), np.zeros((3, 8, 8), dtype=np.uint8))


def test_data_range_matters():
    """The report's bug: a range of 2 inflates SSIM for [0, 1] images; ours uses 1."""
    torch.manual_seed(0)
    a = torch.rand(1, 3, 32, 32)
    b = (a + 0.1 * torch.randn_like(a)).clamp(0, 1)
    ref, est = a[0].permute(1, 2, 0).double().numpy(), b[0].permute(1, 2, 0).double().numpy()
    inflated = structural_similarity(ref, est, data_range=2, channel_axis=-1)
    assert ssim(a, b)[0] < inflated


def test_single_image_and_shape_checks():
    a = torch.rand(3, 8, 8)
    assert psnr(a, a * 0.5).shape == (1,)
    with pytest.raises(ValueError):
        psnr(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError):
        ssim(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(ValueError, match="shape mismatch"):
        ssim(torch.rand(2, 3, 8, 8), torch.rand(3, 3, 8, 8))
    with pytest.raises(ValueError, match="shape mismatch"):  # only the reference broadcasts
        psnr(torch.rand(2, 3, 8, 8), torch.rand(1, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 7x7"):
        ssim(torch.rand(1, 3, 6, 8), torch.rand(1, 3, 6, 8))


def test_score_is_the_mean_psnr_and_ssim_of_a_batch():
    torch.manual_seed(0)
    a = torch.rand(4, 3, 16, 16)
    b = (a + 0.05 * torch.randn_like(a)).clamp(0, 1)
    result = score(a, b)
    assert set(result) == {"psnr", "ssim"} and all(isinstance(v, float) for v in result.values())
    assert result["psnr"] == pytest.approx(float(psnr(a, b).mean())) and result["ssim"] == pytest.approx(float(ssim(a, b).mean()))
    one = score(a[:1], b[:1])
    assert one == {"psnr": pytest.approx(float(psnr(a[:1], b[:1])[0])), "ssim": pytest.approx(float(ssim(a[:1], b[:1])[0]))}


def test_values_outside_the_unit_range_are_clipped_first():
    a = torch.zeros(1, 3, 8, 8)
    assert psnr(a, torch.full_like(a, -0.5)) == pytest.approx([np.inf]) and psnr(a, torch.full_like(a, 0.1)) == pytest.approx([20.0])


def test_one_reference_against_a_batch_equals_the_reference_repeated():
    torch.manual_seed(3)
    reference, estimates = torch.rand(3, 32, 32), torch.rand(5, 3, 32, 32)
    repeated = reference.expand_as(estimates)
    assert np.array_equal(psnr(reference, estimates), psnr(repeated, estimates))
    assert np.array_equal(ssim(reference[None], estimates), ssim(repeated, estimates))
    one = np.moveaxis(reference.numpy(), 0, -1)
    expected = [structural_similarity(one, np.moveaxis(e.numpy(), 0, -1), data_range=1, channel_axis=-1) for e in estimates]
    assert np.allclose(ssim(reference, estimates), expected, atol=1e-5)
