from __future__ import annotations

import pytest
import torch
from PIL import Image

from sae.core.data import EXTRA_SPLITS, SPLITS, FaceDataset, celeba_crop_box, image_id, load_split, preprocess, split_paths, to_float


def test_split_ranges_are_disjoint_and_cover_10k():
    ids = [set(r) for r in SPLITS.values()]
    assert sum(len(s) for s in ids) == 10_000
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert max(SPLITS["train"]) < min(SPLITS["val"]) < min(SPLITS["test"])


def test_split_paths_select_by_id_only(fake_celeba):
    train = split_paths(fake_celeba, "train")
    test = split_paths(fake_celeba, "test")
    assert len(train) == 24 and len(test) == 4
    assert all(image_id(p) <= 8000 for p in train)
    assert not {p.name for p in train} & {p.name for p in test}
    with pytest.raises(ValueError):
        split_paths(fake_celeba, "holdout")


def test_full_celeba_split_adds_every_id_beyond_10k_to_training_only(fake_celeba):
    for i in (10001, 202599):
        (fake_celeba / f"{i:06d}.jpg").write_bytes((fake_celeba / "000001.jpg").read_bytes())
    full = [image_id(p) for p in split_paths(fake_celeba, "train-full")]
    assert full == [*range(1, 25), 10001, 202599]
    assert [image_id(p) for p in split_paths(fake_celeba, "train")] == list(range(1, 25))
    assert not set(EXTRA_SPLITS["train-full"][1]) & (set(SPLITS["val"]) | set(SPLITS["test"]))


def test_missing_split_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no images of split"):
        split_paths(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="ids 1-8000, 10001-202599"):
        split_paths(tmp_path, "train-full")


def test_image_id():
    from pathlib import Path

    assert image_id(Path("009001.jpg")) == 9001
    assert image_id(Path("notes.txt")) is None
    assert image_id(Path("9001.jpg")) is None


def test_crop_box_scales_with_resolution():
    assert celeba_crop_box((89, 109)) == (0, 10, 89, 99)
    assert celeba_crop_box((178, 218)) == (0, 20, 178, 198)


def test_preprocess_shape_and_dtype():
    image = Image.new("RGBA", (89, 109), (255, 0, 0, 128))
    out = preprocess(image, celeba_crop_box(image.size))
    assert out.shape == (3, 64, 64) and out.dtype == torch.uint8
    assert out[0].float().mean() > 250 and out[1].float().mean() < 5


def test_load_split_caches(fake_celeba, tmp_path):
    cache = tmp_path / "cache"
    first = load_split(fake_celeba, "val", cache)
    assert first.shape == (4, 3, 64, 64) and first.dtype == torch.uint8
    assert len(list(cache.iterdir())) == 1
    assert torch.equal(load_split(fake_celeba, "val", cache), first)


def test_dataset_items_are_floats(fake_celeba):
    dataset = FaceDataset(fake_celeba, "test")
    assert len(dataset) == 4 and dataset.ids == [9001, 9002, 9003, 9004]
    item = dataset[0]
    assert item.dtype == torch.float32 and 0 <= item.min() and item.max() <= 1
    assert torch.equal(to_float(dataset.images[:1])[0], item)


def test_real_test_split_never_reaches_training(celeba_root):
    train = {p.name for p in split_paths(celeba_root, "train")}
    test = {p.name for p in split_paths(celeba_root, "test")}
    assert len(train) == 8000 and len(test) == 1000 and not train & test


def test_real_faces_load(faces):
    assert faces.shape == (8, 3, 64, 64) and 0.2 < faces.mean() < 0.8
