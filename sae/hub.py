"""Where a model comes from: a local directory, or the bundled model in assets/model.

`load_model` returns the model together with a sentence saying which model is serving and why,
so the UI can show it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from safetensors import SafetensorError

from sae.model import SparseAutoencoder

BUNDLED_MODEL = Path(__file__).resolve().parents[1] / "assets" / "model"


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message is one line meant for the person starting the app."""


@dataclass
class LoadedModel:
    model: SparseAutoencoder
    source: str
    note: str


def _from_directory(path: Path) -> SparseAutoencoder:
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise ModelLoadError(f"{path} does not hold config.json and model.safetensors")
    try:
        return SparseAutoencoder.from_pretrained(path, strict=True).eval()
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, SafetensorError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else error.__class__.__name__
        raise ModelLoadError(f"cannot load the model in {path}: {first_line}") from error


def load_model(source: str | Path | None = None) -> LoadedModel:
    """Load `source` (a directory in save_pretrained layout), or the bundled model when it is None."""
    if source is None or str(source) == "":
        return LoadedModel(_from_directory(BUNDLED_MODEL), "bundled (assets/model)", "the model shipped with the app")
    path = Path(source)
    if not path.is_dir():
        raise ModelLoadError(f"model source {source!r} is not a directory")
    return LoadedModel(_from_directory(path), str(path), "a local directory")
