"""The load benchmark's short mode: several sessions at once, zero errors, a bounded cache, no upload left on disk."""

from __future__ import annotations

import torch

from benchmarks import load
from sae.app.memory import malloc_trim
from sae.core.model import SparseAutoencoder
from tests.conftest import TINY


def test_short_load_run(tmp_path, capsys):
    torch.manual_seed(0)
    SparseAutoencoder(**TINY).save_pretrained(tmp_path / "model")
    # 4 clients x 2 rounds upload 8 different faces into a cache of 6: the second round evicts, nobody loses their face
    result = load.main(["--short", "--model", str(tmp_path / "model"), "--face-cache", "6", "--deadline", "600"])
    assert (result.clients, result.interactions, result.rounds) == (4, 5, 2)
    assert result.errors == [] and len(result.requests) == 4 * 2 * (5 + 2)
    assert [s["cache"] for s in result.rounds_stats] == [4, 6] and result.cache_bounded
    assert result.uploads_left == [] and result.peak_rss_mb > 0
    assert result.memory[0] is not False and result.ok  # None only where /proc has no current RSS
    assert all(s["trimming"] for s in result.rounds_stats) == (malloc_trim() is not None)  # app.serve started sae.app.memory's
    out = capsys.readouterr().out
    assert "| errors | 0 |" in out and "| memory once the cache was full | " in out


def _result(rss_mb: list[float], cache: list[int], capacity: int = 32, entry_bytes: int = 118_784) -> load.LoadResult:
    stats = [
        {"rss_kb": int(mb * 1024), "peak_kb": int(mb * 1024), "cache": c, "capacity": capacity, "entry_bytes": entry_bytes}
        for mb, c in zip(rss_mb, cache, strict=True)
    ]
    return load.LoadResult(
        30, 20, len(stats), 1.0, [], stats, [], settings={"workers": 2, "queue size": 64, "face cache": capacity, "model": "m"}
    )


def test_memory_growing_after_the_cache_filled_fails_the_run():
    assert _result([500, 520, 545], [30, 32, 32]).memory[0] is True  # round 2 filled the cache: 545 <= 1.1 x 520
    grown = _result([500, 520, 580], [30, 32, 32])
    assert grown.memory[0] is False and not grown.ok and "after the cache filled (round 2)" in grown.memory[1]
    assert "| memory once the cache was full | GREW" in load.table(grown)
    # never full (the default cache outlasts the run): against round 1, the new entries' computed size allowed on top
    assert _result([500, 552], [30, 60], capacity=256).memory[0] is True  # limit 550 MB + 30 x 0.113 MB
    assert _result([500, 556], [30, 60], capacity=256).memory[0] is False
    assert _result([500], [30]).memory[0] is None and _result([500], [30]).ok  # one round: nothing to compare
    # three rounds, cache never full: round 1 is warm-up, so round 2 is the baseline
    assert _result([500, 640, 650], [30, 60, 90], capacity=256).memory[0] is True
    assert _result([500, 640, 720], [30, 60, 90], capacity=256).memory[0] is False


def test_a_client_that_cannot_connect_is_reported_as_such(tmp_path, monkeypatch, capsys):
    """A refused connection breaks the rounds' barrier: the table says so, not "stopped by the deadline"."""
    import socket

    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Unreachable:
        def __init__(self, model, face_cache, gradio_dir, trim_interval_s):
            self.url = f"http://127.0.0.1:{port}/"

        def stats(self):
            return {"rss_kb": 1024, "peak_kb": 1024, "cache": 0, "capacity": 4, "entry_bytes": 0}

        def close(self):
            pass

    torch.manual_seed(0)
    SparseAutoencoder(**TINY).save_pretrained(tmp_path / "model")
    monkeypatch.setattr(load, "Server", Unreachable)
    result = load.run(str(tmp_path / "model"), clients=2, interactions=1, rounds=1, face_cache=4, deadline=60, log=lambda *_: None)
    assert result.stopped == "connect" and not result.deadline_hit and not result.ok
    assert len(result.connect_failures) >= 1 and "ConnectError" in result.connect_failures[0].error
    text = load.table(result)
    assert "stopped early: a client could not connect" in text and "clients that could not connect" in text
    assert "deadline" not in text
