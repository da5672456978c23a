"""A model directory's files (sae.zoo.files): the names, what is fetched and published, the data note, bundled models."""

from __future__ import annotations

import json

import pytest

from sae.zoo import files
from sae.zoo.files import DataNote, bundled_models


def test_what_a_model_directory_holds_and_publishes():
    assert files.REQUIRED == ("config.json", "model.safetensors")
    assert set(files.OPTIONAL) == {"README.md", "data.json", "learned_attack.safetensors", "regression_attack.safetensors"}
    assert not set(files.REQUIRED) & set(files.OPTIONAL)
    published = set(files.PUBLISHED)
    assert set(files.REQUIRED) | set(files.OPTIONAL) <= published
    assert {f"{stem}.{ext}" for stem in ("evaluation", "privacy") for ext in ("json", "md", "html")} <= published
    assert not any(name.endswith((".bin", ".pt", ".pkl")) for name in published)  # never a pickle
    assert len(files.PUBLISHED) == len(published)


def test_defaults_describe_celeba():
    note = DataNote()
    assert note.dataset == "celeba" and "CelebA" in note.description and "non-commercial" in note.licence
    assert DataNote.read(None) == note


def test_write_then_read(tmp_path):
    note = DataNote("utkface", "UTKFace aligned and cropped faces at 128x128", "UTKFace: non-commercial research only")
    path = note.write(tmp_path)
    assert path == tmp_path / files.DATA and json.loads(path.read_text())["dataset"] == "utkface"
    assert DataNote.read(tmp_path) == note


def test_a_directory_without_a_note_reads_the_defaults(tmp_path):
    assert DataNote.read(tmp_path) == DataNote()
    assert DataNote.read(tmp_path / "missing") == DataNote()


@pytest.mark.parametrize(
    "content",
    ["{not json", "", "[1, 2, 3]", '"utkface"', "null", b"\xff\xfe\x00garbage"],
    ids=["broken", "empty", "list", "string", "null", "binary"],
)
def test_garbage_reads_the_defaults(tmp_path, content):
    path = tmp_path / files.DATA
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    assert DataNote.read(tmp_path) == DataNote()


def test_known_fields_are_kept_unknown_ignored_and_values_read_as_text(tmp_path):
    (tmp_path / files.DATA).write_text(json.dumps({"dataset": "utkface", "faces": 20946, "licence": 7}))
    note = DataNote.read(tmp_path)
    assert note == DataNote(dataset="utkface", description=DataNote().description, licence="7")


def test_a_data_json_that_is_a_directory_reads_the_defaults(tmp_path):
    (tmp_path / files.DATA).mkdir()
    assert DataNote.read(tmp_path) == DataNote()


def test_bundled_models_lists_only_directories_with_weights(tmp_path, monkeypatch):
    present, absent = tmp_path / "present", tmp_path / "absent"
    present.mkdir()
    (present / files.WEIGHTS).write_bytes(b"weights")
    (absent / "sub").mkdir(parents=True)
    monkeypatch.setattr(files, "BUNDLED", {"celeba64": present, "utkface128": absent})
    assert bundled_models() == {"celeba64": present}


def test_default_model_falls_back_to_a_present_one(tmp_path, monkeypatch):
    present, absent = tmp_path / "present", tmp_path / "absent"
    present.mkdir()
    (present / files.WEIGHTS).write_bytes(b"weights")
    monkeypatch.setattr(files, "BUNDLED", {"celeba64": present, "utkface128": absent})
    assert files.default_model() == present
    monkeypatch.setattr(files, "BUNDLED", {"celeba64": absent, "utkface128": present})
    assert files.default_model() == present
    monkeypatch.setattr(files, "BUNDLED", {"celeba64": absent, "utkface128": tmp_path / "gone"})
    assert files.default_model() == files.BUNDLED[files.DEFAULT_BUNDLED]  # none present: the default's path, named in the error


def test_the_bundled_models_of_this_checkout():
    assert files.DEFAULT_BUNDLED in files.BUNDLED and set(files.BUNDLED) == {"celeba64", "utkface128"}
    found = bundled_models()
    assert all((path / files.WEIGHTS).is_file() and path == files.BUNDLED[name] for name, path in found.items())
    if "celeba64" not in found:
        pytest.skip("the bundled CelebA-64 model is not in this checkout")
    assert DataNote.read(found["celeba64"]).dataset == "celeba"
    assert (found["celeba64"] / files.CONFIG).is_file()


@pytest.mark.parametrize("name", sorted(files.BUNDLED))
def test_a_bundled_model_ships_its_card_data_note_results_and_attacks(name):
    """What the app's About tab, the Hub push and the README links read: every file a published model carries (the
    privacy tables are checked with the privacy evaluation, which takes hours on a CPU for a 128x128 model)."""
    path = files.BUNDLED[name]
    if not (path / files.WEIGHTS).is_file():
        pytest.skip(f"the bundled {name} model is not in this checkout")
    assert [f for f in files.PUBLISHED if not (path / f).is_file() and not f.startswith("privacy.")] == []
    assert (path / files.WEIGHTS).stat().st_size <= 20_000_000
    card = (path / files.CARD).read_text()
    assert files.TITLES[name].split()[0] in card and "privacy" in card.lower()
