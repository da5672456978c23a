"""Share downloads: the public code and key files the Share tab offers, on disk only briefly.

`Outbox.write` puts each share into a fresh folder of its own and returns the paths; Gradio copies them into its cache
to serve them (its `delete_cache` sweeps those copies). The outbox's own files are deleted here once older than
`max_age`: by a daemon timer every `sweep_every` seconds, before each write, and all of them when the process exits.

Handlers run in several worker threads. A sweep and a write hold one lock per folder, so a sweep never removes a share
folder that another worker created but has not filled yet. A file that vanishes between listing and checking (another
process sweeping the same folder) is skipped, and an empty folder is removed only when this sweep emptied it or it is
itself older than `max_age`, never a fresh one.
"""

from __future__ import annotations

import atexit
import contextlib
import math
import tempfile
import threading
import time
import weakref
from pathlib import Path

OUTBOX_MAX_AGE = 600.0  # seconds a downloadable code or key stays on disk
SWEEP_EVERY = 60.0  # seconds between timer sweeps

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()


def _lock_for(folder: Path) -> threading.Lock:
    """One lock per folder in this process, shared by every Outbox on it."""
    with _LOCKS_GUARD:
        return _LOCKS.setdefault(folder, threading.Lock())


def _sweep(folder: Path, cutoff: float) -> int:
    """Delete share files last modified before `cutoff` and the share folders left empty; the caller holds the lock."""
    deleted, emptied = 0, set()
    for path in folder.glob("*/*"):
        try:
            if path.stat().st_mtime >= cutoff:
                continue
            path.unlink()
        except OSError:  # gone already (another sweeper), or not a file of ours
            continue
        deleted += 1
        emptied.add(path.parent)
    for share in folder.glob("*"):
        try:
            if share.is_dir() and (share in emptied or share.stat().st_mtime < cutoff):
                share.rmdir()
        except OSError:  # not empty (fresh files in it) or already gone
            pass
    return deleted


def _close(folder: Path, lock: threading.Lock, owned: bool, stop: threading.Event) -> None:
    """At exit: stop the timer, delete every share whatever its age, and the folder itself when this outbox made it."""
    stop.set()
    locked = lock.acquire(timeout=5)  # a worker mid-write finishes in milliseconds; never hang the exit on one
    try:
        _sweep(folder, math.inf)
        if owned:
            with contextlib.suppress(OSError):
                folder.rmdir()
    finally:
        if locked:
            lock.release()


def _sweep_periodically(outbox: weakref.ref, stop: threading.Event, every: float) -> None:
    while not stop.wait(every):
        current = outbox()
        if current is None:  # the outbox was dropped; its files go at exit
            return
        with contextlib.suppress(OSError):  # e.g. the folder removed by hand: try again next time
            current.sweep()
        del current


class Outbox:
    """A folder of share downloads, each deleted `max_age` seconds after it was written (or at exit)."""

    def __init__(self, folder: str | Path | None = None, max_age: float = OUTBOX_MAX_AGE, sweep_every: float | None = None):
        """`folder` None: a fresh temporary folder, removed at exit. `sweep_every` None: SWEEP_EVERY; 0: no timer."""
        owned = folder is None
        sweep_every = SWEEP_EVERY if sweep_every is None else sweep_every
        self.folder = (Path(tempfile.mkdtemp(prefix="sae-outbox-")) if owned else Path(folder)).resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_age = max_age
        self._lock = _lock_for(self.folder)
        self._stop = threading.Event()
        # atexit, not weakref.finalize: another Outbox on the same folder may still serve its files when this one is dropped
        atexit.register(_close, self.folder, self._lock, owned, self._stop)
        if sweep_every:
            threading.Thread(
                target=_sweep_periodically, args=(weakref.ref(self), self._stop, sweep_every), name="sae-outbox-sweep", daemon=True
            ).start()

    def sweep(self) -> int:
        """Delete the shares older than `max_age`; returns how many files went."""
        with self._lock:
            return _sweep(self.folder, time.time() - self.max_age)

    def write(self, files: dict[str, bytes]) -> list[Path]:
        """Sweep, then write `files` (name -> bytes) into a fresh folder; one lock across both."""
        with self._lock:
            _sweep(self.folder, time.time() - self.max_age)
            share = Path(tempfile.mkdtemp(prefix="share-", dir=self.folder))
            paths = [share / name for name in files]
            for path, data in zip(paths, files.values(), strict=True):
                path.write_bytes(data)
            return paths
