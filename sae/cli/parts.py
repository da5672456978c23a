"""Finished parts of a long evaluation kept on disk, so that a rerun of a killed run resumes at its first unfinished part.

A privacy run on 128x128 faces takes hours of a 2-core CPU, longer than one sitting may last. Each part (a scheme, a
sweep row) is a JSON-ready dict saved as soon as it is done, in a folder named by a digest of the run's key: whatever
decides its figures (the faces and labels as loaded, the model's weights, budget, seed, the source files and library
versions it ran with, the thread count). The key is also written there as `run.json`, to say what the folder holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def source_digest(sources: Iterable[Path]) -> str:
    """SHA-256 over the Python files of `sources` (files, or folders searched recursively): each file's path below its
    source's parent and its bytes, in that order, so that another checkout of the same code gives the same digest."""
    digest = hashlib.sha256()
    named = {}
    for source in sources:
        for path in [source] if source.is_file() else source.rglob("*.py"):
            named[path.relative_to(source.parent).as_posix()] = path
    for name in sorted(named):
        digest.update(name.encode() + b"\0" + named[name].read_bytes() + b"\0")
    return digest.hexdigest()


class Parts:
    """The finished parts of one run: `get(name, compute)` reads a saved part or computes and saves it. `reused` names
    the parts read back and `reused_seconds` is what computing them took, so a resumed run can report its whole time.
    With `fresh`, saved parts are ignored and overwritten."""

    def __init__(self, root: str | Path, key: dict, fresh: bool = False):
        text = json.dumps(key, sort_keys=True, indent=1)
        self.folder = Path(root) / hashlib.sha256(text.encode()).hexdigest()[:16]
        self.key_text = text
        self.fresh = fresh
        self.reused: list[str] = []
        self.reused_seconds = 0.0

    def _path(self, name: str) -> Path:
        return self.folder / f"{name}.json"

    def _read(self, name: str) -> dict | None:
        """The saved {"seconds", "part"} of `name`, or None if absent or unreadable (a part from a crash is recomputed)."""
        try:
            saved = json.loads(self._path(name).read_text())
        except (OSError, ValueError):
            return None
        return saved if isinstance(saved, dict) and {"seconds", "part"} <= saved.keys() else None

    def saved(self, name: str) -> bool:
        return not self.fresh and self._read(name) is not None

    def get(self, name: str, compute: Callable[[], dict]) -> dict:
        saved = None if self.fresh else self._read(name)
        if saved is not None:
            self.reused.append(name)
            self.reused_seconds += saved["seconds"]
            return saved["part"]
        start = time.perf_counter()
        part = compute()
        text = json.dumps({"seconds": time.perf_counter() - start, "part": part})
        self.folder.mkdir(parents=True, exist_ok=True)
        _write_atomically(self.folder / "run.json", self.key_text)
        _write_atomically(self._path(name), text)
        return json.loads(text)["part"]  # the same JSON types whether computed now or read back


def _write_atomically(path: Path, text: str) -> None:
    """Write through a temporary file of its own in the same folder, synced, then renamed over `path`: a reader sees
    the old file or the whole new one, never half of one, even when two runs write the same part."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
