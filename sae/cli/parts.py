"""Finished parts of a long evaluation kept on disk, so that a rerun of a killed run resumes at its first unfinished part.

A privacy run on 128x128 faces takes hours of a 2-core CPU, longer than one sitting may last. Each part (a scheme, a
sweep row) is a JSON-ready dict saved as soon as it is done, under a folder named by a digest of everything that
decides it: the run's identity (model weights, faces, budget, seed, ...) and the source files its figures depend on, so
that a part is only reused by the same run of the same code.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def source_digest(sources: list[Path]) -> str:
    """SHA-256 over the Python files of `sources` (files, or folders searched recursively): names and bytes, in path
    order (names, not paths, so that another checkout of the same code gives the same digest)."""
    digest = hashlib.sha256()
    files = sorted({path for source in sources for path in ([source] if source.is_file() else source.rglob("*.py"))})
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


class Parts:
    """The finished parts of one run: `get(name, compute)` reads a saved part or computes and saves it. `reused` names
    the parts read back and `reused_seconds` is what computing them took, so a resumed run can report its whole time."""

    def __init__(self, root: str | Path, identity: dict, sources: list[Path]):
        key = json.dumps({"run": identity, "source": source_digest(sources)}, sort_keys=True)
        self.folder = Path(root) / hashlib.sha256(key.encode()).hexdigest()[:16]
        self.reused: list[str] = []
        self.reused_seconds = 0.0

    def saved(self, name: str) -> bool:
        return (self.folder / f"{name}.json").is_file()

    def get(self, name: str, compute: Callable[[], dict]) -> dict:
        path = self.folder / f"{name}.json"
        if path.is_file():
            saved = json.loads(path.read_text())
            self.reused.append(name)
            self.reused_seconds += saved["seconds"]
            return saved["part"]
        start = time.perf_counter()
        part = compute()
        self.folder.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".tmp")
        partial.write_text(json.dumps({"seconds": time.perf_counter() - start, "part": part}))
        partial.replace(path)  # a run killed while writing leaves no half part behind
        return json.loads(path.read_text())["part"]  # the same JSON types whether computed now or read back
