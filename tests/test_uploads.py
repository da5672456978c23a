"""Uploaded files live only as long as the request that reads them (sae.app.uploads), through the handlers too: photos,
public codes and keys are deleted once read; the bundled examples and files outside the upload folder are kept."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from PIL import Image

from sae.app.face_cache import GONE
from sae.app.handlers import Handlers
from sae.app.settings import ShareSettings
from sae.app.uploads import Uploads, content_key
from tests.conftest import REPO, Page

EXAMPLES = REPO / "assets" / "examples"


def _gradio_upload(folder: Path, data: bytes, name: str) -> Path:
    """Put bytes where Gradio's upload route would: <upload folder>/<content hash>/<name>."""
    path = folder / content_key(data) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png(colour: tuple[int, int, int], size=(96, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_content_key_is_gradios_folder_name():
    from gradio.processing_utils import hash_bytes

    assert content_key(b"abc") == hash_bytes(b"abc") != content_key(b"abd")


def test_take_reads_and_deletes_an_upload_and_its_folder(tmp_path):
    uploads = Uploads(tmp_path / "gradio")
    path = _gradio_upload(tmp_path / "gradio", b"a key", "face.saek")
    assert uploads.owns(path) and uploads.key_hint(path) == content_key(b"a key")
    assert uploads.take(path) == b"a key" and not path.exists() and not path.parent.exists()
    assert uploads.take(path) is None  # already gone: the caller says "upload it again"
    assert (tmp_path / "gradio").is_dir()  # the upload folder itself stays


def test_a_shared_folder_stays_while_another_file_is_in_it(tmp_path):
    uploads = Uploads(tmp_path / "gradio")
    first = _gradio_upload(tmp_path / "gradio", b"same", "a.png")
    second = first.parent / "b.png"
    second.write_bytes(b"same")
    assert uploads.discard(first, b"same") and not first.exists() and second.exists()
    assert not uploads.discard(first, b"same")  # nothing left to delete


def test_examples_and_files_elsewhere_are_kept(tmp_path):
    example = EXAMPLES / "astronaut_face.png"
    uploads = Uploads(tmp_path / "gradio", keep=[example])
    cached_example = _gradio_upload(tmp_path / "gradio", example.read_bytes(), example.name)
    assert uploads.take(cached_example) == example.read_bytes() and cached_example.exists()  # Gradio serves it to everyone
    elsewhere = tmp_path / "mine.png"
    elsewhere.write_bytes(b"mine")
    assert not uploads.owns(elsewhere) and uploads.key_hint(elsewhere) is None
    assert uploads.take(elsewhere) == b"mine" and elsewhere.exists()
    sneaky = tmp_path / "gradio" / ".." / "mine.png"  # a path that only looks like it is inside
    assert not uploads.owns(sneaky) and not uploads.discard(sneaky, b"mine") and elsewhere.exists()


@pytest.fixture
def uploaded(served_models, tmp_path) -> tuple[Page, Path]:
    """Handlers whose Gradio upload folder is a temporary one (it keeps the example face), as a page shows their
    outputs, and that folder."""
    folder = tmp_path / "gradio"
    folder.mkdir()
    uploads = Uploads(folder, keep=[EXAMPLES / "astronaut_face.png"])
    return Page(Handlers(served_models, outbox=tmp_path / "outbox", uploads=uploads, cache_size=2)), folder


def _controls(k: int = 4) -> list:
    return ShareSettings(k=k).widget_values()


def test_photo_upload_is_deleted_once_read_and_a_model_switch_still_finds_it(uploaded, served_models):
    handlers, folder = uploaded
    celeba, utkface = served_models
    path = _gradio_upload(folder, (EXAMPLES / "astronaut.png").read_bytes(), "astronaut.png")
    ref, note, panels, *_ = handlers.prepare(str(path), False, celeba.name, *_controls())
    assert not path.exists() and not path.parent.exists() and "Face found" in note
    whole = handlers.select(ref, True, celeba.name, *_controls())  # the toggle needs the file no more
    assert whole[0].key == ref.key and "whole image" in whole[1] and whole[2] != panels
    switched = handlers.switch(ref, utkface.name, *_controls())  # nor does another model's framing
    assert switched[1] == ref and "UTKFace" in switched[2] and "Model input (128x128)" in switched[3]
    assert "Key holder" in handlers.update(ref, celeba.name, *_controls())[0]


def test_unreadable_upload_is_deleted_too(uploaded, served_models):
    handlers, folder = uploaded
    path = _gradio_upload(folder, b"not an image", "notes.png")
    ref, note, *_ = handlers.prepare(str(path), False, served_models[0].name, *_controls())
    assert ref is None and "Not a readable image" in note and not path.exists()


def test_example_files_and_files_elsewhere_are_kept_by_the_handlers(uploaded, served_models, tmp_path):
    handlers, folder = uploaded
    example = _gradio_upload(folder, (EXAMPLES / "astronaut_face.png").read_bytes(), "astronaut_face.png")
    assert handlers.prepare(str(example), False, served_models[0].name, *_controls())[0] is not None
    assert example.exists()
    elsewhere = tmp_path / "mine.png"
    elsewhere.write_bytes(_png((10, 200, 30)))
    assert handlers.prepare(str(elsewhere), False, served_models[0].name, *_controls())[0] is not None
    assert elsewhere.exists()


def test_identical_upload_read_first_by_another_request(uploaded, served_models):
    """Two visitors upload the same bytes (one path): the second request finds the file gone and the cached result."""
    handlers, folder = uploaded
    name = served_models[0].name
    path = _gradio_upload(folder, _png((200, 120, 90)), "same.png")
    first = handlers.prepare(str(path), False, name, *_controls())
    assert not path.exists()
    second = handlers.prepare(str(path), False, name, *_controls())
    assert second == first
    handlers.prepare(Image.new("RGB", (70, 70), (1, 2, 3)), False, name, *_controls())
    handlers.prepare(Image.new("RGB", (70, 70), (3, 2, 1)), False, name, *_controls())  # capacity 2: the shared entry goes
    gone = handlers.prepare(str(path), False, name, *_controls())
    assert gone[0] is None and GONE in gone[1].replace("&#x27;", "'") and "upload it again" not in gone[2]  # said once


def test_decode_uploads_are_read_into_the_session_and_deleted(uploaded, served_models):
    handlers, folder = uploaded
    name = served_models[0].name
    ref = handlers.prepare(Image.new("RGB", (64, 64), (90, 60, 30)), False, name, *_controls())[0]
    public, key, _ = handlers.make_share(ref, name, "pw", *_controls(8))
    public_upload = _gradio_upload(folder, Path(public).read_bytes(), "face.saep")
    key_upload = _gradio_upload(folder, Path(key).read_bytes(), "face.saek")
    public_data, cleared, note = handlers.receive(str(public_upload), "public code")
    key_data, _, key_note = handlers.receive(str(key_upload), "key")
    assert not public_upload.exists() and not key_upload.exists() and cleared is None
    assert note.startswith("Public code received: face.saep") and "already deleted" in note and key_note.startswith("Key received")
    assert "Passphrase" in handlers.decode_received(public_data, key_data, name, "wrong", 1.0)[1]
    image, text = handlers.decode_received(public_data, key_data, name, "pw", 1.0)  # a retry needs no new upload
    assert image.shape == (64, 64, 3) and text.startswith("Decoded with 32 entries")
    assert "Upload the key file" in handlers.decode_received(public_data, None, name, "pw", 1.0)[1]
    assert handlers.receive(str(public_upload), "public code") == (
        None,
        None,
        f'<span class="failure">{GONE}</span>'.replace("'", "&#x27;"),
    )
    assert handlers.receive(None, "key") == (None, None, "")


def test_a_code_file_too_large_is_refused_and_deleted(uploaded, monkeypatch):
    import sae.app.handlers

    handlers, folder = uploaded
    monkeypatch.setattr(sae.app.handlers, "MAX_CODE_FILE", 10)
    path = _gradio_upload(folder, b"x" * 11, "big.saep")
    data, cleared, note = handlers.receive(str(path), "public code")
    assert data is None and cleared is None and "too large" in note and not path.exists()


def test_api_decode_deletes_both_files(uploaded, served_models):
    handlers, folder = uploaded
    name = served_models[0].name
    ref = handlers.prepare(Image.new("RGB", (64, 64), (30, 60, 90)), False, name, *_controls())[0]
    public, key, _ = handlers.make_share(ref, name, "", *_controls(8))
    files = [_gradio_upload(folder, Path(path).read_bytes(), Path(path).name) for path in (public, key)]
    image, text = handlers.decode(str(files[0]), str(files[1]), name)
    assert image is not None and "Decoded" in text and not any(file.exists() for file in files)
    image, text = handlers.decode(str(files[0]), str(files[1]), name)  # the same request again: the files are gone
    assert image is None and "upload it again" in text
    lone_key = _gradio_upload(folder, Path(key).read_bytes(), "lone.saek")
    image, text = handlers.decode(None, str(lone_key), name)
    assert image is None and "Upload the public code file" in text
    assert not lone_key.exists()  # deleted although the request failed
    assert not re.search(r"/(tmp|gradio)/", text)
