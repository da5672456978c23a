"""The served models (sae.app.models): data note and framing, shipped attacks and why a missing one is missing, and
which sources are served, in which order, with failures listed instead of fatal."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from sae.app.models import TITLES, ServedModel, load_served, serve
from sae.app.settings import ShareSettings
from sae.privacy import catalogue
from sae.zoo import files
from sae.zoo.files import DataNote
from sae.zoo.hub import load_model
from tests.conftest import SHIPPED_K, SHIPPED_K_PRIME


def _served(directory: Path) -> ServedModel:
    return serve(load_model(str(directory), fallback=None))


def test_serve_reads_the_data_note_and_frames_like_its_dataset(served_models, tiny_model_dirs):
    celeba, utkface = served_models
    assert celeba.crop_style == "celeba" and utkface.crop_style == "utkface"
    assert utkface.data == DataNote("utkface", "tiny UTKFace-style test model", "test licence (utkface)")
    assert celeba.name == celeba.loaded.source == str(tiny_model_dirs["celeba"])  # a local directory is named by its path
    assert celeba.model is celeba.loaded.model and (celeba.model.image_size, utkface.model.image_size) == (64, 128)


def test_an_unknown_or_missing_data_note_frames_like_celeba(tiny_model_dirs, tmp_path):
    directory = tmp_path / "model"
    shutil.copytree(tiny_model_dirs["celeba"], directory)
    DataNote("imagenet", "not faces", "other").write(directory)
    assert _served(directory).crop_style == "celeba"
    (directory / files.DATA).write_text("{ not json")
    assert _served(directory).data == DataNote()  # the defaults: the first models were CelebA ones
    (directory / files.DATA).unlink()
    assert _served(directory).crop_style == "celeba"


def test_a_bundled_directory_gets_its_title(tiny_model_dirs, monkeypatch):
    monkeypatch.setattr(files, "BUNDLED", {"celeba64": tiny_model_dirs["celeba"], "utkface128": tiny_model_dirs["utkface"]})
    assert _served(tiny_model_dirs["utkface"]).name == TITLES["utkface128"] == "UTKFace 128x128 (bundled)"


def test_nothing_shipped_says_why_for_each_fitted_part(served_models):
    fitted, missing = served_models[0].fitted(ShareSettings(scheme="paper"))
    assert fitted == {}
    assert missing[catalogue.SCORER].startswith(f"no {files.SCORERS} beside the model")
    assert missing[catalogue.REGRESSION].startswith(f"no {files.REGRESSION} beside the model")
    assert missing[catalogue.INVERSION] == "measured in the privacy table only (not shipped)"


def test_shipped_scorers_per_scheme(shipped_model_dir):
    served = _served(shipped_model_dir)
    scorers = served.shipped.scorers
    assert scorers is not None and served.shipped.scorer_note == ""
    assert served.fitted(ShareSettings(scheme="paper", permute=True))[0][catalogue.SCORER] is scorers.permuted
    assert served.fitted(ShareSettings(scheme="paper", permute=False))[0][catalogue.SCORER] is scorers.plain
    fitted, missing = served.fitted(ShareSettings(scheme="keyed"))
    assert catalogue.SCORER not in fitted and "not fitted on keyed codes" in missing[catalogue.SCORER]


def test_shipped_regression_only_at_its_setting(shipped_model_dir):
    served = _served(shipped_model_dir)
    ratio = SHIPPED_K_PRIME / SHIPPED_K
    at = ShareSettings(k=SHIPPED_K, scheme="paper", k_prime_ratio=ratio)
    fitted, missing = served.fitted(at)
    assert fitted[catalogue.REGRESSION] is served.shipped.regression.attack and catalogue.REGRESSION not in missing
    reason = f"fitted for the paper's scheme at k = {SHIPPED_K}, k' = {SHIPPED_K_PRIME} only"
    for other in (
        ShareSettings(k=SHIPPED_K + 1, scheme="paper", k_prime_ratio=ratio),
        ShareSettings(k=SHIPPED_K, scheme="paper", k_prime_ratio=None),
        ShareSettings(k=SHIPPED_K, scheme="keyed", k_prime_ratio=ratio),
        ShareSettings(k=SHIPPED_K, scheme="paper", k_prime_ratio=ratio, permute=False),
    ):
        fitted, missing = served.fitted(other)
        assert catalogue.REGRESSION not in fitted and missing[catalogue.REGRESSION].startswith(reason)


def test_shipped_attacks_of_other_weights_are_refused(shipped_model_dir, tiny_model_dirs, tmp_path):
    """A retrained model never pairs with a stale attack: the weights digest decides."""
    directory = tmp_path / "retrained"
    shutil.copytree(tiny_model_dirs["utkface"], directory)
    for name in (files.SCORERS, files.REGRESSION):
        shutil.copy(shipped_model_dir / name, directory / name)
    served = _served(directory)
    assert served.shipped.scorers is None and served.shipped.regression is None
    assert (
        "fitted for other model weights" in served.shipped.scorer_note
        and "fitted for other model weights" in served.shipped.regression_note
    )
    (directory / files.SCORERS).write_bytes(b"not safetensors")
    assert "unreadable" in _served(directory).shipped.scorer_note


@pytest.fixture
def bundled(tiny_model_dirs, tmp_path, monkeypatch) -> dict[str, Path]:
    """Bundled models that are copies of the tiny ones (the real ones are untouched)."""
    paths = {"celeba64": tmp_path / "bundled" / "celeba64", "utkface128": tmp_path / "bundled" / "utkface128"}
    shutil.copytree(tiny_model_dirs["celeba"], paths["celeba64"])
    shutil.copytree(tiny_model_dirs["utkface"], paths["utkface128"])
    monkeypatch.setattr(files, "BUNDLED", paths)
    return paths


def test_bundled_models_are_always_served_default_first(bundled):
    served, failures = load_served([])
    assert [s.name for s in served] == [TITLES[files.DEFAULT_BUNDLED], TITLES["celeba64"]] and failures == []
    assert [s.crop_style for s in served] == ["utkface", "celeba"]


def test_given_sources_come_first_and_a_bundled_one_is_not_served_twice(bundled, tiny_model_dirs, tmp_path):
    extra = tmp_path / "extra"
    shutil.copytree(tiny_model_dirs["celeba"], extra)
    served, failures = load_served([str(extra), str(bundled["celeba64"])])
    assert [s.name for s in served] == [str(extra), TITLES["celeba64"], TITLES["utkface128"]] and failures == []


def test_a_source_that_fails_is_listed_not_fatal(bundled, tmp_path):
    missing = tmp_path / "missing"
    served, failures = load_served([str(missing)])
    assert len(served) == 2 and len(failures) == 1 and failures[0].startswith(f"{missing}: ") and "not a directory" in failures[0]


def test_a_broken_bundled_model_is_listed_and_a_trimmed_one_skipped(bundled):
    weights = bundled["celeba64"] / files.WEIGHTS
    weights.write_bytes(weights.read_bytes()[:100])
    served, failures = load_served([])
    assert [s.name for s in served] == [TITLES["utkface128"]]
    assert len(failures) == 1 and failures[0].startswith(f"{TITLES['celeba64']}: cannot load the model in ")
    (bundled["utkface128"] / files.WEIGHTS).unlink()  # a checkout without it: not offered, not an error
    served, failures = load_served([])
    assert served == [] and len(failures) == 1
