"""A model directory: the files it holds, which a published model carries, and where the bundled models live.

One place names them: the Hub loader fetches `REQUIRED` and `OPTIONAL`, `python -m sae.cli.push` uploads `PUBLISHED`,
the tools write the result files, the app reads the card, the data note and the shipped attacks.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

CONFIG = "config.json"  # the model's constructor arguments (PyTorchModelHubMixin)
WEIGHTS = "model.safetensors"
CARD = "README.md"  # the model card (`python -m sae.cli.card`)
DATA = "data.json"  # what the model was trained on: dataset, face crop, licence (`DataNote`)
SCORERS = "learned_attack.safetensors"  # the learned attack's fitted scorers (`sae.zoo.shipped`)
REGRESSION = "regression_attack.safetensors"  # the regression attack, compact form (`sae.zoo.shipped`)
TRAIN_CONFIG = "train_config.json"  # a training run's options (`sae.cli.train`); the first run's with STAGE1 before it
HISTORY = "history.csv"  # a training run's per-epoch losses, speed and validation PSNR
STAGE1 = "stage1_"
RESULTS = ("evaluation", "privacy")  # each as .json (everything), .md (the table), .html (the chart)
REQUIRED = (CONFIG, WEIGHTS)
OPTIONAL = (CARD, DATA, SCORERS, REGRESSION)
PUBLISHED = [*REQUIRED, *OPTIONAL, *(f"{stem}.{ext}" for stem in RESULTS for ext in ("json", "md", "html"))]

ASSETS = Path(__file__).resolve().parents[2] / "assets"
BUNDLED = {"celeba64": ASSETS / "models" / "celeba64", "utkface128": ASSETS / "models" / "utkface128"}
DEFAULT_BUNDLED = "utkface128"
TITLES = {"celeba64": "CelebA 64x64", "utkface128": "UTKFace 128x128"}  # how pages and the app name the bundled models


@dataclass(frozen=True)
class DataNote:
    """What a model was trained on, as its directory's data.json says: the dataset (it decides how the app crops a
    face: `sae.core.faces`), a one-line description and the licence its weights inherit."""

    dataset: str = "celeba"
    description: str = "CelebA aligned faces, train ids 000001-008000"
    licence: str = "CelebA: non-commercial research use only"

    @classmethod
    def read(cls, directory: Path | None) -> DataNote:
        """The directory's note; the defaults (CelebA, as the first models were) when it has none or an unreadable one."""
        path = None if directory is None else Path(directory) / DATA
        try:
            fields = json.loads(path.read_text()) if path is not None and path.is_file() else {}
        except (OSError, ValueError):
            fields = {}
        known = {key: str(value) for key, value in fields.items() if key in cls.__dataclass_fields__} if isinstance(fields, dict) else {}
        return cls(**known)

    def write(self, directory: Path) -> Path:
        """Write the note into `directory`; returns the file's path."""
        path = Path(directory) / DATA
        path.write_text(json.dumps(self.__dict__, indent=2) + "\n")
        return path


def bundled_models() -> dict[str, Path]:
    """The bundled model directories that are present (a trimmed checkout may lack one), `DEFAULT_BUNDLED` first."""
    names = sorted(BUNDLED, key=lambda name: name != DEFAULT_BUNDLED)
    return {name: BUNDLED[name] for name in names if (BUNDLED[name] / WEIGHTS).is_file()}


def default_model() -> Path:
    """The bundled model tools and the app start from: `DEFAULT_BUNDLED`, else any bundled model that is present
    (the default's path when none is, so the error names it)."""
    present = bundled_models()
    return present.get(DEFAULT_BUNDLED, next(iter(present.values()), BUNDLED[DEFAULT_BUNDLED]))
