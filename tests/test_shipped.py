"""The attacks shipped beside a model (sae.zoo.shipped): save and load, stamped with the model's weights digest; a
missing, stale, foreign or broken file gives a one-line reason instead of an attack."""

from __future__ import annotations

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from sae.cli.fit_attacks import HIDDEN, RANK, fit_regression, fit_scorer
from sae.core.fingerprint import weights_digest
from sae.core.presets import PRESETS
from sae.privacy.learned import CompactRegression, LearnedAttack
from sae.privacy.scheme import DEFAULT_K, SCHEMES, ambiguate
from sae.zoo import files, shipped
from sae.zoo.shipped import (
    FIT_COMMAND,
    BundledRegression,
    LearnedScorers,
    ShippedAttacks,
    load_regression,
    load_scorers,
    load_shipped,
    save_regression,
    save_scorers,
)

PAPER = SCHEMES["paper"].options()


def _codes(model, count: int = 32) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode(torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


def _public(model, k: int, count: int = 3, seed: int = 5, **options):
    sparse = model.sparsify(_codes(model, count), k)
    return ambiguate(sparse, model.code_dim, torch.Generator().manual_seed(seed), k=k, **(PAPER | options))[0]


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    directory = tmp_path / "model"
    tiny_model.save_pretrained(directory)
    return directory


@pytest.fixture
def fitted(tiny_model, model_dir):
    """Both scorers fitted for the tiny model (a few steps) and saved beside it."""
    generator = torch.Generator().manual_seed(0)
    codes = _codes(tiny_model)
    scorers = {
        name: fit_scorer(codes, tiny_model.k_max, permute, 5, generator, batch_size=8)[0] for name, permute in shipped.SCHEMES.items()
    }
    save_scorers(scorers, model_dir / files.SCORERS, weights_digest(tiny_model), {"steps": "5"})
    return scorers


@pytest.fixture
def regression_fitted(tiny_model, model_dir):
    """The regression at the app's default setting for the tiny model (k = 16 = k_max, k' = 32), saved beside it."""
    k = min(DEFAULT_K, tiny_model.k_max)
    images = torch.rand(24, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    sparse, generator = tiny_model.sparsify(_codes(tiny_model, 24), k), torch.Generator().manual_seed(7)
    dual, info = fit_regression(sparse, images, k, tiny_model.code_dim, generator)
    attack = dual.compact(RANK)
    save_regression(attack, model_dir / files.REGRESSION, weights_digest(tiny_model), info | {"train_faces": "24"})
    return attack


def _rewrite(path, change: dict | None = None, tensors_change=None) -> None:
    """Rewrite a safetensors file with some metadata entries changed (None: removed) or its tensors changed."""
    with safe_open(str(path), framework="pt") as file:
        metadata, tensors = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}
    if tensors_change is not None:
        tensors = tensors_change(tensors)
    save_file(tensors, path, metadata={key: value for key, value in (metadata | (change or {})).items() if value is not None})


# ---------------------------------------------------------------------------------------------------
# The learned attack's scorers
# ---------------------------------------------------------------------------------------------------


def test_save_then_load_round_trip(tiny_model, model_dir, fitted):
    scorers, reason = load_scorers(model_dir, tiny_model)
    assert reason == "" and isinstance(scorers, LearnedScorers)
    assert scorers.info["steps"] == "5" and scorers.info["format"] == "2" == shipped.FORMAT
    assert scorers.info["model_sha256"] == weights_digest(tiny_model)
    assert (scorers.info["num_groups"], scorers.info["code_dim"], scorers.info["hidden"]) == ("4", "32", str(HIDDEN))
    for permute in (False, True):
        public = _public(tiny_model, 4, permute=permute)
        with torch.no_grad():
            expected = fitted["permuted" if permute else "plain"](public)
            assert torch.allclose(scorers.for_scheme(False, permute)(public), expected, atol=2e-2)  # float16 storage
    assert scorers.for_scheme(False, False) is scorers.plain and scorers.for_scheme(False, True) is scorers.permuted
    assert not scorers.plain.training and not scorers.permuted.training
    assert not list(model_dir.glob("*.partial"))


def test_keyed_codes_get_no_scorer(tiny_model, model_dir, fitted):
    """A keyed public code is uniformly random to anyone without the key: there is nothing a scorer could learn."""
    scorers, _ = load_scorers(model_dir, tiny_model)
    assert scorers.for_scheme(True, True) is None and scorers.for_scheme(True, False) is None


def test_the_file_is_float16(model_dir, fitted):
    with safe_open(str(model_dir / files.SCORERS), framework="pt") as file:
        assert {file.get_tensor(name).dtype for name in file.keys()} == {torch.float16}
        assert {name.split(".")[0] for name in file.keys()} == set(shipped.SCHEMES)


def test_bundled_size_for_the_real_code_shape(tmp_path):
    """The default preset's code shape (the bundled model's): both scorers stay under the 2 MB budget for bundled artifacts."""
    shape = PRESETS["default"]
    scorers = {name: LearnedAttack(shape["num_groups"], shape["code_dim"], HIDDEN) for name in shipped.SCHEMES}
    path = tmp_path / files.SCORERS
    save_scorers(scorers, path, "0" * 64)
    assert path.stat().st_size < 2_000_000


def test_missing_stale_or_broken_file_gives_a_reason(tiny_model, model_dir, fitted):
    assert load_scorers(None, tiny_model)[0] is None
    other = model_dir.parent / "other"
    tiny_model.save_pretrained(other)
    scorers, reason = load_scorers(other, tiny_model)
    assert scorers is None and "no learned_attack.safetensors" in reason and FIT_COMMAND in reason
    (other / files.SCORERS).write_bytes((model_dir / files.SCORERS).read_bytes())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # "retrained": the weights, hence the digest, differ
    scorers, reason = load_scorers(other, tiny_model)
    assert scorers is None and "fitted for other model weights" in reason and "python -m sae.cli.fit_attacks" in reason
    path = model_dir / files.SCORERS
    path.write_bytes(path.read_bytes()[:200])
    scorers, reason = load_scorers(model_dir, tiny_model)
    assert scorers is None and "unreadable" in reason and "\n" not in reason


def test_a_relabeled_model_is_another_model(tiny_model, model_dir, fitted):
    """Ordering the code coordinates keeps every reconstruction but moves what each coordinate means: refit."""
    from sae.core.ordering import order_codes_by_importance

    order_codes_by_importance(tiny_model, torch.rand(8, 3, 64, 64, generator=torch.Generator().manual_seed(2)), 4)
    assert "fitted for other model weights" in load_scorers(model_dir, tiny_model)[1]


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"num_groups": "four"}, "malformed metadata (invalid literal"),
        ({"hidden": "16.5"}, "malformed metadata (invalid literal"),
        ({"hidden": None}, "malformed metadata (no 'hidden' entry)"),
        ({"code_dim": None}, "malformed metadata (no 'code_dim' entry)"),
        ({"hidden": "0"}, "malformed metadata (hidden = 0)"),
        ({"hidden": "8"}, "does not match the scorer's layout"),
        ({"num_groups": "2"}, "is for another code shape"),
        ({"format": "1"}, "has format '1', expected '2'; refit it with `python -m sae.cli.fit_attacks"),
        ({"format": None}, "has format None, expected '2'"),
        ({"model_sha256": None}, "fitted for other model weights"),
    ],
)
def test_malformed_metadata_gives_a_reason_instead_of_crashing(tiny_model, model_dir, fitted, change, reason):
    _rewrite(model_dir / files.SCORERS, change)
    scorers, text = load_scorers(model_dir, tiny_model)
    assert scorers is None and reason in text and "\n" not in text


