"""Fitting the attacks shipped beside a model (sae.cli.fit_attacks): the scorers over the app's range of k and k', the
regression at the app's default setting of the paper's scheme, and the command that writes both."""

from __future__ import annotations

import pytest
import torch

from sae.cli import fit_attacks
from sae.cli.fit_attacks import RANK, _draw_setting, fit_regression, fit_scorer
from sae.core.fingerprint import weights_digest
from sae.privacy.learned import public_features
from sae.privacy.scheme import DEFAULT_K, SCHEMES, ambiguate, k_prime_for
from sae.zoo import files
from sae.zoo.shipped import load_regression, load_scorers

PAPER = SCHEMES["paper"].options()


def _codes(model, count: int = 32) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode(torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


def _public(model, k: int, count: int = 3, seed: int = 5):
    sparse = model.sparsify(_codes(model, count), k)
    return ambiguate(sparse, model.code_dim, torch.Generator().manual_seed(seed), k=k, **PAPER)[0]


def test_drawn_settings_cover_what_the_app_can_show():
    generator = torch.Generator().manual_seed(0)
    settings = [_draw_setting(16, 32, generator) for _ in range(400)]
    assert all(1 <= k <= 16 and k < k_prime <= 32 for k, k_prime in settings)
    assert {k for k, _ in settings} == set(range(1, 17))  # every k of the slider
    full = sum(k_prime == 32 for _, k_prime in settings)
    assert 0.4 < full / len(settings) < 0.7  # every position half the time (and a few ratios that reach it)
    assert any(k_prime < 32 for _, k_prime in settings)
    assert all(k_prime <= max(k + 1, round(8 * k)) for k, k_prime in settings if k_prime < 32)  # at most 8 k otherwise


def test_fitting_learns_something(tiny_model):
    scorer, losses = fit_scorer(_codes(tiny_model, 64), tiny_model.k_max, False, 80, torch.Generator().manual_seed(1), batch_size=16)
    assert len(losses) == 80 and sum(losses[-15:]) / 15 < sum(losses[:15]) / 15
    assert not scorer.training and scorer.context[0].out_features == fit_attacks.HIDDEN


def test_a_scorer_keeps_more_true_entries_than_chance_without_the_permutation(tiny_model):
    """Plain positions betray which coordinates a model's faces use: a scorer beats chance. Checked on held-out codes."""
    generator = torch.Generator().manual_seed(3)
    scorer, _ = fit_scorer(_codes(tiny_model, 64), tiny_model.k_max, False, 150, generator, batch_size=16)
    held_out = tiny_model.encode(torch.rand(16, 3, 64, 64, generator=torch.Generator().manual_seed(9))).detach()
    recovered = fit_attacks._recovery(scorer, held_out, 4, 32, False, torch.Generator().manual_seed(4))
    assert recovered > 4 / 32


def test_fit_regression_records_its_setting(tiny_model):
    k = min(DEFAULT_K, tiny_model.k_max)
    sparse = tiny_model.sparsify(_codes(tiny_model, 20), k)
    images = torch.rand(20, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    dual, settings = fit_regression(sparse, images, k, tiny_model.code_dim, torch.Generator().manual_seed(4))
    assert settings == {
        "k": str(k),
        "k_prime": str(k_prime_for(k, tiny_model.code_dim)),
        "permute": "1",
        "signs": "balanced",
        "value_bits": "8",
        "ridge": repr(dual.ridge),
    }
    assert dual.ridge in (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    assert dual.train_features.shape == (20, tiny_model.num_groups * (tiny_model.code_dim + int(settings["k_prime"])))


@pytest.mark.parametrize("ridges", [(1e-2,), (1e-3, 1.0, 100.0)])
def test_compact_regression_is_the_dual_form_when_the_rank_covers_the_targets(tiny_model, ridges):
    """Golden: with rank >= the rank of the training pixels (here N faces) the compact form predicts what the dual does."""
    from sae.privacy.learned import fit_regression_attack

    count, k = 20, 4
    sparse = tiny_model.sparsify(_codes(tiny_model, count), k)
    images = torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(4)
    dual = fit_regression_attack(sparse, images, tiny_model.code_dim, generator, ridges=ridges, k=k, **PAPER)
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
def model_dir(tiny_model, tmp_path):
    directory = tmp_path / "model"
    tiny_model.save_pretrained(directory)
    return directory


ARGS = ["--steps", "3", "--batch", "4", "--threads", "1"]


def test_one_command_fits_and_writes_both_beside_the_model(tiny_model, model_dir, fake_celeba, tmp_path, capsys):
    fit_attacks.main(["--model", str(model_dir), "--data", str(fake_celeba), "--cache-dir", str(tmp_path / "cache"), *ARGS])
    out = capsys.readouterr().out
    assert f"wrote {model_dir / files.SCORERS}" in out and "chance" in out and "plain: 3 steps of 4" in out and "permuted:" in out
    assert f"wrote {model_dir / files.REGRESSION}" in out and "validation PSNR" in out
    scorers, reason = load_scorers(model_dir, tiny_model)
    assert reason == "" and scorers.info["train_faces"] == "24" and scorers.info["steps"] == "3" and scorers.info["batch"] == "4"
    assert scorers.info["model_sha256"] == weights_digest(tiny_model)
    regression, reason = load_regression(model_dir, tiny_model)
    assert reason == "" and regression.info["train_faces"] == "24" and regression.attack.rank <= 24
    assert (regression.k, regression.k_prime) == (tiny_model.k_max, tiny_model.code_dim)  # the app's default: k = min(32, k_max)
    assert int(regression.info["rank"]) == regression.attack.rank <= RANK
    assert not list(model_dir.glob("*.partial"))


@pytest.mark.parametrize(
    "only, written, absent", [("learned", files.SCORERS, files.REGRESSION), ("regression", files.REGRESSION, files.SCORERS)]
)
def test_only_one_of_the_two(tiny_model, model_dir, fake_utkface, tmp_path, only, written, absent):
    """--only fits one; UTKFace data works the same (train.txt for the attacker, val.txt to check)."""
    fit_attacks.main(["--model", str(model_dir), "--data", str(fake_utkface), "--cache-dir", str(tmp_path / "c"), "--only", only, *ARGS])
    assert (model_dir / written).is_file() and not (model_dir / absent).exists()
    loaded = load_scorers(model_dir, tiny_model) if only == "learned" else load_regression(model_dir, tiny_model)
    assert loaded[1] == "" and loaded[0].info["train_faces"] == "6"


def test_a_model_that_does_not_load_is_one_line(tmp_path, fake_celeba):
    with pytest.raises(SystemExit, match=r"^sae.cli.fit_attacks: .*not a directory"):
        fit_attacks.main(["--model", str(tmp_path / "missing"), "--data", str(fake_celeba), *ARGS])
