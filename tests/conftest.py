"""Shared fixtures: tiny models for fast tests, and the face data when it is beside the repo."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sae.core.model import SparseAutoencoder

torch.set_num_threads(1)  # tests are small; one thread avoids oversubscribing a 2-core machine

REPO = Path(__file__).resolve().parents[1]
CELEBA = REPO.parent / "shared" / "data" / "celeba10k"
UTKFACE = REPO.parent / "shared" / "data" / "utkface200"
TINY = dict(image_size=64, num_groups=4, code_dim=32, k_max=16, channels=[16], blocks=1, group_channels=1, stem=4)


@pytest.fixture
def tiny_model() -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(**TINY).eval()


@pytest.fixture
def faces(tmp_path_factory) -> torch.Tensor:
    """A few real test-split faces as floats, or skip when ../shared/data is not beside the clone."""
    if not CELEBA.is_dir():
        pytest.skip("CelebA data not found beside the repo (../shared/data/celeba10k)")
    from sae.core.data import load_split, to_float

    return to_float(load_split(CELEBA, "test", tmp_path_factory.mktemp("cache"), limit=8))


@pytest.fixture
def celeba_root() -> Path:
    if not CELEBA.is_dir():
        pytest.skip("CelebA data not found beside the repo (../shared/data/celeba10k)")
    return CELEBA


@pytest.fixture
def utkface_root() -> Path:
    if not UTKFACE.is_dir():
        pytest.skip("UTKFace data not found beside the repo (../shared/data/utkface200)")
    return UTKFACE


@pytest.fixture
def fake_utkface(tmp_path) -> Path:
    """A folder shaped like utkface200: 200x200 JPEGs named AGE_GENDER_RACE_DATETIME.jpg.chip.jpg and the split lists."""
    from PIL import Image

    root = tmp_path / "utkface"
    root.mkdir()
    generator = torch.Generator().manual_seed(1)
    names = [f"{20 + i}_{i % 2}_{i % 5}_2017010{i % 9}00000000{i:02d}.jpg.chip.jpg" for i in range(10)]
    for name in names:
        Image.fromarray((torch.rand(200, 200, 3, generator=generator) * 255).byte().numpy()).save(root / name)
    (root / "train.txt").write_text("\n".join(names[:6]) + "\n")
    (root / "val.txt").write_text("\n".join(names[6:8]) + "\n")
    (root / "test.txt").write_text("\n".join(names[8:]) + "\n")
    (root / "README.md").write_text("labels in the file names")
    return root


@pytest.fixture
def fake_celeba(tmp_path) -> Path:
    """A flat folder shaped like celeba10k (89x109 JPEGs named by id) with a few ids per split."""
    from PIL import Image

    root = tmp_path / "celeba"
    root.mkdir()
    generator = torch.Generator().manual_seed(0)
    ids = [*range(1, 25), *range(8001, 8005), *range(9001, 9005)]
    base = torch.rand(109, 89, 3, generator=generator)
    for i in ids:
        pixels = ((base * 0.7 + 0.3 * torch.rand(109, 89, 3, generator=generator)) * 255).byte().numpy()
        Image.fromarray(pixels).save(root / f"{i:06d}.jpg")
    (root / "README.txt").write_text("not an image")
    (root / "list_attr_celeba.csv").write_text("id,attr")
    return root
