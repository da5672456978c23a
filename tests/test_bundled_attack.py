"""The learned and regression attacks bundled beside the model: fit, save, load, refuse a stale or broken file, and the
app's option."""

from __future__ import annotations

import gradio as gr
import pytest
import torch

from sae.app.ui import PANELS, Handlers, build
from sae.core.presets import PRESETS
from sae.privacy import scheme as privacy
from sae.privacy.attacks import CompactRegression, LearnedAttack, fit_regression_attack, public_features
from sae.zoo import shipped as bundled_attack
from sae.zoo.hub import LoadedModel
from sae.zoo.shipped import (
    FILENAME,
    HIDDEN,
    RANK,
    REGRESSION_FILENAME,
    fit_regression,
    fit_scorer,
    load,
    load_regression,
    save,
    save_regression,
    weights_digest,
)

DEFAULTS = dict(owner_fraction=1.0, decoys=True, ratio=2.0, fill_all=False, permute=False, known=0.5)


def _codes(model, count: int = 32) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode(torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


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
        name: fit_scorer(codes, tiny_model.k_max, permute, 5, generator, batch_size=8) for name, permute in bundled_attack.SCHEMES.items()
    }
    save(scorers, model_dir / FILENAME, weights_digest(model_dir), {"steps": "5"})
    return scorers


def test_fitting_learns_something(tiny_model):
    losses: list[float] = []
    fit_scorer(
        _codes(tiny_model, 64),
        tiny_model.k_max,
        False,
        80,
        torch.Generator().manual_seed(1),
        batch_size=16,
        log=lambda _, loss: losses.append(loss),
    )
    assert sum(losses[-15:]) / 15 < sum(losses[:15]) / 15


def test_save_then_load_round_trip(tiny_model, model_dir, fitted):
    scorers, reason = load(model_dir, tiny_model)
    assert reason == "" and scorers.info["steps"] == "5" and scorers.info["model_sha256"] == weights_digest(model_dir)
    from sae.privacy import scheme as privacy

    codes = tiny_model.sparsify(_codes(tiny_model, 4), 4)
    public, _ = privacy.ambiguate(codes, 8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(scorers.for_scheme(False)(public), fitted["plain"](public), atol=2e-2)  # float16 storage
        assert torch.allclose(scorers.for_scheme(True)(public), fitted["permuted"](public), atol=2e-2)
    assert not list(model_dir.glob("*.partial"))


def test_bundled_size_for_the_real_code_shape(tmp_path):
    """The default preset's code shape (the bundled model's): both scorers stay under the 2 MB budget for bundled artifacts."""
    shape = PRESETS["default"]
    scorers = {name: LearnedAttack(shape["num_groups"], shape["code_dim"], HIDDEN) for name in bundled_attack.SCHEMES}
    path = tmp_path / FILENAME
    save(scorers, path, "0" * 64)
    assert path.stat().st_size < 2_000_000


def test_missing_stale_or_broken_file_hides_the_option(tiny_model, model_dir, fitted):
    assert load(None, tiny_model)[0] is None
    other = model_dir.parent / "other"
    tiny_model.save_pretrained(other)
    assert "no learned_attack.safetensors" in load(other, tiny_model)[1]
    (other / FILENAME).write_bytes((model_dir / FILENAME).read_bytes())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # "retrained": the weights, hence the digest, differ
    tiny_model.save_pretrained(other)
    scorers, reason = load(other, tiny_model)
    assert scorers is None and "fitted for other model weights" in reason and "python -m sae.zoo.shipped" in reason
    path = model_dir / FILENAME
    path.write_bytes(path.read_bytes()[:200])
    scorers, reason = load(model_dir, tiny_model)
    assert scorers is None and "unreadable" in reason and "\n" not in reason


def test_app_offers_the_learned_attack_when_bundled(tiny_model, model_dir, fitted, tmp_path):
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", model_dir), outbox=tmp_path / "outbox")
    assert {"learned (keep k)", "learned (soft)"} <= set(handlers.attacks)
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    for extra, name in (("learned (keep k)", "learned attack (keep k)"), ("learned (soft)", "learned attack (soft)")):
        for permute in (False, True):
            outputs = handlers.update(ref, None, 4, *(DEFAULTS | {"permute": permute}).values(), extra)
            assert outputs[2 * PANELS - 1].startswith(f"**{name}**") and outputs[PANELS - 1].shape == (256, 256, 3)


def test_app_hides_the_learned_attack_with_a_reason(tiny_model, tmp_path):
    loaded = LoadedModel(tiny_model, "test", "tiny", tmp_path)
    handlers = Handlers(loaded, outbox=tmp_path / "outbox")
    assert "learned (keep k)" not in handlers.attacks and "magnitude" in handlers.attacks
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    with pytest.raises(gr.Error, match="not available: no learned_attack"):
        handlers.update(ref, None, 4, *DEFAULTS.values(), "learned (keep k)")
    radio = next(block for block in build(loaded).blocks.values() if getattr(block, "elem_id", None) == "extra-attack")
    assert [choice[1] for choice in radio.choices] == handlers.attacks and "Learned attack not offered" in radio.info


def test_one_command_fits_and_writes_beside_the_model(tiny_model, model_dir, fake_celeba, capsys):
    bundled_attack.main(["--model", str(model_dir), "--data", str(fake_celeba), "--steps", "3", "--batch", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert f"wrote {model_dir / FILENAME}" in out and "chance" in out
    scorers, reason = load(model_dir, tiny_model)
    assert reason == "" and scorers.info["train_faces"] == "24"
    assert f"wrote {model_dir / REGRESSION_FILENAME}" in out and "validation PSNR" in out
    regression, reason = load_regression(model_dir, tiny_model)
    assert reason == "" and regression.info["train_faces"] == "24" and regression.attack.rank <= 24


def test_hub_snapshot_brings_the_scorers_along(tiny_model, model_dir, fitted, tmp_path, monkeypatch):
    from sae.zoo.hub import load_model
    from tests.test_hub import COMMIT, REPO_ID, FakeHub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    files = {name: (model_dir / name).read_bytes() for name in ("config.json", "model.safetensors", FILENAME)}
    hub = FakeHub({COMMIT: files})
    try:
        loaded = load_model(REPO_ID, fallback=model_dir, endpoint=hub.url, cache_dir=tmp_path / "cache")
    finally:
        hub.close()
    assert loaded.source == f"hub:{REPO_ID}" and (loaded.directory / FILENAME).is_file()
    scorers, reason = load(loaded.directory, loaded.model)
    assert reason == "" and scorers is not None


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"num_groups": "four"}, "malformed metadata (invalid literal"),
        ({"hidden": "16.5"}, "malformed metadata (invalid literal"),
        ({"hidden": None}, "malformed metadata (no 'hidden' entry)"),
        ({"code_dim": None}, "malformed metadata (no 'code_dim' entry)"),
        ({"hidden": "0"}, "malformed metadata (hidden = 0)"),
    ],
)
def test_malformed_metadata_hides_the_option_instead_of_crashing(tiny_model, model_dir, fitted, tmp_path, change, reason):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = model_dir / FILENAME
    with safe_open(str(path), framework="pt") as file:
        metadata, tensors = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}
    save_file(tensors, path, metadata={key: value for key, value in (metadata | change).items() if value is not None})
    scorers, text = load(model_dir, tiny_model)
    assert scorers is None and reason in text and "\n" not in text
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", model_dir), outbox=tmp_path / "outbox")  # the app still starts
    assert "learned (keep k)" not in handlers.attacks and reason in handlers.scorer_note


