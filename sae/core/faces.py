"""Arbitrary photos -> the model's input: orientation, colour mode, size limits, square crop.

Uploads in a classroom are anything: EXIF-rotated phone photos, RGBA, grayscale, CMYK, 16-bit
PNGs, huge images. Everything funnels through `load_photo` and `face_input` so training,
evaluation and the app share one preprocessing (`sae.core.data.preprocess`).
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, ImageOps

from sae.core.data import IMAGE_SIZE, preprocess, to_float

MAX_PIXELS = 40_000_000  # beyond this an upload is refused before decoding (decompression bombs)
# A large JPEG (a phone photo) is decoded at a reduced scale (libjpeg's 1/2, or 1/4 under MAX_PIXELS) that keeps at
# least this many pixels on each side: the smallest face detection looks for (MIN_FACE of the shorter side), framed
# the tightest way (CROP_STYLES), must still span every model's input size (tests check it).
DECODE_SIDE = 1400
MIN_SIDE = 16


class PhotoError(ValueError):
    """An upload that cannot be used as a face photo; the message is meant for the user."""


def load_photo(source: str | Path | BinaryIO | Image.Image | np.ndarray) -> Image.Image:
    """Open a photo as upright 8-bit RGB, refusing what is not an image, too small or too large."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(_to_uint8(source))
    elif isinstance(source, Image.Image):
        image = source
    else:
        try:
            image = _open_checked(source)
        except Image.DecompressionBombError as error:
            raise PhotoError("image is too large to decode safely") from error
        except (OSError, SyntaxError, ValueError) as error:
            if isinstance(error, PhotoError):
                raise
            raise PhotoError("not a readable image file (is it a photo saved as PNG, JPEG or WebP?)") from error
    if image.width * image.height > MAX_PIXELS:
        raise PhotoError(f"image is {image.width}x{image.height}; at most {MAX_PIXELS // 1_000_000} megapixels are accepted")
    image = ImageOps.exif_transpose(image)
    if min(image.size) < MIN_SIDE:
        raise PhotoError(f"image is {image.width}x{image.height}; a face needs at least {MIN_SIDE}x{MIN_SIDE} pixels")
    return _to_rgb(image)


def _open_checked(source: str | Path | BinaryIO) -> Image.Image:
    """Read the header, refuse too many pixels before decoding any (our check replaces PIL's bomb warning), then decode,
    a large JPEG at the smallest of libjpeg's scales that keeps DECODE_SIDE pixels a side (a 12-megapixel photo at half
    its size: every later step, rotation, conversion, detection and crops, works on a quarter of the pixels)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as opened:
            if opened.width * opened.height > MAX_PIXELS:
                raise PhotoError(f"image is {opened.width}x{opened.height}; at most {MAX_PIXELS // 1_000_000} megapixels are accepted")
            opened.draft(None, (DECODE_SIDE, DECODE_SIDE))  # JPEG only; other formats ignore it
            opened.load()
            return opened.copy()


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


def face_input(photo: Image.Image, box: tuple[int, int, int, int] | None = None, size: int = IMAGE_SIZE) -> torch.Tensor:
    """A photo (and the crop box around its face, default centre square) -> (1, 3, size, size) floats in [0, 1]."""
    return to_float(preprocess(photo, box or centre_square(photo.size), size))[None]


# ---------------------------------------------------------------------------------------------------
# Face detection and the CelebA-style crop
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CropStyle:
    """How a dataset frames a face, relative to OpenCV's Haar detection box: the crop's side in detection sides, and
    its centre's offset from the detection's centre in detection sides (negative: upwards). Medians of the detector run
    on the dataset's own training crops, upscaled 2x: `python -m sae.cli.crop_style` measures them (docs/faces.md)."""

    scale: float
    shift: float


CROP_STYLES = {"celeba": CropStyle(1.70, -0.14), "utkface": CropStyle(1.19, 0.06)}  # python -m sae.cli.crop_style
DETECT_SIDE = 640  # detection runs on a copy scaled to at most this many pixels a side (speed)
MIN_FACE = 0.08  # smallest face considered, as a fraction of the image's shorter side
# A detection backed by fewer than 1/WEAKEST_FACE of the strongest one's neighbours (the overlapping windows the cascade
# merged into it) is dropped: a face gathers dozens, while a false detection on clothing or a background, which can be
# larger than the face and would be taken first, gathers a handful.
WEAKEST_FACE = 3


