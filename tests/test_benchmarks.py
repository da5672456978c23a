"""benchmarks/run.py in a tiny mode (tiny model, a few fake faces, two repeats), so the side-by-side table cannot rot."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import run
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS

QUICK = ["--threads", "1", "--repeats", "2", "--train-preset", "tiny", "--train-batch", "4", "--train-steps", "1", "--skip", "cold-start"]


@pytest.fixture
def tiny_dir(tmp_path):
    """The tiny preset's 20 groups with k_max 64, so every budget of the table (up to 1280 = 20 x 64) fits."""
    torch.manual_seed(0)
    SparseAutoencoder(**(PRESETS["tiny"] | {"k_max": 64})).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_every_part_runs_and_compares(tiny_dir, fake_celeba, tmp_path, capsys):
    out = tmp_path / "bench.json"
    args = ["--model", str(tiny_dir), "--data", str(fake_celeba), "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    result = run.main(args + QUICK)
    table = capsys.readouterr().out
    parts = [row["part"] for row in result["rows"]]
    assert parts.count("quality") == 8 and parts.count("throughput") == 4 and parts.count("latency") == 5
    assert parts.count("training") == 1 and result["training"]["images_per_s"] > 0
    assert [row["budget"] for row in result["quality"]["rows"]] == list(run.BUDGETS) and result["quality"]["test_faces"] == 4
    assert all(row["comparison"].endswith("SSIM") for row in result["rows"] if row["part"] == "quality")
    assert all("x JPEG's time" in row["comparison"] for row in result["rows"] if row["part"] == "throughput")
    assert "cores, torch" in table and "with 1 threads" in table  # the machine line
    assert "Skipped: cold-start (--skip)." in table
    assert json.loads(out.read_text())["machine"]["cores"] >= 1
    assert (tmp_path / "cache" / "pca-24-None.pt").exists()  # the PCA fit is cached like sae.cli.evaluate's


def test_without_data_it_says_what_it_skipped(tiny_dir, tmp_path, capsys):
    result = run.main(["--model", str(tiny_dir), "--data", str(tmp_path / "nowhere")] + QUICK + ["latency", "training"])
    assert {row["part"] for row in result["rows"]} == {"throughput"}
    assert f"quality (no data at {tmp_path / 'nowhere'})" in capsys.readouterr().out


def test_cold_start_is_compared_with_its_target(monkeypatch):
    monkeypatch.setattr(run.bench_app, "start_to_serving_s", lambda model: 4.0)
    rows, raw = run.cold_start_rows(None)
    assert raw == {"seconds": 4.0} and rows[0].comparison == "0.40x the target" and rows[0].reference == "10 s target"


def test_upload_step_times_the_handlers_whole_work(tiny_model, monkeypatch):
    """The per-upload row times what `prepare` does for a new photo: both crops detected and encoded, no cache hit."""
    from benchmarks import bench_app
    from sae.zoo.hub import LoadedModel

    encodes, per_step = [0], []
    encode = tiny_model.encode

    def counted(*args, **kwargs):
        encodes[0] += 1
        return encode(*args, **kwargs)

    def once(function, repeats):
        before = encodes[0]
        function()
        per_step.append(encodes[0] - before)
        return [1.0]

    monkeypatch.setattr(tiny_model, "encode", counted)
    monkeypatch.setattr(bench_app, "timings_ms", once)
    rows = bench_app.interaction_timings(LoadedModel(tiny_model, "test", "tiny"), k=4, repeats=1)
    assert rows[0][0].startswith("prepare") and per_step[0] == 2  # the astronaut has a face: the face crop and the whole image
