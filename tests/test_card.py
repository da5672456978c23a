from __future__ import annotations

import csv
import json

from sae import card, evaluate


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
    assert "moving average" not in text
    config = {"preset": "tiny", "epochs": 3, "train_k_max": 64, "ema_decay": 0.998, "model": {}}
    (run_dir / "train_config.json").write_text(json.dumps(config))
    text = card.write(model_dir, run_dir).read_text()
    assert "--epochs 3 --train-k-max 64`" in text and "1..64 per batch" in text and "moving average of the weights, decay 0.998" in text
