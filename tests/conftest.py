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


# ---------------------------------------------------------------------------------------------------
# The app layer: tiny served models, one framed like CelebA (64x64) and one like UTKFace (128x128)
# ---------------------------------------------------------------------------------------------------

TINY_UTK = dict(TINY, image_size=128, k_max=24, stem=8)  # same code shape as TINY: a code of one decodes shape-wise in the other


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    """Two tiny model directories as the app serves them, each with its data.json: "celeba" (64x64, k_max 16) and
    "utkface" (128x128, k_max 24). Shared by the session: copy one before writing into it."""
    from sae.zoo.files import DataNote

    root = tmp_path_factory.mktemp("models")
    notes = {
        "celeba": (TINY, DataNote("celeba", "tiny CelebA-style test model", "test licence (celeba)")),
        "utkface": (TINY_UTK, DataNote("utkface", "tiny UTKFace-style test model", "test licence (utkface)")),
    }
    directories = {}
    for seed, (name, (config, note)) in enumerate(notes.items()):
        torch.manual_seed(seed)
        directory = root / name
        SparseAutoencoder(**config).eval().save_pretrained(directory)
        note.write(directory)
        directories[name] = directory
    return directories


@pytest.fixture
def served_models(tiny_model_dirs) -> list:
    """[CelebA-style, UTKFace-style] `ServedModel`s loaded from `tiny_model_dirs` (fresh objects for each test)."""
    from sae.app.models import serve
    from sae.zoo.hub import load_model

    return [serve(load_model(str(tiny_model_dirs[name]), fallback=None)) for name in ("celeba", "utkface")]


SHIPPED_K, SHIPPED_K_PRIME = 4, 8  # the one setting the shipped regression of `shipped_model_dir` is fitted for


@pytest.fixture(scope="session")
def shipped_model_dir(tiny_model_dirs, tmp_path_factory) -> Path:
    """A copy of the tiny CelebA-style model directory with both shipped attacks beside it, as
    `python -m sae.cli.fit_attacks` writes them: untrained scorers (a scorer all the same) and a regression fitted on
    random faces at k = SHIPPED_K, k' = SHIPPED_K_PRIME of the paper's scheme."""
    import shutil

    from sae.core.fingerprint import weights_digest
    from sae.privacy.learned import LearnedAttack, fit_regression_attack
    from sae.privacy.scheme import SCHEMES
    from sae.zoo import files, shipped
    from sae.zoo.hub import load_model

    directory = tmp_path_factory.mktemp("shipped") / "celeba"
    shutil.copytree(tiny_model_dirs["celeba"], directory)
    model = load_model(str(directory), fallback=None).model
    generator = torch.Generator().manual_seed(0)
    scorers = {name: LearnedAttack(model.num_groups, model.code_dim, 16, generator=generator).eval() for name in shipped.SCHEMES}
    shipped.save_scorers(scorers, directory / files.SCORERS, weights_digest(model))
    images = torch.rand(12, 3, model.image_size, model.image_size, generator=generator)
    with torch.inference_mode():
        sparse = model.sparsify(model.encode(images), SHIPPED_K)
    paper = SCHEMES["paper"]
    dual = fit_regression_attack(sparse, images, SHIPPED_K_PRIME, generator, k=SHIPPED_K, **paper.options())
    info = {
        "k": str(SHIPPED_K),
        "k_prime": str(SHIPPED_K_PRIME),
        "permute": str(int(paper.permute)),
        "signs": paper.signs,
        "value_bits": str(paper.value_bits),
    }
    shipped.save_regression(dual.compact(8), directory / files.REGRESSION, weights_digest(model), info)
    return directory


class Page:
    """Handlers as one browser page sees their outputs: a panels update (a new face or model: a gr.HTML in process, its
    update dict through the API) sets the panels' props, and every panels string is shown through them
    (`sae.app.render.with_reference`, the template's Python twin). Other attributes are the handlers' own; `Page()`
    without handlers shows API outputs (`show`)."""

    def __init__(self, handlers=None):
        self.handlers = handlers
        self.props = {"view": "", "reference": ""}

    def __getattr__(self, name: str):
        method = getattr(self.handlers, name)
        if name not in ("prepare", "select", "switch", "update", "redraw"):
            return method
        return lambda *args, **kwargs: self.show(method(*args, **kwargs))

    def show(self, outputs) -> tuple:
        import gradio as gr

        from sae.app.render import with_reference

        shown = []
        for output in outputs:
            if isinstance(output, gr.HTML) and "reference" in output.props:
                output = {"value": output.value, "props": output.props}
            if isinstance(output, dict) and "reference" in output.get("props", {}):
                self.props = {"view": output["props"]["view"], "reference": output["props"]["reference"]}
                output = output["value"]
            shown.append(with_reference(output, **self.props) if isinstance(output, str) else output)
        return tuple(shown)
