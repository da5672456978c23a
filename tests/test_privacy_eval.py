"""The privacy evaluation (sae.cli.privacy_eval) on a tiny random model and a fake CelebA folder."""

from __future__ import annotations

import json

import pytest
import torch

from sae.cli import privacy_eval
from sae.core.model import SparseAutoencoder
from tests.conftest import TINY

torch.set_num_threads(1)

K = 4
ATTACKS = {"decode as is", "random keep-k", "magnitude (best side)", "re-encode", "learned (keep k)", "learned (soft)", "regression"}


@pytest.fixture(scope="module")
def tiny() -> SparseAutoencoder:
    torch.manual_seed(0)
    return SparseAutoencoder(**TINY).eval()


@pytest.fixture
def result(tiny, fake_celeba, tmp_path) -> dict:
    return privacy_eval.run(
        tiny, fake_celeba, k=K, ratios=(2, 4, 8, "full"), learned_steps=5, learned_batch=8, cache_dir=tmp_path / "cache", seed=3
    )


def test_configurations_merge_ratios_that_fill_every_position():
    assert privacy_eval.configurations((2, 4, 8, "full"), 32, 256) == [("2", 64), ("4", 128), ("8 = full", 256)]
    assert privacy_eval.configurations((2, "full"), 4, 32) == [("2", 8), ("full", 32)]


def test_every_configuration_and_attack_is_measured(result):
    assert result["test_faces"] == 4 and result["train_faces_for_learned_attack"] == 24
    schemes = [(False, "anchor"), (True, "anchor"), (True, "balanced")]
    assert [(r["k_prime"], r["permute"], r["signs"]) for r in result["rows"]] == [(k, *s) for k in (8, 16, 32) for s in schemes]
    for row in result["rows"]:
        assert set(row["attacks"]) == ATTACKS
        assert row["chance"] == K / row["k_prime"]
        assert row["best_attack"] in row["attacks"]
        assert row["attacks"]["decode as is"]["support_recovery"] == pytest.approx(row["chance"])
        assert row["attacks"]["regression"]["support_recovery"] is None
    assert set(result["key_holder_fractions"]) == {"1", "0.5", "0.25"}
    assert set(result["value_bits_cost"]) == {"16", "8"}


def test_buggy_decoys_are_broken_and_fair_ones_hold_near_chance(result):
    """Values alone say nothing with fair decoys; positions can (a model uses some atoms far more often than others:
    re-encode and the learned attack beat chance without the permutation), so with it every attack is near chance."""
    assert result["buggy_decoys"]["magnitude (smallest)"]["support_recovery"] > 0.95
    for row in result["rows"]:
        names = ["random keep-k", "magnitude (best side)"] + (["re-encode", "learned (keep k)"] if row["permute"] else [])
        for name in names:
            assert abs(row["attacks"][name]["support_recovery"] - row["chance"]) < 0.2, (row["k_prime"], name)


def test_key_holder_sees_the_face_and_attacks_do_not_beat_it_at_fraction_one(result):
    for row in result["rows"]:
        assert row["key_holder"]["psnr"] == pytest.approx(result["key_holder_fractions"]["1"]["psnr"], abs=1e-3)


def test_write_produces_json_markdown_and_html(result, tmp_path):
    privacy_eval.write(result, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "privacy.json").read_text())["k"] == K
    table = (tmp_path / "out" / "privacy.md").read_text()
    assert "| k'/k (k') |" in table and "8 = full (32)" in table and "buggy decoys" in table and "Mean face" in table
    assert "plotly" in (tmp_path / "out" / "privacy.html").read_text().lower()


def test_cli(tiny, fake_celeba, tmp_path, capsys):
    tiny.save_pretrained(tmp_path / "model")
    argv = ["--model", str(tmp_path / "model"), "--data", str(fake_celeba), "--out", str(tmp_path / "out"), "--k", str(K)]
    argv += ["--ratios", "2", "full", "--learned-steps", "2", "--learned-batch", "4", "--cache-dir", str(tmp_path / "cache")]
    privacy_eval.main(argv)
    assert (tmp_path / "out" / "privacy.md").exists()
    assert "key holder" in capsys.readouterr().out
