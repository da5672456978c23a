"""The models the app serves: the bundled ones and any given with `--model` / `SAE_MODEL`, each with what it needs.

A served model carries its data note (how to crop a face for it, what it was trained on) and its shipped attacks.
A source that cannot be loaded is listed with its reason instead of breaking the page; only when no model at all
loads does the app refuse to start.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sae.app.settings import ShareSettings
from sae.core.faces import crop_style_for
from sae.core.model import SparseAutoencoder
from sae.privacy import catalogue
from sae.privacy.scheme import SCHEMES
from sae.zoo import files
from sae.zoo.files import DataNote
from sae.zoo.hub import LoadedModel, ModelLoadError, load_model
from sae.zoo.shipped import ShippedAttacks, load_shipped

TITLES = {name: f"{title} (bundled)" for name, title in files.TITLES.items()}


@dataclass
class ServedModel:
    """A loaded model with its data note and its shipped attacks."""

    name: str
    loaded: LoadedModel
    data: DataNote
    shipped: ShippedAttacks

    @property
    def model(self) -> SparseAutoencoder:
        return self.loaded.model

    @property
    def crop_style(self) -> str:
        """How a photo is framed for this model: like the faces it was trained on."""
        return crop_style_for(self.data.dataset)

    def fitted(self, settings: ShareSettings) -> tuple[dict[str, object], dict[str, str]]:
        """The catalogue's fitted parts usable at these settings, and why each missing one is missing."""
        scheme = SCHEMES[settings.scheme]
        keyed, permute, k, k_prime = scheme.keyed, settings.permute, settings.k, settings.k_prime(self.model.code_dim)
        fitted, missing = {}, {}
        scorers, regression = self.shipped.scorers, self.shipped.regression
        if scorers is None:
            missing[catalogue.SCORER] = self.shipped.scorer_note
        elif (scorer := scorers.for_scheme(keyed, permute)) is None:
            missing[catalogue.SCORER] = "not fitted on keyed codes: without the key they are uniformly random, nothing to learn"
        else:
            fitted[catalogue.SCORER] = scorer
        if regression is None:
            missing[catalogue.REGRESSION] = self.shipped.regression_note
        elif reason := regression.mismatch(k, k_prime, keyed, permute, scheme.signs, scheme.value_bits):
            missing[catalogue.REGRESSION] = reason
        else:
            fitted[catalogue.REGRESSION] = regression.attack
        missing[catalogue.INVERSION] = "measured in the privacy table only (not shipped)"
        return fitted, missing


def shown_source(source: str) -> str:
    """A model's source as About shows it: a Hub id or a relative folder as given, an absolute folder by its path inside
    the app (a bundled model) or else by its name alone; the menu names a model as it was given (`_title`)."""
    path = Path(source)
    if not path.is_absolute():
        return source
    try:
        return path.resolve().relative_to(files.ASSETS.parent).as_posix()
    except ValueError:
        return path.name


def _title(loaded: LoadedModel) -> str:
    directory = loaded.directory
    for name, path in files.BUNDLED.items():
        if directory is not None and Path(directory).resolve() == path.resolve():
            return TITLES[name]
    return loaded.source  # the folder or Hub id the teacher gave: the name the menu and the API know it by


def serve(loaded: LoadedModel) -> ServedModel:
    """Wrap a loaded model with its data note and shipped attacks."""
    return ServedModel(_title(loaded), loaded, DataNote.read(loaded.directory), load_shipped(loaded.directory, loaded.model))


def load_served(sources: list[str]) -> tuple[list[ServedModel], list[str]]:
    """The models to serve: each given source (Hub id or directory), then every bundled model not already served.

    Returns them in that order (the first is the default) and one line per source that could not be loaded.
    """
    served, failures = [], []
    for source in sources:
        try:
            served.append(serve(load_model(source, fallback=None)))
        except ModelLoadError as error:
            failures.append(f"{source}: {error}")
    seen = {str(Path(s.loaded.directory).resolve()) for s in served if s.loaded.directory is not None}
    bundled = files.bundled_models()
    for name in sorted(bundled, key=lambda n: n != files.DEFAULT_BUNDLED):
        if str(bundled[name].resolve()) in seen:
            continue
        try:
            served.append(serve(load_model(bundled[name], fallback=None)))
        except ModelLoadError as error:
            failures.append(f"{TITLES[name]}: {error}")
    return served, failures