# ---------------------------------------------------------------------------------------------------
# The regression attack, compacted to a few principal pixel axes
# ---------------------------------------------------------------------------------------------------

DEFAULT_SCHEME = dict(permute=privacy.DEFAULT_PERMUTE, signs=privacy.DEFAULT_SIGNS, value_bits=privacy.DEFAULT_VALUE_BITS)


def _public(model, k: int, count: int = 3, seed: int = 5):
    sparse = model.sparsify(_codes(model, count), k)
    return privacy.ambiguate(sparse, model.code_dim, torch.Generator().manual_seed(seed), k=k, **DEFAULT_SCHEME)[0]


@pytest.mark.parametrize("ridges", [(1e-2,), (1e-3, 1.0, 100.0)])
def test_compact_regression_is_the_dual_form_when_the_rank_covers_the_targets(tiny_model, ridges):
    """Golden: with rank >= the rank of the training pixels (here N faces) the compact form predicts what the dual does."""
    count, k = 20, 4
    sparse = tiny_model.sparsify(_codes(tiny_model, count), k)
    images = torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)
    dual = fit_regression_attack(sparse, images, tiny_model.code_dim, generator, ridges=ridges, k=k, **DEFAULT_SCHEME)
    public = _public(tiny_model, k)
    features = public_features(public, dual.value_scale)
    expected = (features - dual.feature_mean) @ dual.train_features.T @ dual.coefficients + dual.pixel_mean  # unclamped
    compact = dual.compact(count)
    assert compact.rank == count and compact.weights.shape == (features.shape[1], count)
    unclamped = ((features - compact.feature_mean) @ compact.weights) @ compact.basis.T + compact.pixel_mean
    assert torch.allclose(unclamped, expected, atol=1e-9, rtol=1e-7)
    assert torch.allclose(compact.predict(public, (3, 64, 64)), dual.predict(public, (3, 64, 64)), atol=1e-6)
    assert torch.allclose(compact.basis.T @ compact.basis, torch.eye(count, dtype=compact.basis.dtype), atol=1e-9)
    smaller = dual.compact(3)  # fewer axes: a different (weaker) attack, but the same pixel range and mean
    assert smaller.rank == 3 and not torch.allclose(smaller.predict(public, (3, 64, 64)), dual.predict(public, (3, 64, 64)), atol=1e-3)


