"""Image quality metrics: PSNR and SSIM as scikit-image defines them, batched, with one convention.

Convention: images are float arrays in [0, 1], shape (B, 3, H, W) or (3, H, W), compared with `data_range=1`. One
reference may be scored against a batch of estimates (its statistics are then computed once). The range must be
explicit: for float input, old scikit-image releases assumed a range of 2 (the span of [-1, 1]), which inflates SSIM
(the 2022 report's SSIMs came out high that way). PSNR of identical images is `inf`, reported as such; it never
raises.
"""

from __future__ import annotations

import numpy as np
import torch

DATA_RANGE = 1.0
WINDOW = 7  # scikit-image's default SSIM window
K1, K2 = 0.01, 0.03  # scikit-image's SSIM constants


def _images(images: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    """(B,3,H,W) or (3,H,W) float tensors/arrays -> a (B,3,H,W) torch copy in `dtype`, clipped to [0, 1].

    Integer images are refused, not guessed: their range is not [0, 1] (`sae.core.data.as_float` converts uint8).
    Arrays are copied, so any strides, byte order or read-only buffer is fine."""
    array = None if isinstance(images, torch.Tensor) else np.asarray(images)
    floating = images.is_floating_point() if array is None else array.dtype.kind == "f"
    if not floating:
        kind = images.dtype if array is None else array.dtype
        raise ValueError(f"expected float images in [0, 1], got {kind} (convert with sae.core.data.as_float)")
    if array is None:
        tensor = images.detach().cpu().to(dtype)
    else:
        tensor = torch.from_numpy(np.array(array, dtype=np.float64 if dtype == torch.float64 else np.float32))
    if tensor.ndim == 3:
        tensor = tensor[None]
    if tensor.ndim != 4 or tensor.shape[1] != 3:
        raise ValueError(f"expected images of shape (B, 3, H, W) or (3, H, W), got {tuple(tensor.shape)}")
    return tensor.clamp(0.0, 1.0)


def _pairs(reference, estimate, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The two sides as (B, 3, H, W) tensors; a reference of batch 1 stays batch 1 (it broadcasts over the estimates)."""
    ref, est = _images(reference, dtype), _images(estimate, dtype)
    if ref.shape[1:] != est.shape[1:] or len(ref) not in (1, len(est)):
        raise ValueError(f"shape mismatch: {tuple(ref.shape)} vs {tuple(est.shape)}")
    return ref, est


def psnr(reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image PSNR in dB (inf for identical images), shape (B,) for B estimates.

    Vectorised over the batch; per image it is exactly skimage's `peak_signal_noise_ratio`
    with data_range=1 (tests check the equality), minus its divide-by-zero warning.
    """
    ref, est = _pairs(reference, estimate, torch.float64)
    mse = ((ref - est) ** 2).mean(dim=(1, 2, 3)).numpy()
    with np.errstate(divide="ignore"):
        return 10 * np.log10(DATA_RANGE**2 / mse)


def _window_means(stack: torch.Tensor) -> torch.Tensor:
    """Means over every WINDOW x WINDOW window that lies inside the image ("valid"): two strided views summed, one
    axis at a time (a box filter is separable; no padded copies)."""
    rows = stack.unfold(-1, WINDOW, 1).sum(-1)
    return rows.unfold(-2, WINDOW, 1).sum(-1) / (WINDOW * WINDOW)


def ssim(reference: torch.Tensor | np.ndarray, estimate: torch.Tensor | np.ndarray) -> np.ndarray:
    """Per-image SSIM with scikit-image's defaults (7x7 uniform window, sample covariance, K1 0.01, K2 0.03, colour
    channels averaged), shape (B,) for B estimates: per-image `structural_similarity(..., data_range=1,
    channel_axis=-1)` to within a few 1e-6 (tests check it), far under the three decimals any table prints.

    scikit-image averages the SSIM map over the interior, (WINDOW - 1) / 2 pixels in from every border, where each
    window lies inside the image, so its border padding never counts: window means over the "valid" windows give
    exactly that interior. They come from box sums, of the whole batch at once, in float32: the app scores dozens of
    images per face and four per slider move, against one reference whose own sums (x, x²) are then taken once. Each
    image channel is centred on its mean first (variances and covariances do not change), so E[x²] - E[x]² does not
    cancel away float32's digits on a bright, flat patch.
    """
    x, y = _pairs(reference, estimate, torch.float32)
    if min(x.shape[-2:]) < WINDOW:
        raise ValueError(f"images must be at least {WINDOW}x{WINDOW} for SSIM, got {tuple(x.shape[-2:])}")
    x_mean, y_mean = x.mean(dim=(-2, -1), keepdim=True), y.mean(dim=(-2, -1), keepdim=True)
    x, y = x - x_mean, y - y_mean
    ux, uxx = _window_means(torch.stack([x, x * x]))
    uy, uyy, uxy = _window_means(torch.stack([y, y * y, x * y]))
    norm = WINDOW * WINDOW / (WINDOW * WINDOW - 1)  # sample covariance, as scikit-image's default
    vx, vy, vxy = norm * (uxx - ux * ux), norm * (uyy - uy * uy), norm * (uxy - ux * uy)
    ux, uy = ux + x_mean, uy + y_mean
    c1, c2 = (K1 * DATA_RANGE) ** 2, (K2 * DATA_RANGE) ** 2
    index = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return index.mean(dim=(1, 2, 3), dtype=torch.float64).numpy()


def score(reference: torch.Tensor, estimate: torch.Tensor) -> dict[str, float]:
    """Mean PSNR (dB) and SSIM over a batch: the cell every results table shows."""
    return {"psnr": float(np.mean(psnr(reference, estimate))), "ssim": float(np.mean(ssim(reference, estimate)))}
