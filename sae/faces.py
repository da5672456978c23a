"""Arbitrary photos -> the model's 64x64 input: orientation, colour mode, size limits, square crop.

Uploads in a classroom are anything: EXIF-rotated phone photos, RGBA, grayscale, CMYK, 16-bit
PNGs, huge images. Everything funnels through `load_photo` and `face_input` so training,
evaluation and the app share one preprocessing (`sae.data.preprocess`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from sae.data import preprocess, to_float

MAX_PIXELS = 40_000_000  # beyond this an upload is refused before decoding (decompression bombs)
MIN_SIDE = 16


class PhotoError(ValueError):
    """An upload that cannot be used as a face photo; the message is meant for the user."""


def load_photo(source: str | Path | Image.Image | np.ndarray) -> Image.Image:
    """Open a photo as upright 8-bit RGB, refusing what is not an image, too small or too large."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(_to_uint8(source))
    elif isinstance(source, Image.Image):
        image = source
    else:
        try:
            with Image.open(source) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise PhotoError(f"image is {opened.width}x{opened.height}; at most {MAX_PIXELS // 1_000_000} megapixels are accepted")
                opened.load()
                image = opened.copy()
        except Image.DecompressionBombError as error:
            raise PhotoError("image is too large to decode safely") from error
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, PhotoError):
                raise
            raise PhotoError(f"not a readable image file ({error.__class__.__name__})") from error
    if image.width * image.height > MAX_PIXELS:
        raise PhotoError(f"image is {image.width}x{image.height}; at most {MAX_PIXELS // 1_000_000} megapixels are accepted")
    image = ImageOps.exif_transpose(image)
    if min(image.size) < MIN_SIDE:
        raise PhotoError(f"image is {image.width}x{image.height}; a face needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return _to_rgb(image)


def _to_uint8(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    if np.issubdtype(array.dtype, np.floating):
        return (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return (array.astype(np.float64) * 255 / max(1, np.iinfo(array.dtype).max)).round().astype(np.uint8)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; 16-bit images are scaled down, transparency is composited on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        array = np.asarray(image, dtype=np.float64)
        image = Image.fromarray((array * 255 / max(1.0, 65535.0 if array.max() > 255 else 255.0)).round().astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, rgba)
    return image.convert("RGB")


def centre_square(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The largest centred square box of an image."""
    width, height = size
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return (left, top, left + side, top + side)


def face_input(photo: Image.Image, box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """A photo (and the crop box around its face, default centre square) -> (1, 3, 64, 64) floats in [0, 1]."""
    return to_float(preprocess(photo, box or centre_square(photo.size)))[None]