@pytest.fixture
def regression_fitted(tiny_model, model_dir):
    """The regression at the app's default setting for the tiny model (k = 16 = k_max, k' = 32), saved beside it."""
    k = min(privacy.DEFAULT_K, tiny_model.k_max)
    images = torch.rand(24, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    sparse, generator = tiny_model.sparsify(_codes(tiny_model, 24), k), torch.Generator().manual_seed(7)
    dual, info = fit_regression(sparse, images, k, tiny_model.code_dim, generator)
    attack = dual.compact(RANK)
    save_regression(attack, model_dir / REGRESSION_FILENAME, weights_digest(model_dir), info | {"train_faces": "24"})
    return attack


def test_regression_save_then_load_round_trip(tiny_model, model_dir, regression_fitted):
    bundled, reason = load_regression(model_dir, tiny_model)
    assert reason == "" and bundled.info["model_sha256"] == weights_digest(model_dir)
    assert (bundled.k, bundled.k_prime, bundled.permute, bundled.signs) == (tiny_model.k_max, tiny_model.code_dim, True, "balanced")
    assert bundled.attack.rank == regression_fitted.rank and bundled.attack.weights.dtype == torch.float32
    public = _public(tiny_model, bundled.k)
    assert torch.allclose(bundled.attack.predict(public, (3, 64, 64)), regression_fitted.predict(public, (3, 64, 64)), atol=2e-2)  # float16
    assert bundled.mismatch(bundled.k, bundled.k_prime, True, "balanced", 8) == ""
    assert "fitted for k = 16, k' = 32, permuted" in bundled.mismatch(4, bundled.k_prime, True, "balanced", 8)
    assert not list(model_dir.glob("*.partial"))


def test_bundled_attack_files_fit_the_budget_for_the_real_code_shape(tmp_path):
    """The default preset's code shape at the default rank: both bundled files together stay under 8 MB."""
    shape = PRESETS["default"]
    features, pixels = shape["num_groups"] * 2 * shape["code_dim"], 3 * 64 * 64
    attack = CompactRegression(torch.zeros(features, RANK), torch.zeros(pixels, RANK), torch.zeros(features), torch.zeros(pixels), 1.0)
    save_regression(attack, tmp_path / REGRESSION_FILENAME, "0" * 64, {"k": "32"})
    scorers = {name: LearnedAttack(shape["num_groups"], shape["code_dim"], HIDDEN) for name in bundled_attack.SCHEMES}
    save(scorers, tmp_path / FILENAME, "0" * 64)
    assert (tmp_path / REGRESSION_FILENAME).stat().st_size + (tmp_path / FILENAME).stat().st_size < 8_000_000


def test_missing_stale_or_broken_regression_hides_the_option(tiny_model, model_dir, regression_fitted, tmp_path):
    assert load_regression(None, tiny_model)[0] is None
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", tmp_path), outbox=tmp_path / "outbox")  # no file at all
    assert "regression" not in handlers.attacks and "no regression_attack.safetensors" in handlers.attack_note()
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    with pytest.raises(gr.Error, match="regression attack is not available: no regression_attack"):
        handlers.update(ref, None, 16, *(DEFAULTS | {"fill_all": True, "permute": True}).values(), "regression")
    other = model_dir.parent / "other"
    tiny_model.save_pretrained(other)
    (other / REGRESSION_FILENAME).write_bytes((model_dir / REGRESSION_FILENAME).read_bytes())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # "retrained"
    tiny_model.save_pretrained(other)
    bundled, reason = load_regression(other, tiny_model)
    assert bundled is None and "fitted for other model weights" in reason and "python -m sae.zoo.shipped" in reason
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", other), outbox=tmp_path / "outbox2")
    assert "regression" not in handlers.attacks and "Regression attack not offered" in handlers.attack_note()
    path = model_dir / REGRESSION_FILENAME
    path.write_bytes(path.read_bytes()[:200])
    bundled, reason = load_regression(model_dir, tiny_model)
    assert bundled is None and "unreadable" in reason and "\n" not in reason


def test_app_shows_the_regression_panel_at_its_setting_only(tiny_model, model_dir, regression_fitted, tmp_path):
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", model_dir), outbox=tmp_path / "outbox")
    assert "regression" in handlers.attacks and "learned (keep k)" not in handlers.attacks  # no scorer file here
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    at_default = (DEFAULTS | {"fill_all": True, "permute": True}).values()
    outputs = handlers.update(ref, None, tiny_model.k_max, *at_default, "regression")
    assert outputs[2 * PANELS - 1].startswith("**regression attack**: PSNR ") and outputs[PANELS - 1].shape == (256, 256, 3)
    outputs = handlers.update(ref, None, 4, *at_default, "regression")  # another k: not what it was fitted for
    assert outputs[PANELS - 1] is None and "not shown: the regression attack is fitted for k = 16" in outputs[2 * PANELS - 1]
    assert outputs[PANELS - 2] is not None  # the other panels are still there
    radio = next(block for block in build(handlers.loaded).blocks.values() if getattr(block, "elem_id", None) == "extra-attack")
    assert "regression" in [choice[1] for choice in radio.choices] and "k' = 32" in radio.info
