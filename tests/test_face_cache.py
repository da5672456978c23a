"""The per-image cache (sae.app.face_cache): an upload is read, detected and cropped once for every served model's
framing, each model encodes it once when first asked; bounded, least recently used first out, safe under threads."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import torch
from PIL import Image

from sae.app import face_cache
from sae.app.face_cache import GONE, FaceCache, FaceEntry, FaceRef, FaceStore, UploadGone
from sae.app.uploads import Uploads, content_key
from sae.core.data import preprocess
from sae.core.faces import PhotoError, centre_square, detect_faces, face_box
from tests.conftest import REPO

PHOTO = REPO / "assets" / "examples" / "astronaut.png"


def _upload(value: float) -> FaceEntry:
    return FaceEntry({("celeba", 4, False): (torch.full((3, 4, 4), int(value * 255), dtype=torch.uint8), "face")})


def test_least_recently_used_is_evicted_first():
    cache = FaceCache(2)
    cache.put("a", _upload(0.1))
    cache.put("b", _upload(0.2))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", _upload(0.3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None and len(cache) == 2
    assert cache.get(None) is None
    cache.clear()
    assert len(cache) == 0


def test_a_racing_put_keeps_the_first_entry():
    cache = FaceCache(4)
    first = cache.put("k", _upload(0.1))
    assert cache.put("k", _upload(0.9)) is first and len(cache) == 1


def test_bounded_under_concurrent_use():
    cache = FaceCache(8)

    def worker(offset: int) -> None:
        for i in range(200):
            key = f"{offset}-{i % 20}"
            if cache.get(key) is None:
                cache.put(key, _upload(i / 200))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 8


def test_capacity_must_hold_one_upload():
    with pytest.raises(ValueError, match="at least one"):
        FaceCache(0)


@pytest.fixture
def store(served_models, tmp_path) -> FaceStore:
    return FaceStore(served_models, Uploads(tmp_path / "gradio"), capacity=2)


def test_one_detection_then_a_crop_per_framing_size_and_whole(store, served_models, monkeypatch):
    calls = []
    monkeypatch.setattr(face_cache, "detect_faces", lambda image: calls.append(image.size) or detect_faces(image))
    key = store.add(PHOTO)
    upload = store.cache.get(key)
    assert calls == [Image.open(PHOTO).size]  # one detection serves every framing
    assert store.framings == [("celeba", 64), ("utkface", 128)]
    assert set(upload.crops) == {(style, size, whole) for style, size in store.framings for whole in (False, True)}
    photo = Image.open(PHOTO).convert("RGB")
    found = detect_faces(photo)[0]
    for style, size in store.framings:
        face, message = upload.crops[(style, size, False)]
        assert face.shape == (3, size, size) and face.dtype == torch.uint8 and message.startswith("Face found")
        assert torch.equal(face, preprocess(photo, face_box(found, photo.size, style), size))
        whole, whole_message = upload.crops[(style, size, True)]
        assert torch.equal(whole, preprocess(photo, centre_square(photo.size), size)) and "whole image" in whole_message
    assert not torch.equal(upload.crops[("celeba", 64, False)][0], upload.crops[("celeba", 64, True)][0])
    assert "UTKFace" in upload.crops[("utkface", 128, False)][1] and "CelebA" in upload.crops[("celeba", 64, False)][1]
    assert upload.codes == {}  # nothing encoded until a model looks at it


def test_each_model_encodes_each_crop_once_when_first_asked(store, served_models, monkeypatch):
    celeba, utkface = served_models
    calls = []
    original = face_cache.encode_face
    monkeypatch.setattr(face_cache, "encode_face", lambda model, pixels: calls.append(model) or original(model, pixels))
    key = store.add(PHOTO)
    first = store.view(FaceRef(key, False), celeba)
    assert store.view(FaceRef(key, False), celeba).face is first.face and calls == [celeba.model]
    other = store.view(FaceRef(key, False), utkface)
    assert other.face.image.shape == (1, 3, 128, 128) and calls == [celeba.model, utkface.model]
    store.view(FaceRef(key, True), celeba)
    store.view(FaceRef(key, False), utkface)
    assert calls == [celeba.model, utkface.model, celeba.model]
    assert set(store.cache.get(key).codes) == {(celeba.name, False), (utkface.name, False), (celeba.name, True)}
    assert first.message.startswith("Face found: cropped like a CelebA photo") and "UTKFace" in other.message


def test_extras_are_made_once_per_crop_and_model_even_by_racing_threads(store, served_models):
    celeba, utkface = served_models
    key = store.add(PHOTO)
    made, start = [], threading.Barrier(4)

    def make(view):
        made.append(view.face.image.shape[-1])
        return ("extras", view.face.image.shape[-1])

    def ask(served):
        start.wait()
        return store.extras(FaceRef(key, False), served, make)

    threads = [threading.Thread(target=ask, args=(served,)) for served in (celeba, celeba, utkface, utkface)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(made) == [64, 128] and store.extras(FaceRef(key, False), celeba, make) == ("extras", 64) and len(made) == 2
    assert store.extras(FaceRef(key, True), celeba, make) == ("extras", 64) and len(made) == 3  # the whole image: its own


def test_an_evicted_upload_is_a_clear_message_never_another_face(store, served_models):
    celeba = served_models[0]
    keys = [store.add(Image.new("RGB", (70, 70), colour)) for colour in [(250, 0, 0), (0, 250, 0), (0, 0, 250)]]
    assert len(store) == 2 and len(set(keys)) == 3
    with pytest.raises(UploadGone, match="no longer in the server's memory.*2 most recent uploads.*upload it again") as gone:
        store.view(FaceRef(keys[0], False), celeba)
    assert isinstance(gone.value, PhotoError)
    again = store.add(Image.new("RGB", (70, 70), (250, 0, 0)))
    assert again == keys[0] and store.view(FaceRef(again, False), celeba).face.image[0, 0, 0, 0] > 0.9  # red again
    with pytest.raises(UploadGone):  # the extras go with their upload
        store.extras(FaceRef(keys[1], False), celeba, lambda view: "made anew")


def test_identical_uploads_share_one_entry(store, tmp_path):
    image = Image.new("RGB", (80, 60), (10, 120, 200))
    assert store.add(image) == store.add(image.copy()) and len(store) == 1
    assert store.add(image.convert("L").convert("RGB")) != store.add(image)  # other pixels: another entry
    first, second = tmp_path / "a" / "one.png", tmp_path / "b" / "two.png"
    for path in (first, second):
        path.parent.mkdir()
        image.save(path)
    assert store.add(first) == store.add(second) == content_key(first.read_bytes())  # files: keyed by their bytes


def test_uploads_are_deleted_once_read_even_unreadable_ones(served_models, tmp_path):
    folder = tmp_path / "gradio"
    store = FaceStore(served_models, Uploads(folder), capacity=2)
    data = PHOTO.read_bytes()
    upload = folder / content_key(data) / "astronaut.png"
    upload.parent.mkdir(parents=True)
    upload.write_bytes(data)
    key = store.add(str(upload))
    assert key == content_key(data) and not upload.exists() and not upload.parent.exists()
    assert store.add(str(upload)) == key  # an identical upload whose file another request read first: the cached entry
    junk = folder / content_key(b"not an image") / "notes.png"
    junk.parent.mkdir()
    junk.write_bytes(b"not an image")
    with pytest.raises(PhotoError, match="not a readable image"):
        store.add(str(junk))
    assert not junk.exists()


def test_a_file_gone_and_not_cached_is_upload_it_again(store, tmp_path):
    with pytest.raises(UploadGone) as gone:
        store.add(str(tmp_path / "gradio" / "0123abcd" / "gone.png"))
    assert str(gone.value) == GONE and "upload it again" in GONE
    with pytest.raises(UploadGone):
        store.add(str(tmp_path / "elsewhere.png"))  # outside the upload folder: no key to guess from


def test_entry_size_is_computed_from_the_shapes(store, served_models):
    """What one entry holds once every model looked at both crops: per model, both crops as uint8 (3, S, S) and each
    crop's float32 input with its dense codes and those of its mirror image; nothing else."""
    key = store.add(Path(PHOTO))
    for served in served_models:
        for whole in (False, True):
            store.view(FaceRef(key, whole), served)
    upload = store.cache.get(key)
    held = sum(pixels.nbytes for pixels, _ in upload.crops.values())
    held += sum(t.nbytes for face in upload.codes.values() for t in (face.image, face.codes, face.mirror_codes))
    assert held == sum(2 * (3 * n * n + 4 * (3 * n * n + 2 * 4 * 32)) for n in (64, 128))


def test_a_photo_too_small_is_refused_before_caching(store):
    with pytest.raises(PhotoError, match="at least 16x16"):
        store.add(Image.new("RGB", (8, 8)))
    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, format="PNG")
    with pytest.raises(PhotoError, match="at least"):
        store.add(Image.open(io.BytesIO(buffer.getvalue())))
    assert len(store) == 0
