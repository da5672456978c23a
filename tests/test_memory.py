"""The memory trimmer (sae.app.memory): glibc's malloc_trim found and called on a schedule, stopped cleanly."""

from __future__ import annotations

import platform
import threading
import time

import pytest

from sae.app.memory import MemoryTrimmer, malloc_trim


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="malloc_trim is glibc's")
def test_malloc_trim_is_found_on_glibc_and_callable():
    """Smoke test: the symbol is found and the call returns (whether it released anything depends on the heap)."""
    trim = malloc_trim()
    assert trim is not None and trim() in (0, 1)


def test_trimmer_calls_trim_on_its_interval_until_stopped():
    calls = threading.Semaphore(0)
    trimmer = MemoryTrimmer(interval_s=0.01, trim=lambda: calls.release() or 1).start()
    assert all(calls.acquire(timeout=5) for _ in range(3))  # it keeps going
    trimmer.stop()
    count = trimmer.trims
    assert count >= 3 and not trimmer.running
    time.sleep(0.05)  # five intervals: a thread still running would have trimmed again
    assert trimmer.trims == count
    assert trimmer._thread.daemon  # never keeps the server process alive


def test_trimmer_without_an_allocator_to_trim_does_nothing(monkeypatch):
    monkeypatch.setattr("sae.app.memory.malloc_trim", lambda: None)
    trimmer = MemoryTrimmer(interval_s=0.01).start()
    assert not trimmer.active and not trimmer.running
    trimmer.stop()  # safe although never started


def test_trimmer_refuses_a_non_positive_interval():
    with pytest.raises(ValueError, match="interval_s"):
        MemoryTrimmer(interval_s=0)


def test_malloc_trim_is_none_where_there_is_no_c_library(monkeypatch):
    monkeypatch.setattr("ctypes.util.find_library", lambda name: None)  # Windows
    assert malloc_trim() is None
