"""Saved parts of a long run (sae.cli.parts): computed once, read back by the same run of the same code only."""

from __future__ import annotations

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


def test_a_part_is_computed_once_then_read_back(tmp_path, sources):
    calls = []
    first = Parts(tmp_path / "parts", {"seed": 1}, [sources])
    assert not first.saved("row")
    assert first.get("row", lambda: calls.append(1) or {"psnr": 12.5, "pair": (1, 2)}) == {"psnr": 12.5, "pair": [1, 2]}
    assert first.saved("row") and first.reused == [] and first.reused_seconds == 0.0
    again = Parts(tmp_path / "parts", {"seed": 1}, [sources])
    assert again.get("row", lambda: pytest.fail("computed again")) == {"psnr": 12.5, "pair": [1, 2]}
    assert calls == [1] and again.reused == ["row"] and again.reused_seconds >= 0.0
    assert [path.name for path in again.folder.iterdir()] == ["row.json"]  # no temporary file left


def test_another_run_or_other_code_computes_again(tmp_path, sources):
    Parts(tmp_path / "parts", {"seed": 1}, [sources]).get("row", lambda: {"x": 1})
    assert not Parts(tmp_path / "parts", {"seed": 2}, [sources]).saved("row")
    (sources / "sub" / "b.py").write_text("B = 3\n")
    assert not Parts(tmp_path / "parts", {"seed": 1}, [sources]).saved("row")


def test_a_failed_part_saves_nothing(tmp_path, sources):
    parts = Parts(tmp_path / "parts", {}, [sources])
    with pytest.raises(ZeroDivisionError):
        parts.get("row", lambda: {"x": 1 / 0})
    assert not parts.saved("row")


def test_the_source_digest_reads_python_files_only_and_not_where_they_lie(tmp_path, sources):
    digest = source_digest([sources])
    (sources / "notes.txt").write_text("changed")
    assert source_digest([sources]) == digest
    moved = shutil.copytree(sources, tmp_path / "another checkout" / "code")
    assert source_digest([moved]) == digest and source_digest([moved / "a.py"]) != digest
    (moved / "a.py").write_text("A = 2\n")
    assert source_digest([moved]) != digest
