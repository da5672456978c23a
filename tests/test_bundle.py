"""Bundling a run (sae.cli.bundle): relabeled coordinates change no reconstruction, float16 storage loads, the run's
records and the data note sit beside the weights."""

from __future__ import annotations

import json

import torch

from sae.cli import bundle
from sae.core.model import SparseAutoencoder
from sae.zoo.files import DataNote
from tests.conftest import TINY


def _run(tmp_path, name: str, epochs: int):
    run = tmp_path / name
    torch.manual_seed(0)
    model = SparseAutoencoder(**TINY).eval()
    with torch.no_grad():
        model.decoder[1].conv2.weight.normal_(0, 0.05)  # a non-linear path, so relabeling is tested beyond the linear start
    model.save_pretrained(run / "best")
    (run / "train_config.json").write_text(json.dumps({"preset": "tiny", "epochs": epochs}))
    (run / "history.csv").write_text("epoch,images_per_s\n1,100\n")
    return run, model


def test_bundle_keeps_reconstructions_and_writes_the_records(tmp_path, fake_celeba):
    run, original = _run(tmp_path, "tuned", 2)
    stage1, _ = _run(tmp_path, "first", 5)
    note = DataNote("celeba", "fake faces", "test only")
    out = bundle.bundle(run, tmp_path / "bundled", fake_celeba, note, stage1)
    loaded = SparseAutoencoder.from_pretrained(out, strict=True).eval()
    faces = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(faces, k=4), original(faces, k=4), atol=1e-5, rtol=1e-5)
    assert DataNote.read(out) == note
    assert json.loads((out / "stage1_train_config.json").read_text())["epochs"] == 5 and (out / "history.csv").is_file()


def test_float16_storage_halves_the_file_and_loads_into_float32(tmp_path, fake_celeba):
    run, original = _run(tmp_path, "run", 1)
    full = bundle.bundle(run, tmp_path / "full", fake_celeba, DataNote())
    half = bundle.bundle(run, tmp_path / "half", fake_celeba, DataNote(), half=True)
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    loaded = SparseAutoencoder.from_pretrained(half, strict=True)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    reference = SparseAutoencoder.from_pretrained(full, strict=True)
    for a, b in zip(loaded.state_dict().values(), reference.state_dict().values(), strict=True):
        assert torch.equal(a, b.half().float())


def test_main_prints_what_it_wrote(tmp_path, fake_celeba, capsys):
    run, _ = _run(tmp_path, "run", 1)
    bundle.main(
        ["--run", str(run), "--data", str(fake_celeba), "--out", str(tmp_path / "m"), "--description", "d", "--licence", "l", "--half"]
    )
    assert "float16" in capsys.readouterr().out and DataNote.read(tmp_path / "m").description == "d"
