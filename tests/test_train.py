"""Training (sae.cli.train): the loss, k drawn log-uniformly, the schedule, and whole runs on fake CelebA and UTKFace."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from sae.cli.train import LOG_LOSS_SCALE, TrainConfig, learning_rate, main, make_optimizer, reconstruction_loss, sample_k
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS


def test_a_few_steps_reduce_the_loss(tiny_model):
    torch.manual_seed(0)
    ramp = torch.linspace(0, 1, 64)
    x = torch.stack([ramp[None, :, None] * ramp[None, None, :] * c for c in torch.linspace(0.3, 1, 8)]).expand(8, 3, 64, 64)
    tiny_model.train()
    optimizer = torch.optim.Adam(tiny_model.parameters(), lr=2e-3)
    before = reconstruction_loss(tiny_model, x, 4).item()
    for _ in range(30):
        loss = reconstruction_loss(tiny_model, x, 4)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.7 * before


def test_sample_k_covers_the_range_log_uniformly():
    generator = torch.Generator().manual_seed(0)
    ks = [sample_k(128, generator) for _ in range(4000)]
    assert min(ks) == 1 and max(ks) == 128
    small, large = sum(k <= 11 for k in ks), sum(k > 11 for k in ks)
    assert 0.35 < small / len(ks) < 0.65 and large > 0  # half of the batches at k <= sqrt(128)


def test_learning_rate_warmup_and_cosine():
    config = TrainConfig(data="", out="", lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert learning_rate(0, 110, config) == 0.1
    assert learning_rate(9, 110, config) == 1.0
    assert abs(learning_rate(60, 110, config) - 0.55) < 1e-9
    assert abs(learning_rate(110, 110, config) - 0.1) < 1e-9


def test_train_end_to_end_and_resume(fake_celeba, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["--data", str(fake_celeba), "--out", str(out), "--preset", "tiny", "--epochs", "2", "--batch-size", "8"]
    main(args + ["--cache-dir", str(tmp_path / "cache")])
    assert (out / "best" / "model.safetensors").exists() and (out / "last.pt").exists()
    assert (out / "samples_epoch002.png").exists() and (out / "history.html").exists()
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    model = SparseAutoencoder.from_pretrained(out / "best", strict=True)
    assert model.num_groups == PRESETS["tiny"]["num_groups"]
    main(args + ["--epochs", "3", "--cache-dir", str(tmp_path / "cache")])
    assert "resuming" in capsys.readouterr().out
    assert len(list(csv.DictReader(open(out / "history.csv")))) == 3


def test_train_k_max_widens_the_drawn_range(fake_celeba, tmp_path, monkeypatch):
    """--train-k-max draws k past the shipped k_max (up to code_dim), and a value past code_dim is refused."""
    import sae.cli.train

    drawn = []
    monkeypatch.setattr(sae.cli.train, "sample_k", lambda k_max, generator: drawn.append(k_max) or k_max)
    args = ["--data", str(fake_celeba), "--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache")]
    code_dim = PRESETS["tiny"]["code_dim"]
    main(args + ["--out", str(tmp_path / "wide"), "--train-k-max", str(code_dim)])
    assert drawn and set(drawn) == {code_dim} and code_dim > PRESETS["tiny"]["k_max"]
    with pytest.raises(ValueError, match="train_k_max"):
        main(args + ["--out", str(tmp_path / "bad"), "--train-k-max", str(code_dim + 1)])


def test_ema_weights_are_validated_saved_and_resumed(fake_celeba, tmp_path, capsys):
    """With --ema-decay the best checkpoint holds the averaged weights, not the last step's, and resuming keeps the average."""
    out = tmp_path / "run"
    args = ["--data", str(fake_celeba), "--out", str(out), "--preset", "tiny", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache")]
    main(args + ["--epochs", "1", "--ema-decay", "0.5"])
    checkpoint = torch.load(out / "last.pt", weights_only=False)
    averaged = {k.removeprefix("module."): v for k, v in checkpoint["ema"].items() if k.startswith("module.")}
    best = SparseAutoencoder.from_pretrained(out / "best", strict=True).state_dict()
    assert checkpoint["ema"]["n_averaged"] > 1
    assert all(torch.equal(best[name], averaged[name]) for name in best)
    assert not torch.equal(best["encoder_weight"], checkpoint["model"]["encoder_weight"])
    main(args + ["--epochs", "2", "--ema-decay", "0.5"])
    resumed = torch.load(out / "last.pt", weights_only=False)["ema"]["n_averaged"]
    assert "resuming" in capsys.readouterr().out and resumed == 2 * checkpoint["ema"]["n_averaged"]


def test_optimizer_slows_only_the_grouped_layers_of_a_pca_start(tiny_model):
    config = TrainConfig(data="", out="", lr=1.0, grouped_lr_scale=0.1)
    slow, fast = make_optimizer(tiny_model, config).param_groups[::-1]
    assert slow["scale"] == 0.1 and fast["scale"] == 1.0
    grouped = [tiny_model.encoder_weight, tiny_model.encoder_bias, tiny_model.decoder_bias, tiny_model.decoder_weight]  # untied
    assert {id(p) for p in slow["params"]} == {id(p) for p in grouped}
    assert len(fast["params"]) + len(slow["params"]) == len(list(tiny_model.parameters()))
    assert make_optimizer(tiny_model, TrainConfig(data="", out="", init="random")).param_groups[1]["scale"] == 1.0
    assert make_optimizer(tiny_model, TrainConfig(data="", out="", init="runs/x/best")).param_groups[1]["scale"] == 0.1


def test_loss_reaches_pixels_decoded_outside_the_unit_range(tiny_model):
    """Training sees the unclamped image: a pixel decoded below 0 for a target above 0 still gets a gradient."""
    with torch.no_grad():
        tiny_model.decoder[-2].bias.fill_(-1.0)  # every pixel decodes far below 0
    x = torch.full((1, 3, 64, 64), 0.5)
    reconstruction_loss(tiny_model, x, 4).backward()
    assert tiny_model.decoder[-2].bias.grad.abs().sum() > 0
    assert tiny_model(x, k=4).min() == 0  # what users see is still clamped


def test_log_loss_is_the_mean_log_mse_per_image(tiny_model):
    """The log loss averages log(MSE) over images (mean PSNR up to sign and scale), not the log of the batch's MSE."""
    torch.manual_seed(0)
    x = torch.rand(3, 3, 64, 64) * torch.tensor([0.05, 0.5, 1.0])[:, None, None, None]  # errors far apart
    with torch.no_grad():
        per_image = (tiny_model(x, 4, clamp=False) - x).square().mean(dim=(1, 2, 3))
        log_loss = reconstruction_loss(tiny_model, x, 4, "log")
        mse_loss = reconstruction_loss(tiny_model, x, 4, "mse")
    assert torch.isclose(log_loss, LOG_LOSS_SCALE * per_image.log().mean())
    assert torch.isclose(mse_loss, per_image.mean())
    assert not torch.isclose(log_loss, LOG_LOSS_SCALE * per_image.mean().log())  # images differ, so the two means differ
    psnr_mean = (-10 * per_image.log10()).mean()
    assert torch.isclose(log_loss, -psnr_mean * LOG_LOSS_SCALE * math.log(10) / 10)
    with pytest.raises(ValueError, match="unknown loss"):
        reconstruction_loss(tiny_model, x, 4, "l1")


def test_log_loss_runs_end_to_end_and_is_recorded(fake_celeba, tmp_path):
    """--loss log runs end to end and is written to train_config.json (the model card prints it)."""
    out = tmp_path / "run"
    main(
        ["--data", str(fake_celeba), "--out", str(out), "--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--loss", "log"]
        + ["--cache-dir", str(tmp_path / "cache")]
    )
    rows = list(csv.DictReader(open(out / "history.csv")))
    assert float(rows[0]["train_loss"]) < 0  # a log of MSEs below 1
    assert json.loads((out / "train_config.json").read_text())["loss"] == "log"


def test_init_from_a_saved_model_fine_tunes_it(fake_celeba, tmp_path):
    """--init DIR starts from DIR's weights (a learning rate of 0 keeps them exactly); weights of another shape are refused."""
    source = SparseAutoencoder(**PRESETS["tiny"])
    source.save_pretrained(tmp_path / "source")
    args = ["--data", str(fake_celeba), "--preset", "tiny", "--epochs", "1", "--batch-size", "8", "--cache-dir", str(tmp_path / "cache")]
    main(args + ["--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "source"), "--lr", "0", "--ema-decay", "0"])
    tuned = SparseAutoencoder.from_pretrained(tmp_path / "tuned" / "best", strict=True).state_dict()
    assert all(torch.equal(tuned[name], weight) for name, weight in source.state_dict().items())
    SparseAutoencoder(**dict(PRESETS["tiny"], code_dim=32, k_max=16)).save_pretrained(tmp_path / "other")
    with pytest.raises(ValueError, match="do not fit this preset"):
        main(args + ["--out", str(tmp_path / "bad"), "--init", str(tmp_path / "other")])
    with pytest.raises(ValueError, match="expected 'pca', 'random' or a directory"):
        main(args + ["--out", str(tmp_path / "missing"), "--init", str(tmp_path / "nowhere")])
    with pytest.raises(ValueError, match="lies inside --out"):  # would resume the run that wrote the checkpoint
        main(args + ["--out", str(tmp_path / "tuned"), "--init", str(tmp_path / "tuned" / "best")])
    recorded = json.loads((tmp_path / "tuned" / "train_config.json").read_text())["init"]
    assert recorded == str((tmp_path / "source").resolve())  # absolute, so the model card finds it from anywhere


def test_train_records_the_data_it_ran_on(fake_celeba, tmp_path):
    out = tmp_path / "run"
    main(["--data", str(fake_celeba), "--out", str(out), "--preset", "tiny", "--epochs", "1", "--batch-size", "8"]
         + ["--cache-dir", str(tmp_path / "cache"), "--train-limit", "16", "--val-limit", "2"])  # fmt: skip
    config = json.loads((out / "train_config.json").read_text())
    assert config["data"] == str(fake_celeba) and config["preset"] == "tiny" and config["model"] == dict(PRESETS["tiny"])
    assert config["train_limit"] == 16 and config["val_limit"] == 2 and config["init"] == "pca"


def test_train_on_utkface_at_the_presets_size(fake_utkface, tmp_path, monkeypatch, capsys):
    """UTKFace trains from its split lists, at the size the preset says (a tiny 128x128 preset stands in for default128)."""
    import sae.cli.train
    import sae.core.presets

    tiny128 = {**PRESETS["tiny"], "image_size": 128, "k_max": 16}  # 20 groups: validation's 160 non-zeros are k = 8
    presets = {**PRESETS, "tiny128": tiny128}
    monkeypatch.setattr(sae.core.presets, "PRESETS", presets)
    monkeypatch.setattr(sae.cli.train, "PRESETS", presets)
    out = tmp_path / "run"
    main(["--data", str(fake_utkface), "--out", str(out), "--preset", "tiny128", "--epochs", "1", "--batch-size", "2"]
         + ["--cache-dir", str(tmp_path / "cache")])  # fmt: skip
    assert "6 train / 2 val faces" in capsys.readouterr().out  # train.txt and val.txt, not every image in the folder
    model = SparseAutoencoder.from_pretrained(out / "best", strict=True)
    assert model.image_size == 128 and model.k_max == 16
    assert (out / "samples_epoch001.png").exists()
    cached = sorted(path.name.split("-")[:3] for path in (tmp_path / "cache").iterdir())
    assert cached == [["utkface128", "train", "6"], ["utkface128", "val", "2"]]  # decoded at 128, from the lists
