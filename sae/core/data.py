"""Face datasets, their fixed splits, and the one preprocessing every path shares.

Two datasets, each with a split that never lets a test face reach training:
- CelebA aligned crops (89x109, research use only): split by file id; the square box (0, 10, 89, 99) around the face.
- UTKFace aligned and cropped faces (200x200, non-commercial research use): split by the lists `train.txt`,
  `val.txt`, `test.txt` beside the images; the whole image is used. File names carry age, gender and race.

`preprocess` (crop, then bicubic antialiased resize to the model's size, uint8) is the only way an image becomes a
model input: training, evaluation, the app and the tests all call it. A split is decoded once and cached as one
uint8 tensor, so a batch is an index, not a file read.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SIZE = 64  # the default model's input side
CELEBA_CROP_BOX = (0, 10, 89, 99)  # the square around the face in an 89x109 CelebA aligned crop
SPLITS: dict[str, range] = {
    "train": range(1, 8001),
    "val": range(8001, 9001),
    "test": range(9001, 10001),
}
# Full CelebA (img_align_celeba, 202,599 faces): every id above 10,000 joins training, so validation and test stay
# the same 2,000 faces and every number stays comparable with the 10k runs. Training opts in (`--train-split
# train-full`); "train" stays 8,000 faces because the PCA baseline is fitted on it through an N x N Gram matrix.
EXTRA_SPLITS: dict[str, tuple[range, ...]] = {"train-full": (SPLITS["train"], range(10001, 202600))}
_ID_PATTERN = re.compile(r"^(\d{6})\.(jpg|jpeg|png)$", re.IGNORECASE)
_UTK_PATTERN = re.compile(r"^(\d+)_(\d)_(\d)_\d+\.jpg\.chip\.jpg$")
UTK_SPLITS = ("train", "val", "test")
UTK_RACES = ("White", "Black", "Asian", "Indian", "Others")


def preprocess(image: Image.Image, crop_box: tuple[int, int, int, int] | None = None, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Crop (optional) and resize a PIL image to a (3, size, size) uint8 model input (bicubic, antialiased).

    PyTorch resizes uint8 images itself (the same kernel torchvision's resize dispatches to, bit for bit)."""
    if crop_box is not None:
        image = image.crop(crop_box)  # before converting: a phone photo's crop is a fraction of its pixels
    image = image.convert("RGB")
    pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)
    return F.interpolate(pixels[None], size=(size, size), mode="bicubic", antialias=True, align_corners=False)[0]


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1], the model's input convention."""
    return images.float().div_(255.0)


def as_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float in [0, 1]; float images as they are: for tools that accept either."""
    return to_float(images) if images.dtype == torch.uint8 else images.float()


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 of the same shape (clamped, rounded): what a saved picture holds."""
    return (images.clamp(0, 1) * 255).round().byte()


def celeba_crop_box(size: tuple[int, int]) -> tuple[int, int, int, int]:
    """The CelebA square crop scaled to an aligned crop of any resolution (178x218, 89x109...)."""
    scale = size[0] / 89
    left, top, right, bottom = CELEBA_CROP_BOX
    return (round(left * scale), round(top * scale), round(right * scale), round(bottom * scale))


def image_id(path: Path) -> int | None:
    """CelebA file id (000123.jpg -> 123), or None for a file that is not a face image."""
    match = _ID_PATTERN.match(path.name)
    return int(match.group(1)) if match else None


@dataclass(frozen=True)
class UTKLabels:
    """What a UTKFace file name says about its face."""

    age: int
    gender: int  # 0 male, 1 female
    race: int  # index into UTK_RACES


def utk_labels(path: str | Path) -> UTKLabels | None:
    """The labels in a UTKFace file name (AGE_GENDER_RACE_DATETIME.jpg.chip.jpg), or None for another name."""
    match = _UTK_PATTERN.match(Path(path).name)
    if match is None or int(match.group(3)) >= len(UTK_RACES):
        return None
    return UTKLabels(int(match.group(1)), int(match.group(2)), int(match.group(3)))


