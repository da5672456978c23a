"""Saved parts of a long run (sae.cli.parts): computed once, read back only by a run with the same key."""

from __future__ import annotations

import json
import shutil

import pytest

from sae.cli.parts import Parts, source_digest


@pytest.fixture
def sources(tmp_path):
    folder = tmp_path / "code"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.py").write_text("A = 1\n")
    (folder / "sub" / "b.py").write_text("B = 2\n")
    (folder / "notes.txt").write_text("not code")
    return folder


def test_a_part_is_computed_once_then_read_back(tmp_path):
    calls = []
    first = Parts(tmp_path / "parts", {"seed": 1})
    assert not first.saved("row")
    assert first.get("row", lambda: calls.append(1) or {"psnr": 12.5, "pair": (1, 2)}) == {"psnr": 12.5, "pair": [1, 2]}
    assert first.saved("row") and first.reused == [] and first.reused_seconds == 0.0
    saved = json.loads((first.folder / "row.json").read_text())
    again = Parts(tmp_path / "parts", {"seed": 1})
    assert again.get("row", lambda: pytest.fail("computed again")) == {"psnr": 12.5, "pair": [1, 2]}
    assert calls == [1] and again.reused == ["row"] and again.reused_seconds == saved["seconds"] > 0
    assert sorted(path.name for path in again.folder.iterdir()) == ["row.json", "run.json"]  # no temporary file left
    assert json.loads((again.folder / "run.json").read_text()) == {"seed": 1}


def test_another_key_or_fresh_computes_again(tmp_path):
    Parts(tmp_path / "parts", {"seed": 1}).get("row", lambda: {"x": 1})
    assert not Parts(tmp_path / "parts", {"seed": 2}).saved("row")
    fresh = Parts(tmp_path / "parts", {"seed": 1}, fresh=True)
    assert not fresh.saved("row") and fresh.get("row", lambda: {"x": 2}) == {"x": 2} and fresh.reused == []
    assert Parts(tmp_path / "parts", {"seed": 1}).get("row", lambda: pytest.fail("computed again")) == {"x": 2}


def test_a_failed_or_unreadable_part_is_computed_again(tmp_path):
    parts = Parts(tmp_path / "parts", {})
    with pytest.raises(ZeroDivisionError):
        parts.get("row", lambda: {"x": 1 / 0})
    assert not parts.saved("row") and not parts.folder.exists()
    parts.folder.mkdir(parents=True)
    (parts.folder / "row.json").write_text('{"seconds": 1.0, "pa')  # cut short by a crash
    assert not parts.saved("row") and parts.get("row", lambda: {"x": 3}) == {"x": 3}
    (parts.folder / "row.json").write_text('{"x": 3}')  # another format
    assert not parts.saved("row")


def test_the_source_digest_reads_python_files_only_and_not_where_they_lie(tmp_path, sources):
    digest = source_digest([sources])
    (sources / "notes.txt").write_text("changed")
    assert source_digest([sources]) == digest
    moved = shutil.copytree(sources, tmp_path / "another checkout" / "code")
    assert source_digest([moved]) == digest and source_digest([moved / "a.py"]) != digest
    (moved / "sub" / "b.py").rename(moved / "b.py")  # the same files, one moved to another folder
    assert source_digest([moved]) != digest
    (moved / "a.py").write_text("A = 2\n")
    assert source_digest([moved]) != source_digest([sources])
