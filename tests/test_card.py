from __future__ import annotations

import csv
import json

from sae.cli import card, evaluate


def test_card_carries_the_evaluation_table(tiny_model, fake_celeba, tmp_path):
    result = evaluate.run(tiny_model, fake_celeba, cache_dir=None, budgets=(8, 16))
    model_dir, run_dir = tmp_path / "model", tmp_path / "run"
    evaluate.write(result, model_dir)
    run_dir.mkdir()
    (run_dir / "train_config.json").write_text(json.dumps({"preset": "tiny", "epochs": 3, "batch_size": 8, "lr": 0.002, "model": {}}))
    with open(run_dir / "history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["epoch", "images_per_s", "val_psnr_160"])
        writer.writeheader()
        writer.writerows([{"epoch": 1, "images_per_s": 100, "val_psnr_160": 20}, {"epoch": 2, "images_per_s": 200, "val_psnr_160": 21}])
    text = card.write(model_dir, run_dir).read_text()
    assert text.startswith("---\n") and "research" in text
    assert evaluate.markdown(result) in text
    assert "Best validation epoch: 2" in text and "--epochs 3" in text and "1..k_max per batch" in text
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
        with open(directory / "history.csv", "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=["epoch", "images_per_s", "val_psnr_160"])
            writer.writeheader()
            writer.writerows([{"epoch": e, "images_per_s": 300, "val_psnr_160": 20 + (e == epochs[0])} for e in epochs])
    text = card.write(model_dir, run).read_text()
    stage_1 = "python -m sae.cli.train --data ../shared/data/celeba10k --out runs/default --preset tiny --epochs 50 --train-k-max 128"
    assert f"Stage 1: `{stage_1}`" in text
    assert "--out runs/finetune --preset tiny --epochs 16 --lr 0.0003 --init runs/default/best --train-k-max 128 --loss log`" in text
    assert "Best validation epoch: 26" in text and "Stage 2 trained for 2 epochs" in text and "Best validation epoch: 1." in text
