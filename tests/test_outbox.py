"""Share downloads (sae.app.outbox): each share in a folder of its own, deleted once older than the outbox's age (on
the next write, by a timer, and all of them at exit), never before it is filled, whatever another worker does."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from PIL import Image

from sae.app.handlers import Handlers
from sae.app.outbox import Outbox
from sae.app.settings import ShareSettings
from tests.conftest import REPO


def _share(outbox: Outbox, stem: str = "face") -> list[Path]:
    return outbox.write({f"{stem}.saep": b"public", f"{stem}.saek": b"key"})


def test_each_write_is_a_fresh_folder_of_its_own(tmp_path):
    outbox = Outbox(tmp_path / "outbox", sweep_every=0)
    first, second = _share(outbox), _share(outbox)
    assert [p.name for p in first] == ["face.saep", "face.saek"] and first[0].parent != second[0].parent
    assert first[0].read_bytes() == b"public" and first[1].read_bytes() == b"key"
    assert all(path.parent.parent == outbox.folder for path in (*first, *second))


def test_old_shares_are_swept_on_the_next_write(tmp_path):
    outbox = Outbox(tmp_path / "outbox", max_age=600, sweep_every=0)
    old = _share(outbox)
    for path in old:
        os.utime(path, (0, 0))
    kept = _share(outbox, "other")
    assert not any(path.exists() for path in old) and not old[0].parent.exists()
    assert all(path.exists() for path in kept)
    assert outbox.sweep() == 0  # nothing old left


def test_shares_written_by_the_handlers_are_swept(served_models, tmp_path):
    handlers = Handlers(served_models, outbox=tmp_path / "outbox")
    controls = ShareSettings(k=4).widget_values()
    name = served_models[0].name
    ref = handlers.prepare(Image.new("RGB", (64, 64), (90, 60, 30)), False, name, *controls)[0]
    public, key, _ = handlers.make_share(ref, name, "", *controls)
    assert Path(public).parent.parent == handlers.outbox.folder == (tmp_path / "outbox").resolve()
    for path in (public, key):
        os.utime(path, (0, 0))
    handlers.make_share(ref, name, "", *controls)
    assert not Path(public).exists() and not Path(key).exists()


def test_sweep_skips_files_another_worker_deleted(tmp_path, monkeypatch):
    """A file listed by one worker's sweep and deleted by another's before it is looked at is skipped."""
    outbox = Outbox(tmp_path / "outbox", sweep_every=0)
    public, key = _share(outbox)
    os.utime(public, (0, 0))
    ghost = public.parent / "deleted-by-the-other-worker.saek"
    glob = Path.glob

    def listing_with_ghost(self, pattern, *args, **kwargs):
        found = list(glob(self, pattern, *args, **kwargs))
        return [*found, ghost] if pattern == "*/*" else found

    monkeypatch.setattr(Path, "glob", listing_with_ghost)
    _share(outbox)
    assert not public.exists() and key.exists()


def test_a_sweep_never_removes_a_share_folder_before_it_is_filled(tmp_path, monkeypatch):
    """Worker B's write (and sweep) runs while worker A has created its folder but not written into it yet."""
    outbox = Outbox(tmp_path / "outbox", sweep_every=0)
    mkdtemp, other, results = tempfile.mkdtemp, [], []

    def created_then_other_worker_writes(*args, **kwargs):
        folder = mkdtemp(*args, **kwargs)
        if not other:  # only in worker A
            other.append(threading.Thread(target=lambda: results.append(_share(Outbox(outbox.folder, sweep_every=0), "b"))))
            other[0].start()
            other[0].join(timeout=1.0)  # B runs now (or waits for A's lock)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", created_then_other_worker_writes)
    public, key = _share(outbox, "a")
    other[0].join()
    assert public.is_file() and key.is_file() and all(path.is_file() for path in results[0])


def test_a_fresh_empty_folder_is_not_removed(tmp_path):
    outbox = Outbox(tmp_path / "outbox", sweep_every=0)
    fresh = outbox.folder / "share-in-progress"
    fresh.mkdir()
    outbox.sweep()
    assert fresh.is_dir()
    os.utime(fresh, (0, 0))
    outbox.sweep()
    assert not fresh.exists()  # an empty folder older than the age goes


def test_share_files_are_swept_on_a_timer(tmp_path):
    """Shares go once older than the outbox's age without anyone sharing again."""
    outbox = Outbox(tmp_path / "outbox", max_age=0.2, sweep_every=0.1)
    paths = _share(outbox)
    deadline = time.monotonic() + 10
    # The sweeper deletes a share's files, then its folder: wait for both, or a check between the two fails.
    while any((tmp_path / "outbox").iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(path.exists() for path in paths) and list((tmp_path / "outbox").iterdir()) == []


def test_share_files_are_deleted_at_exit(tmp_path):
    script = """
import sys
from sae.app.outbox import Outbox

outbox = Outbox(sys.argv[1] if len(sys.argv) > 1 else None)
public, key = outbox.write({"face.saep": b"public", "face.saek": b"key"})
print(public, key, outbox.folder)
"""
    for given in ([str(tmp_path / "outbox")], []):  # a given folder is kept (emptied); one the outbox made is removed
        result = subprocess.run([sys.executable, "-c", script, *given], cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        public, key, folder = result.stdout.split()[-3:]
        assert not Path(public).exists() and not Path(key).exists() and Path(folder).exists() == bool(given)
        if given:
            assert list(Path(folder).iterdir()) == []
