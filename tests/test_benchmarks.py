"""benchmarks/run.py in a quick mode (a tiny model, a few fake faces, two repeats), so the side-by-side table cannot rot.

The parts that start the app in child processes (app, browser, load) have their own checks: tests/test_load.py runs the
load benchmark's short mode, tests/test_browser.py drives the app in Chromium.
"""

from __future__ import annotations

import json
import os

import pytest
import torch

from benchmarks import load, run
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS

QUICK = ["--threads", "1", "--repeats", "2", "--train-presets", "tiny", "--train-batch", "4", "--train-steps", "1"]


@pytest.fixture
def tiny_dir(tmp_path):
    """The tiny preset's 20 groups with k_max 64 and code_dim 128, so every budget of the table (up to 2560) has a row."""
    torch.manual_seed(0)
    SparseAutoencoder(**(PRESETS["tiny"] | {"k_max": 64, "code_dim": 128})).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_quality_throughput_and_training_rows_compare(tiny_dir, fake_celeba, tmp_path, capsys):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    args = ["--models", str(tiny_dir), "--data", str(fake_celeba), "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    result = run.main([*args, "--out", str(table), "--parts", "quality", "throughput", "training", *QUICK])
    printed = capsys.readouterr().out
    parts, threads = [row["part"] for row in result["rows"]], len(run.target_threads())
    assert parts.count("quality") == 2 * len(run.BUDGETS) and parts.count("throughput") == 4 + 2 * threads and parts.count("training") == 1
    assert [row["budget"] for row in result["quality model"]["rows"]] == list(run.BUDGETS)
    assert all(row["comparison"].endswith("SSIM") for row in result["rows"] if row["part"] == "quality")
    assert sum("x JPEG's time" in row["comparison"] for row in result["rows"]) == 4
    assert sum("x the target" in row["comparison"] for row in result["rows"]) == 2 * threads  # the 128x128 speed targets
    measured = [row["measure"] for row in result["rows"] if "x the target" in row["comparison"]]
    assert [m for m in measured if m.startswith("encode + decode")][0].startswith("encode + decode one face, 1 torch thread:")
    assert result["training"]["tiny"] > 0 and "cores, torch" in printed
    assert json.loads(out.read_text())["machine"]["cores"] >= 1 and table.read_text().startswith("# Benchmarks")


def test_a_model_without_its_data_is_skipped_and_said(tiny_dir, tmp_path, capsys):
    result = run.main(["--models", str(tiny_dir), "--data", str(tmp_path / "nowhere"), "--parts", "quality", *QUICK])
    assert result["rows"] == [] and f"quality of model (no data at {tmp_path / 'nowhere'})" in capsys.readouterr().out


def test_speed_targets_run_on_one_thread_and_every_core_and_threads_are_restored():
    assert run.target_threads() == sorted({1, min(run.TARGET_CORES, os.cpu_count() or 1)})
    before = torch.get_num_threads()
    with run.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_load_rows_put_the_floor_app_beside_each_model(monkeypatch):
    def fake(model, students, duration):
        seconds = 0.1 if model is None else 0.3
        requests = [load.Request("/update", float(i), seconds + i / 1000, None) for i in range(100)]
        return load.LoadResult(students, duration, requests, [], 2.0, [], {})

    monkeypatch.setattr(load, "run_fresh", fake)
    rows, raw = run.load_rows_of_each(["assets/models/utkface128"], 30, 120.0)
    assert [row.model for row in rows] == ["floor app"] * 2 + ["utkface128"] * 3
    assert raw["floor"]["p50_ms"] < raw["utkface128"]["p50_ms"] and raw["utkface128"]["cpu_ms_per_request"] == 20.0
    assert rows[2].reference.startswith(f"floor app {raw['floor']['p95_ms']:.0f} / {raw['floor']['p99_ms']:.0f} ms; target")
