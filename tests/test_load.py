"""The load benchmark's short mode: several sessions at once against the app in a child process, zero errors, no upload
left on disk; and its verdict on memory."""

from __future__ import annotations

import math
import sys

import torch

from benchmarks import load
from sae.core.model import SparseAutoencoder
from tests.conftest import TINY


def test_short_load_run(tmp_path, capsys, monkeypatch):
    """Run from the command line (arguments in sys.argv), as docs/load.md was: the page names the command it ran."""
    torch.manual_seed(0)
    SparseAutoencoder(**TINY).save_pretrained(tmp_path / "model")
    arguments = ["--short", "--model", str(tmp_path / "model"), "--out", str(tmp_path / "load.md")]
    monkeypatch.setattr(sys, "argv", ["benchmarks/load.py", *arguments])
    result = load.main()
    assert f"Written by `python -m benchmarks.load {' '.join(arguments)}`" in (tmp_path / "load.md").read_text()
    assert (result.students, result.duration_s) == (4, 15.0)
    assert result.errors == [] and len(result.latencies_ms("/prepare")) == 4 == len(result.latencies_ms("/redraw"))
    assert len(result.latencies_ms("/update")) >= 4
    assert result.uploads_left == [] and result.cpu_s > 0 and all(rss > 0 for _, rss in result.memory)
    assert result.ok
    out = capsys.readouterr().out
    assert "| errors | 0 | 0 |" in out and "| server CPU per request (ms) |" in out


def _result(memory: list[tuple[float, float]]) -> load.LoadResult:
    return load.LoadResult(30, 120.0, [], memory, 1.0, [], {"workers": 2, "queue size": 64, "model": "m"})


def test_memory_that_grows_after_the_warm_up_fails_the_run():
    flat = _result([(0, 500), (30, 700), (40, 690), (60, 760), (120, 765)])
    assert flat.memory_flat[0] is True and flat.ok  # within 10% of 700 MB
    grown = _result([(0, 500), (30, 700), (40, 690), (60, 760), (120, 800)])
    assert grown.memory_flat[0] is False and not grown.ok and "| memory after warm-up | GREW" in load.table(grown)
    short = _result([(0, 500), (15, 520), (35, 530)])
    assert short.memory_flat[0] is None and short.ok  # too short to compare: nothing to say


def test_memory_is_compared_peak_to_peak_not_to_one_sample_of_the_trim_sawtooth():
    sawtooth = [(0, 770), (30, 954), (35, 1008), (40, 963), (45, 996)] + [(50 + 5 * i, (960, 1050)[i % 2]) for i in range(14)]
    flat, text = _result(sawtooth).memory_flat
    assert flat is True and "highest 1008 MB" in text and "highest 1050 MB later" in text
    leak = [(at, rss + 3 * max(0, at - 50)) for at, rss in sawtooth]
    assert _result(leak).memory_flat[0] is False


def test_a_result_survives_its_json_and_a_fresh_interpreter_runs_the_class(tmp_path):
    result = _result([(0, 500), (30, 700)])
    result.requests.append(load.Request("/update", 1.5, 0.25, None))
    assert load.LoadResult.from_json(result.to_json()) == result
    torch.manual_seed(0)
    SparseAutoencoder(**TINY).save_pretrained(tmp_path / "model")
    fresh = load.run_fresh(str(tmp_path / "model"), students=2, duration=5.0)
    assert fresh.errors == [] and len(fresh.latencies_ms("/prepare")) == 2 and fresh.cpu_s > 0


def test_the_floor_app_takes_the_same_class():
    floor = load.run_fresh(None, students=2, duration=5.0)
    assert floor.errors == [] and len(floor.latencies_ms("/upload")) == 2 and len(floor.latencies_ms("/update")) >= 2
    assert floor.settings["model"] == "none (the floor app)" and floor.cpu_s > 0


SETTINGS = {"workers": 2, "queue size": 64, "model": "m"}


def test_the_load_tables_and_benchmarks_run_read_one_percentile():
    from benchmarks import run
    from benchmarks.serving import percentile

    seconds = [0.1, 0.2, 0.25, 0.4, 1.3, 0.9, 0.15]
    result = load.LoadResult(30, 120.0, [load.Request("/update", float(i), s, None) for i, s in enumerate(seconds)], [], 1.0, [], SETTINGS)
    expected = tuple(percentile([1000 * s for s in seconds], q) for q in (50, 95, 99))
    assert result.percentiles_ms("/update") == expected == (250.0, 1300.0, 1300.0)
    summary = run.load_summary(result)
    assert (summary["p50_ms"], summary["p95_ms"], summary["p99_ms"]) == expected and summary["memory_verdict"] == "-"
    assert "| 250 / 1300 / 1300 |" in load.table(result)


def test_the_table_gives_the_slider_p95_of_each_quarter_of_the_run():
    """A class that slows down as it goes on shows it: each quarter's p95 from the moves started in it."""
    requests = [load.Request("/update", float(at), (1 + at // 30) / 8, None) for at in range(120)]
    requests += [load.Request("/update", 100.0, 9.0, "timeout"), load.Request("/prepare", 1.0, 5.0, None)]
    result = load.LoadResult(30, 120.0, requests, [], 1.0, [], SETTINGS)
    assert result.p95_by_part_ms("/update") == [125.0, 250.0, 375.0, 500.0]
    assert "| slider move /update p95 in each quarter of the run (ms) | 125 / 250 / 375 / 500 | |" in load.table(result)
    empty = load.LoadResult(30, 120.0, [], [], 1.0, [], SETTINGS)
    assert all(math.isnan(p95) for p95 in empty.p95_by_part_ms("/update"))
    assert "| slider move /update p95 in each quarter of the run (ms) | - / - / - / - | |" in load.table(empty)
