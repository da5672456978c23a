"""Face datasets: the CelebA-64 preprocessing and the id-based train/val/test split.

One function (`preprocess`) decides the crop and size for training, evaluation, the app and the
tests. Images are decoded once and cached as a uint8 tensor, so an epoch is a tensor slice, not
10,000 JPEG decodes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

IMAGE_SIZE = 64
# CelebA aligned crops at half resolution are 89x109; this box is the square around the face.
CELEBA_CROP_BOX = (0, 10, 89, 99)
SPLITS: dict[str, range] = {
    "train": range(1, 8001),
    "val": range(8001, 9001),
    "test": range(9001, 10001),
}
# Full CelebA (img_align_celeba, 202,599 faces): every id above 10,000 joins training, so validation and test stay
# the same 2,000 faces and every number stays comparable with the 10k runs. Training opts in (`sae.cli.train --train-split
# train-full`); "train" stays 8,000 faces because the PCA baseline is fitted on it through an N x N Gram matrix.
EXTRA_SPLITS: dict[str, tuple[range, ...]] = {"train-full": (SPLITS["train"], range(10001, 202600))}
_ID_PATTERN = re.compile(r"^(\d{6})\.(jpg|jpeg|png)$", re.IGNORECASE)

_to_uint8_64 = v2.Compose(
    [
        v2.PILToTensor(),
        v2.Resize(
            (IMAGE_SIZE, IMAGE_SIZE),
            interpolation=v2.InterpolationMode.BICUBIC,
            antialias=True,
        ),
    ]
)


def preprocess(image: Image.Image, crop_box: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """Crop (optional) and resize a PIL image to the model's (3, 64, 64) uint8 input."""
    image = image.convert("RGB")
    if crop_box is not None:
        image = image.crop(crop_box)
    return _to_uint8_64(image)


def celeba_crop_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The CelebA square crop scaled to an aligned crop of any resolution (178x218, 89x109...)."""
    width, height = size
    scale = width / 89
    left, top, right, bottom = CELEBA_CROP_BOX
    return (
        round(left * scale),
        round(top * scale),
        round(right * scale),
        round(bottom * scale),
    )


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1], the model's input convention."""
    return images.float().div_(255.0)


def image_id(path: Path) -> int | None:
    """CelebA file id (000123.jpg -> 123), or None for a file that is not a face image."""
    match = _ID_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


def split_paths(root: str | Path, split: str) -> list[Path]:
    """The files of `split`, chosen by id: a test id can never land in `train`."""
    ranges = (SPLITS[split],) if split in SPLITS else EXTRA_SPLITS.get(split)
    if ranges is None:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS | EXTRA_SPLITS)}")
    paths = sorted(p for p in Path(root).iterdir() if (i := image_id(p)) is not None and any(i in ids for ids in ranges))
    if not paths:
        spans = ", ".join(f"{ids.start}-{ids.stop - 1}" for ids in ranges)
        raise FileNotFoundError(f"no images of split {split!r} (ids {spans}) in {root}")
    return paths


def load_images(paths: Iterable[Path], celeba_crop: bool = True) -> torch.Tensor:
    """Decode and preprocess files into one (N, 3, 64, 64) uint8 tensor."""
    tensors = []
    for path in paths:
        with Image.open(path) as image:
            box = celeba_crop_box(image.size) if celeba_crop else None
            tensors.append(preprocess(image, box))
    return torch.stack(tensors)


def load_split(root: str | Path, split: str, cache_dir: str | Path | None = None, limit: int | None = None) -> torch.Tensor:
    """A split as a uint8 tensor, cached on disk next to `cache_dir` so later runs skip decoding."""
    paths = split_paths(root, split)[:limit]
    cache = None
    if cache_dir is not None:
        cache = Path(cache_dir) / f"celeba64-{split}-{len(paths)}-{paths[0].stem}-{paths[-1].stem}.pt"
        if cache.exists():
            return torch.load(cache, weights_only=True)
    images = load_images(paths)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(images, cache)
    return images


class FaceDataset(Dataset):
    """A split of a flat folder of CelebA-style face images, held in memory as uint8."""

    def __init__(self, root: str | Path, split: str, cache_dir: str | Path | None = None, limit: int | None = None):
        self.split = split
        self.ids = [image_id(p) for p in split_paths(root, split)[:limit]]
        self.images = load_split(root, split, cache_dir, limit)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> torch.Tensor:
        return to_float(self.images[index])
