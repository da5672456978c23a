"""The model card (sae.cli.card): every number from the directory's result files, the run's config and history, and
its data note (which dataset, so which front matter, title and licence); the privacy tables when present."""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import torch

from sae.cli import card, evaluate
from sae.core.model import SparseAutoencoder
from sae.zoo.files import DataNote
from tests.conftest import REPO, TINY


def _history(path, rows) -> None:
    """A run's history.csv; each epoch takes 60 s of steps unless a row says otherwise."""
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "images_per_s", "seconds", "val_psnr_160"])
        writer.writeheader()
        writer.writerows({"seconds": 60} | row for row in rows)


def test_card_carries_the_evaluation_table(tiny_model, fake_celeba, tmp_path):
    result = evaluate.run(tiny_model, fake_celeba, cache_dir=None, budgets=(8, 16))
    model_dir, run_dir = tmp_path / "model", tmp_path / "run"
    evaluate.write(result, model_dir)
    run_dir.mkdir()
    (run_dir / "train_config.json").write_text(json.dumps({"preset": "tiny", "epochs": 3, "batch_size": 8, "lr": 0.002, "model": {}}))
    _history(
        run_dir / "history.csv",
        [{"epoch": 1, "images_per_s": 100, "val_psnr_160": 20}, {"epoch": 2, "images_per_s": 200, "val_psnr_160": 21}],
    )
    text = card.write(model_dir, run_dir).read_text()
    assert text.startswith("---\n") and "research" in text
    assert evaluate.markdown(result) in text
    assert "Best validation epoch: 2" in text and "--epochs 3" in text and "1..k_max per batch" in text
    assert "about 2 minutes of training steps" in text
    assert "moving average" not in text and "MSE loss" in text and "--loss" not in text
    config = {"preset": "tiny", "epochs": 3, "train_k_max": 64, "ema_decay": 0.998, "model": {}}
    (run_dir / "train_config.json").write_text(json.dumps(config))
    text = card.write(model_dir, run_dir).read_text()
    assert "--epochs 3 --train-k-max 64`" in text and "1..64 per batch" in text and "moving average of the weights, decay 0.998" in text
    (run_dir / "train_config.json").write_text(json.dumps(config | {"loss": "log"}))
    text = card.write(model_dir, run_dir).read_text()
    assert "--train-k-max 64 --loss log`" in text and "mean log-MSE per image" in text


def test_card_of_a_fine_tuning_run_gives_both_commands(tiny_model, fake_celeba, tmp_path, monkeypatch):
    """A run started with --init DIR is described as stage 2 of the run that wrote DIR, with both command lines."""
    result = evaluate.run(tiny_model, fake_celeba, cache_dir=None, budgets=(8,))
    model_dir = tmp_path / "model"
    evaluate.write(result, model_dir)
    monkeypatch.chdir(tmp_path)  # train_config.json records --init relative to where training ran
    base, run = tmp_path / "runs" / "base", tmp_path / "runs" / "tuned"
    for directory, config, epochs in (
        (base, {"preset": "tiny", "epochs": 50, "train_k_max": 128, "lr": 0.001}, [26, 50]),
        (run, {"preset": "tiny", "epochs": 16, "init": "runs/base/best", "lr": 0.0003, "loss": "log", "train_k_max": 128}, [1, 16]),
    ):
        directory.mkdir(parents=True)
        (directory / "train_config.json").write_text(json.dumps(config | {"model": {}}))
        _history(directory / "history.csv", [{"epoch": e, "images_per_s": 300, "val_psnr_160": 20 + (e == epochs[0])} for e in epochs])
    text = card.write(model_dir, run).read_text()
    stage_1 = "python -m sae.cli.train --data ../shared/data/celeba10k --out runs/default --preset tiny --epochs 50 --train-k-max 128"
    assert f"Stage 1: `{stage_1}`" in text
    assert "--out runs/finetune --preset tiny --epochs 16 --lr 0.0003 --init runs/default/best --train-k-max 128 --loss log`" in text
    assert "Best validation epoch: 26" in text and "Stage 2 trained for 2 epochs" in text and "Best validation epoch: 1." in text


@pytest.fixture
def utk_model_dir(fake_utkface, tmp_path):
    """A 128x128 model evaluated on (fake) UTKFace, with its data note and its run's copies beside it."""
    torch.manual_seed(0)
    model = SparseAutoencoder(**(TINY | {"image_size": 128})).eval()
    directory = tmp_path / "utk"
    model.save_pretrained(directory)
    evaluate.write(evaluate.run(model, fake_utkface, cache_dir=None, budgets=(8,)), directory)
    config = {"preset": "default128", "epochs": 4, "data": "../shared/data/utkface200", "model": {}}
    (directory / "train_config.json").write_text(json.dumps(config))
    _history(directory / "history.csv", [{"epoch": 1, "images_per_s": 50, "val_psnr_160": 20}])
    DataNote("utkface", "UTKFace aligned and cropped faces, the train.txt list", "UTKFace: non-commercial research only").write(directory)
    return directory