def test_missing_tensors_give_a_reason(tiny_model, model_dir, fitted):
    _rewrite(model_dir / files.SCORERS, tensors_change=lambda tensors: {k: v for k, v in tensors.items() if not k.startswith("permuted.")})
    scorers, text = load_scorers(model_dir, tiny_model)
    assert scorers is None and "does not match the scorer's layout" in text and "\n" not in text


# ---------------------------------------------------------------------------------------------------
# The regression attack, compact form, at one setting of the paper's scheme
# ---------------------------------------------------------------------------------------------------


def test_regression_save_then_load_round_trip(tiny_model, model_dir, regression_fitted):
    bundled, reason = load_regression(model_dir, tiny_model)
    assert reason == "" and isinstance(bundled, BundledRegression)
    assert bundled.info["model_sha256"] == weights_digest(tiny_model) and bundled.info["format"] == "2" == shipped.REGRESSION_FORMAT
    assert (bundled.k, bundled.k_prime, bundled.permute, bundled.signs, bundled.value_bits) == (
        tiny_model.k_max, tiny_model.code_dim, True, "balanced", 8
    )  # fmt: skip
    assert bundled.info["train_faces"] == "24" and float(bundled.info["value_scale"]) == regression_fitted.value_scale
    assert bundled.attack.rank == regression_fitted.rank and bundled.attack.weights.dtype == torch.float32
    public = _public(tiny_model, bundled.k)
    assert torch.allclose(bundled.attack.predict(public, (3, 64, 64)), regression_fitted.predict(public, (3, 64, 64)), atol=2e-2)  # float16
    assert not list(model_dir.glob("*.partial"))