def crop_style_for(dataset: str) -> str:
    """How to frame a face for a model trained on `dataset`: that dataset's style, CelebA's for an unknown one."""
    return dataset if dataset in CROP_STYLES else "celeba"


@dataclass(frozen=True)
class FaceCrop:
    """The square box cut from the photo, whether a face was found, and a sentence for the user."""

    box: tuple[int, int, int, int]
    found: bool
    message: str


_THREAD = threading.local()
_IMPORT = threading.Lock()


def _cv2():
    """OpenCV, imported on first use (no work at import time) under a lock: cv2's package bootstrap is not safe to run
    from two threads at once (the second saw a half-initialised module without `cv2.data`)."""
    with _IMPORT:
        import cv2

    return cv2


def _cascade():
    """OpenCV's bundled frontal-face cascade, loaded on first use in each thread.

    One per thread: a CascadeClassifier is not safe to share, and the app detects faces in several worker threads at
    once (two concurrent uploads of different sizes crashed inside OpenCV when they shared one).
    """
    cascade = getattr(_THREAD, "cascade", None)
    if cascade is None:
        cv2 = _cv2()
        cascade = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise RuntimeError("OpenCV's Haar cascade file is missing")
        _THREAD.cascade = cascade
    return cascade


def detect_faces(photo: Image.Image) -> list[tuple[int, int, int, int]]:
    """Face boxes (x, y, w, h) in the photo's pixels, largest first, without the weak detections (WEAKEST_FACE)."""
    cv2 = _cv2()
    scale = min(1.0, DETECT_SIDE / max(photo.size))
    small = photo.convert("L")
    if scale < 1.0:
        small = small.resize((max(1, round(photo.width * scale)), max(1, round(photo.height * scale))), Image.Resampling.BILINEAR)
    gray = cv2.equalizeHist(np.asarray(small))
    smallest = max(20, round(MIN_FACE * min(small.size)))
    found, neighbours = _cascade().detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=5, minSize=(smallest, smallest))
    neighbours = np.asarray(neighbours, dtype=np.int64).reshape(-1)
    kept = np.asarray(found).reshape(-1, 4)[neighbours * WEAKEST_FACE >= neighbours.max(initial=0)]
    boxes = [tuple(round(v / scale) for v in box) for box in kept]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


def face_box(detection: tuple[int, int, int, int], size: tuple[int, int], style: str = "celeba") -> tuple[int, int, int, int]:
    """A detection -> the square that frames the face as the dataset's crops do (`CROP_STYLES`), moved inside the photo."""
    x, y, w, h = detection
    crop = CROP_STYLES[style]
    side = min(round(crop.scale * max(w, h)), *size)
    centre_x, centre_y = x + w / 2, y + h / 2 + crop.shift * max(w, h)
    left = min(max(0, round(centre_x - side / 2)), size[0] - side)
    top = min(max(0, round(centre_y - side / 2)), size[1] - side)
    return (left, top, left + side, top + side)


def locate_face(photo: Image.Image, whole_image: bool = False, style: str = "celeba", faces: list | None = None) -> FaceCrop:
    """Where to crop: around the largest face, framed like `style`'s dataset, or the centre square (asked for, or when no
    face is found). `faces` passes detections already made, so several styles need one detection."""
    if whole_image:
        return FaceCrop(centre_square(photo.size), False, "Using the whole image (centre square), no face detection.")
    faces = detect_faces(photo) if faces is None else faces
    if not faces:
        return FaceCrop(centre_square(photo.size), False, "No face found: using the centre of the image instead.")
    others = f" ({len(faces) - 1} other face{'s' if len(faces) > 2 else ''} ignored)" if len(faces) > 1 else ""
    name = {"celeba": "a CelebA", "utkface": "a UTKFace"}.get(style, f"a {style}")
    return FaceCrop(face_box(faces[0], photo.size, style), True, f"Face found: cropped like {name} photo{others}.")