@dataclass(frozen=True)
class Dataset:
    """A face dataset on disk: which files form a split, and which box of each image is the face."""

    name: str
    title: str  # how pages write it
    split_paths: Callable[[Path, str], list[Path]]
    crop_box: Callable[[tuple[int, int]], tuple[int, int, int, int] | None]
    splits: tuple[str, ...]


def _celeba_paths(root: Path, split: str) -> list[Path]:
    ranges = (SPLITS[split],) if split in SPLITS else EXTRA_SPLITS.get(split)
    if ranges is None:
        raise ValueError(f"unknown split {split!r}; choose one of {sorted(SPLITS | EXTRA_SPLITS)}")
    paths = sorted(p for p in Path(root).iterdir() if (i := image_id(p)) is not None and any(i in ids for ids in ranges))
    if not paths:
        spans = ", ".join(f"{ids.start}-{ids.stop - 1}" for ids in ranges)
        raise FileNotFoundError(f"no images of split {split!r} (ids {spans}) in {root}")
    return paths


def _utk_paths(root: Path, split: str) -> list[Path]:
    if split not in UTK_SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {list(UTK_SPLITS)}")
    listing = Path(root) / f"{split}.txt"
    names = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    paths = [Path(root) / name for name in names]
    missing = [p.name for p in paths if not p.is_file()]
    if missing or not paths:
        raise FileNotFoundError(f"{listing} lists {len(missing)} missing images (e.g. {missing[:1]})" if missing else f"{listing} is empty")
    return paths


CELEBA = Dataset("celeba", "CelebA", _celeba_paths, celeba_crop_box, (*SPLITS, *EXTRA_SPLITS))
UTKFACE = Dataset("utkface", "UTKFace", _utk_paths, lambda size: None, UTK_SPLITS)
DATASETS = {dataset.name: dataset for dataset in (CELEBA, UTKFACE)}


def dataset_title(name: str) -> str:
    """A dataset's name as pages write it ("utkface" -> "UTKFace"); an unknown name as given."""
    return DATASETS[name].title if name in DATASETS else name


def dataset_for(root: str | Path) -> Dataset:
    """The dataset a folder holds: UTKFace when it has the split lists, else CelebA (files named by id)."""
    return UTKFACE if (Path(root) / "train.txt").is_file() else CELEBA


def split_paths(root: str | Path, split: str) -> list[Path]:
    """The files of `split` in `root` (either dataset): a test face can never land in `train`."""
    return dataset_for(root).split_paths(Path(root), split)


def load_images(paths: Iterable[Path], crop_box: Callable = celeba_crop_box, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Decode and preprocess files into one (N, 3, size, size) uint8 tensor."""
    tensors = []
    for path in paths:
        with Image.open(path) as image:
            tensors.append(preprocess(image, crop_box(image.size), size))
    return torch.stack(tensors)


def load_split(
    root: str | Path, split: str, cache_dir: str | Path | None = None, limit: int | None = None, size: int = IMAGE_SIZE
) -> torch.Tensor:
    """A split as a uint8 (N, 3, size, size) tensor, cached in `cache_dir` so later runs skip decoding."""
    dataset = dataset_for(root)
    paths = dataset.split_paths(Path(root), split)[:limit]
    cache = None
    if cache_dir is not None:
        prefix = "celeba64" if dataset is CELEBA and size == IMAGE_SIZE else f"{dataset.name}{size}"
        cache = Path(cache_dir) / f"{prefix}-{split}-{len(paths)}-{paths[0].stem}-{paths[-1].stem}.pt"
        if cache.exists():
            return torch.load(cache, weights_only=True)
    images = load_images(paths, dataset.crop_box, size)
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        torch.save(images, cache)
    return images