def test_regression_mismatch_says_which_setting_it_was_fitted_for(tiny_model, model_dir, regression_fitted):
    bundled, _ = load_regression(model_dir, tiny_model)
    k, k_prime = bundled.k, bundled.k_prime
    assert bundled.mismatch(k, k_prime, False, True, "balanced", 8) == ""
    expected = f"fitted for the paper's scheme at k = {k}, k' = {k_prime} only; choose that scheme and those settings to see it"
    for setting in (
        (4, k_prime, False, True, "balanced", 8),  # another k
        (k, 2 * 4, False, True, "balanced", 8),  # another k'
        (k, k_prime, True, True, "balanced", 8),  # the keyed scheme at the same k and k'
        (k, k_prime, False, False, "balanced", 8),  # not permuted
        (k, k_prime, False, True, "anchor", 8),
        (k, k_prime, False, True, "balanced", 16),
    ):
        assert bundled.mismatch(*setting) == expected


def test_bundled_attack_files_fit_the_budget_for_the_real_code_shape(tmp_path):
    """The default preset's code shape at the default rank: both bundled files together stay under 8 MB."""
    shape = PRESETS["default"]
    features, pixels = shape["num_groups"] * 2 * shape["code_dim"], 3 * 64 * 64  # k' = code_dim: the dense code + k' values
    attack = CompactRegression(torch.zeros(features, RANK), torch.zeros(pixels, RANK), torch.zeros(features), torch.zeros(pixels), 1.0)
    save_regression(attack, tmp_path / files.REGRESSION, "0" * 64, {"k": "32"})
    scorers = {name: LearnedAttack(shape["num_groups"], shape["code_dim"], HIDDEN) for name in shipped.SCHEMES}
    save_scorers(scorers, tmp_path / files.SCORERS, "0" * 64)
    assert (tmp_path / files.REGRESSION).stat().st_size + (tmp_path / files.SCORERS).stat().st_size < 8_000_000


def test_a_regression_that_overflows_float16_is_refused(tmp_path):
    attack = CompactRegression(torch.full((4, 2), 1e6), torch.zeros(6, 2), torch.zeros(4), torch.zeros(6), 1.0)
    with pytest.raises(ValueError, match="overflow float16"):
        save_regression(attack, tmp_path / files.REGRESSION, "0" * 64, {"k": "1"})
    assert not list(tmp_path.iterdir())


