"""Hand memory the server has freed back to the operating system, so a long class does not look like a leak.

glibc's malloc keeps blocks freed by the server's many threads in per-thread arenas instead of returning them, so
under load the app's resident memory kept rising with nothing alive holding it (`python -m benchmarks.load` shows it).
`MemoryTrimmer` calls `malloc_trim(0)` from a daemon thread. Where the C library has no `malloc_trim` (macOS, musl, Windows) it does
nothing: those allocators return memory their own way.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections.abc import Callable

TRIM_INTERVAL_S = 10.0  # seconds between trims


def malloc_trim() -> Callable[[], int] | None:
    """glibc's `malloc_trim(0)` as a callable returning 1 when memory was released, or None without glibc."""
    name = ctypes.util.find_library("c")
    if name is None:  # Windows: no C library by that name
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    function = getattr(libc, "malloc_trim", None)
    if function is None:
        return None
    function.argtypes, function.restype = [ctypes.c_size_t], ctypes.c_int
    return lambda: function(0)  # ctypes releases the GIL for the call, so Python threads keep running


class MemoryTrimmer:
    """A daemon thread that calls `trim` every `interval_s` seconds until `stop()` (started once: a thread)."""

    def __init__(self, interval_s: float = TRIM_INTERVAL_S, trim: Callable[[], int] | None = None):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self.interval_s = interval_s
        self.trim = trim if trim is not None else malloc_trim()
        self.trims = 0
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sae-memory-trimmer", daemon=True)

    @property
    def active(self) -> bool:
        """Whether there is an allocator to trim (False on non-glibc systems: nothing to do)."""
        return self.trim is not None

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def start(self) -> MemoryTrimmer:
        if self.active:
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            self.trim()
            self.trims += 1
