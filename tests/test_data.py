from __future__ import annotations

import pytest
import torch
from PIL import Image

from sae.core.data import (
    CELEBA,
    EXTRA_SPLITS,
    SPLITS,
    UTKFACE,
    celeba_crop_box,
    dataset_for,
    image_id,
    load_split,
    preprocess,
    split_paths,
    utk_labels,
)


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


def test_utkface_split_comes_from_the_lists_and_labels_from_the_names(fake_utkface, tmp_path):
    assert dataset_for(fake_utkface) is UTKFACE and dataset_for(tmp_path) is CELEBA
    train, test = split_paths(fake_utkface, "train"), split_paths(fake_utkface, "test")
    assert [p.name for p in test] == (fake_utkface / "test.txt").read_text().split()
    assert not {p.name for p in train} & {p.name for p in test}
    assert utk_labels(test[0]) is not None and utk_labels(fake_utkface / "README.md") is None
    labels = utk_labels("35_1_2_20170116174525125.jpg.chip.jpg")
    assert (labels.age, labels.gender, labels.race) == (35, 1, 2)
    with pytest.raises(ValueError, match="unknown split"):
        split_paths(fake_utkface, "train-full")


def test_utkface_loads_the_whole_image_at_the_asked_size(fake_utkface, tmp_path):
    images = load_split(fake_utkface, "val", tmp_path, size=128)
    assert images.shape == (2, 3, 128, 128) and images.dtype == torch.uint8
    from PIL import Image

    with Image.open(split_paths(fake_utkface, "val")[0]) as first:
        assert torch.equal(images[0], preprocess(first, None, 128))  # no crop: the whole 200x200 face
    assert len(list(tmp_path.glob("utkface128-val-*.pt"))) == 1


def test_utkface_split_missing_a_listed_image_is_a_clear_error(fake_utkface):
    (fake_utkface / "test.txt").write_text("1_0_0_20170101000000000.jpg.chip.jpg\n")
    with pytest.raises(FileNotFoundError, match="missing images"):
        split_paths(fake_utkface, "test")


def test_real_test_split_never_reaches_training(celeba_root):
    train = {p.name for p in split_paths(celeba_root, "train")}
    test = {p.name for p in split_paths(celeba_root, "test")}
    assert len(train) == 8000 and len(test) == 1000 and not train & test


def test_real_utkface_split_sizes(utkface_root):
    sizes = {split: len(split_paths(utkface_root, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 20946, "val": 1155, "test": 1105}
    names = [{p.name for p in split_paths(utkface_root, split)} for split in ("train", "val", "test")]
    assert not (names[0] & names[1] or names[0] & names[2] or names[1] & names[2])


def test_real_faces_load(faces):
    assert faces.shape == (8, 3, 64, 64) and 0.2 < faces.mean() < 0.8