def test_missing_stale_or_broken_regression_gives_a_reason(tiny_model, model_dir, regression_fitted, tmp_path):
    assert load_regression(None, tiny_model)[0] is None
    bundled, reason = load_regression(tmp_path, tiny_model)
    assert bundled is None and "no regression_attack.safetensors" in reason and FIT_COMMAND in reason
    other = model_dir.parent / "other"
    other.mkdir()
    (other / files.REGRESSION).write_bytes((model_dir / files.REGRESSION).read_bytes())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # "retrained"
    bundled, reason = load_regression(other, tiny_model)
    assert bundled is None and "fitted for other model weights" in reason and "python -m sae.cli.fit_attacks" in reason
    path = model_dir / files.REGRESSION
    path.write_bytes(path.read_bytes()[:200])
    bundled, reason = load_regression(model_dir, tiny_model)
    assert bundled is None and "unreadable" in reason and "\n" not in reason


@pytest.mark.parametrize(
    "change, tensors_change, reason",
    [
        ({"k": None}, None, "is malformed (no 'k' entry)"),
        ({"signs": None}, None, "is malformed (no 'signs' entry)"),
        ({"value_scale": "big"}, None, "is malformed (could not convert string to float"),
        ({"permute": "yes"}, None, "is malformed (invalid literal"),
        ({"k_prime": "31"}, None, "is for another code shape"),
        ({"k": "40"}, None, "is for another code shape"),
        ({}, lambda t: {k: v for k, v in t.items() if k != "basis"}, "is malformed (no 'basis' entry)"),
        ({}, lambda t: t | {"basis": t["basis"][:, :1].contiguous()}, "has inconsistent shapes"),
        ({}, lambda t: t | {"pixel_mean": t["pixel_mean"][:5]}, "has inconsistent shapes"),
        ({"format": "1"}, None, "has format '1', expected '2'"),
    ],
)
def test_malformed_regression_gives_a_reason(tiny_model, model_dir, regression_fitted, change, tensors_change, reason):
    _rewrite(model_dir / files.REGRESSION, change, tensors_change)
    bundled, text = load_regression(model_dir, tiny_model)
    assert bundled is None and reason in text and "\n" not in text


# ---------------------------------------------------------------------------------------------------
# Both, as the app loads them
# ---------------------------------------------------------------------------------------------------


def test_load_shipped_brings_both_or_says_why_not(tiny_model, model_dir, fitted, regression_fitted, tmp_path):
    both = load_shipped(model_dir, tiny_model)
    assert isinstance(both, ShippedAttacks) and both.scorers is not None and both.regression is not None
    assert both.scorer_note == both.regression_note == ""
    neither = load_shipped(tmp_path / "empty", tiny_model)
    assert neither.scorers is None and neither.regression is None
    assert "no learned_attack.safetensors" in neither.scorer_note and "no regression_attack.safetensors" in neither.regression_note
    nowhere = ShippedAttacks(None, None, load_scorers(None, tiny_model)[1], load_regression(None, tiny_model)[1])
    assert load_shipped(None, tiny_model) == nowhere
    (model_dir / files.REGRESSION).unlink()
    one = load_shipped(model_dir, tiny_model)
    assert one.scorers is not None and one.scorer_note == "" and one.regression is None and "no regression" in one.regression_note


def test_the_bundled_celeba_model_ships_attacks_fitted_for_its_weights():
    """What the app shows for the bundled model must be fitted for exactly its weights (a refit after relabeling)."""
    directory = files.BUNDLED["celeba64"]
    if not (directory / files.WEIGHTS).is_file():
        pytest.skip("the bundled CelebA-64 model is not in this checkout")
    from sae.core.model import SparseAutoencoder

    attacks = load_shipped(directory, SparseAutoencoder.from_pretrained(directory, strict=True))
    assert attacks.scorer_note == "" and attacks.regression_note == "", (attacks.scorer_note, attacks.regression_note)