def test_a_utkface_card_says_so_in_its_front_matter_title_and_data(utk_model_dir):
    text = card.write(utk_model_dir).read_text()  # the run directory defaults to the model directory
    front, _, body = text.partition("\n---\n")
    assert "license_name: utkface-non-commercial-research" in front and "datasets: [UTKFace]" in front
    assert "CelebA" not in front and "celeba" not in front
    assert "# Sparse autoencoder on convolutional groups, UTKFace 128x128" in body
    assert "Data: UTKFace aligned and cropped faces, the train.txt list." in body
    assert "Licence: UTKFace: non-commercial research only." in body
    assert "python -m sae.cli.train --data ../shared/data/utkface200 --out runs/default --preset default128" in body
    assert "`python -m sae.cli.evaluate --model DIR --data ../shared/data/utkface200`" in body
    assert "2 UTKFace faces at 128x128" in body
    assert json.loads((utk_model_dir / "config.json").read_text())["image_size"] == 128
    assert '"image_size": 128' in body  # the config as shipped


def test_a_model_without_a_data_note_is_described_as_celeba(tiny_model, fake_celeba, tmp_path):
    directory = tmp_path / "celeba"
    tiny_model.save_pretrained(directory)
    evaluate.write(evaluate.run(tiny_model, fake_celeba, cache_dir=None, budgets=(8,)), directory)
    (directory / "train_config.json").write_text(json.dumps({"preset": "tiny", "epochs": 1, "model": {}}))
    text = card.write(directory).read_text()
    assert "license_name: celeba-research-only" in text and "datasets: [CelebA]" in text
    assert "# Sparse autoencoder on convolutional groups, CelebA 64x64" in text
    assert f"Data: {DataNote().description}." in text and "--data ../shared/data/celeba10k" in text
    assert "## Privacy\n\n" + card.NO_PRIVACY in text and "both sharing schemes" not in text  # no privacy.md: says so


def test_the_privacy_tables_and_extra_tables_are_carried(utk_model_dir):
    (utk_model_dir / "privacy.md").write_text("| | keyed | paper |\n|---|---|---|\n| key holder | 30.00 / 0.900 | 30.01 / 0.900 |\n")
    text = card.write(utk_model_dir, extra={"Another model on the same faces": "| row | 1 |\n"}).read_text()
    assert "## Privacy: both sharing schemes" in text and "| key holder | 30.00 / 0.900 | 30.01 / 0.900 |" in text
    assert "ChaCha20" in text and "`python -m sae.cli.privacy_eval --model DIR --data ../shared/data/utkface200`" in text
    assert "## Another model on the same faces\n\n| row | 1 |" in text
    assert text.index("## Another model") < text.index("## Privacy")


def test_main_writes_the_card(utk_model_dir, tmp_path, capsys):
    table = tmp_path / "other.md"
    table.write_text("| other | table |\n")
    card.main(["--model", str(utk_model_dir), "--extra", "CelebA-64 model on these faces", str(table)])
    assert f"wrote {utk_model_dir / 'README.md'}" in capsys.readouterr().out
    text = (utk_model_dir / "README.md").read_text()
    assert "## CelebA-64 model on these faces\n\n| other | table |" in text and "UTKFace 128x128" in text


def test_python_dash_m_runs_the_card(utk_model_dir, tmp_path):
    """As a module, with its own run directory; the card reads the run's config and history from there."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "train_config.json").write_text(json.dumps({"preset": "default128", "epochs": 9, "data": "UTK", "model": {}}))
    _history(run_dir / "history.csv", [{"epoch": e, "images_per_s": 10, "val_psnr_160": e} for e in (1, 2, 3)])
    command = [sys.executable, "-m", "sae.cli.card", "--model", str(utk_model_dir), "--run", str(run_dir)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (utk_model_dir / "README.md").read_text()
    assert "--data UTK --out runs/default --preset default128 --epochs 9" in text and "Best validation epoch: 3" in text


def test_the_results_page_gathers_each_models_tables_and_privacy_verdicts(tmp_path):
    one, scaled = tmp_path / "one", tmp_path / "scaled"
    one.mkdir()
    scaled.mkdir()
    (one / "evaluation.md").write_text("| budget | ours |\n|---|---|\n| 320 | 29.00 / 0.900 |\n")
    (one / "privacy.json").write_text(json.dumps({"targets": {"linkage": True, "attributes": False}}))
    (scaled / "evaluation.md").write_text("| budget | scaled |\n")
    page = card.results_page({"Model one": one, "Model two": tmp_path / "missing"}, scaled)
    assert page.startswith("# Results") and "## Model one" in page and "| 320 | 29.00 / 0.900 |" in page
    assert "meets 1 of 2 targets; not met: attributes." in page and "Model two" not in page
    assert "scaled up to 128x128" in page and "| budget | scaled |" in page
