"""Handler unit tests: every panel, the chart, share and decode, and every bad input the issue lists."""

from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from sae.app.ui import PANELS, Handlers, about_text, build, caption, to_display
from sae.zoo.hub import LoadedModel

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
DEFAULTS = dict(owner_fraction=1.0, decoys=True, ratio=2.0, fill_all=True, permute=True, known=0.5, extra="magnitude")
BUDGET, FIGURE, CURVE, TABLE = 2 * PANELS, 2 * PANELS + 1, 2 * PANELS + 2, 2 * PANELS + 3  # update's outputs after the panels


@pytest.fixture
def handlers(tiny_model, tmp_path) -> Handlers:
    return Handlers(LoadedModel(tiny_model, "test", "a tiny random model"), outbox=tmp_path / "outbox")


@pytest.fixture
def face(handlers):
    return handlers.prepare(str(EXAMPLES / "astronaut.png"))[0]


def _update(handlers, face, curve=None, k=4, **changes):
    values = DEFAULTS | changes
    return handlers.update(face, curve, k, *values.values())


def test_prepare_reconstruct_curve(handlers):
    face, shown, message = handlers.prepare(Image.new("RGB", (120, 90), (200, 150, 100)))
    assert shown.shape == (256, 256, 3) and shown.dtype == np.uint8 and "No face found" in message
    outputs = _update(handlers, face, k=4)
    image, text, budget = outputs[0], outputs[PANELS], outputs[BUDGET]
    assert image.shape == (256, 256, 3) and "PSNR " in text and "16 non-zeros" in budget
    curve, figure, table = handlers.curve(face, 4)
    assert len(curve.curve.ks) == handlers.model.k_max and figure is not None and len(table) == handlers.model.k_max


def test_face_detection_and_whole_image_toggle(handlers):
    _, detected, message = handlers.prepare(str(EXAMPLES / "astronaut.png"))
    _, whole, whole_message = handlers.prepare(str(EXAMPLES / "astronaut.png"), True)
    assert "Face found" in message and "whole image" in whole_message
    assert not np.array_equal(detected, whole)  # the model input shown is the one actually used


def test_update_shows_four_panels_with_numbers(handlers, face):
    curve = handlers.curve(face, 4)[0]
    outputs = _update(handlers, face, curve)
    images, captions, budget, figure = outputs[:PANELS], outputs[PANELS : 2 * PANELS], outputs[BUDGET], outputs[FIGURE]
    assert all(image.shape == (256, 256, 3) for image in images)
    assert [c.split("**")[1] for c in captions] == ["key holder", "no key (decoys)", "permutation attack", "magnitude attack"]
    assert all("PSNR" in c and "SSIM" in c for c in captions) and "k' = 32" in budget
    assert len(figure.layout.shapes) == 1 + 3  # the current k and one reference line per attack


def test_psnr_changes_with_k_and_attack_choice(handlers, face):
    low, high = _update(handlers, face, k=1)[PANELS], _update(handlers, face, k=16)[PANELS]
    assert low != high
    assert _update(handlers, face, extra="re-encode")[2 * PANELS - 1].startswith("**re-encode attack**")
    none = _update(handlers, face, extra="none")
    assert none[PANELS - 1] is None and none[2 * PANELS - 1] == ""
    with pytest.raises(gr.Error, match="unknown attack"):
        _update(handlers, face, extra="telepathy")


def test_key_fraction_and_decoy_controls(handlers, face):
    full = _update(handlers, face, k=16)[PANELS]
    quarter = _update(handlers, face, k=16, owner_fraction=0.25)[PANELS]
    assert full != quarter
    assert "k' = 16" in _update(handlers, face, k=16, decoys=False)[BUDGET]
    assert "k' = 32" in _update(handlers, face, k=8, fill_all=False, ratio=4.0)[BUDGET]


def test_no_face_yet(handlers):
    outputs = _update(handlers, None)
    assert outputs[:PANELS] == (None,) * PANELS and outputs[FIGURE] is None
    assert handlers.curve(None, 3) == (None, None, [])


def test_share_then_decode_roundtrip(handlers, face):
    public, key, note = handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    assert Path(public).suffix == ".saep" and Path(key).suffix == ".saek" and "permuted" in note
    image, text = handlers.decode(public, key, "", 1.0)
    assert image.shape == (256, 256, 3) and "8 of 8" in text


def test_passphrase_and_wrong_key_messages(handlers, face, tmp_path):
    public, key, _ = handlers.share(face, 8, 1.0, True, 2.0, False, True, "open sesame")
    assert handlers.decode(public, key, "open sesame", 0.5)[1].startswith("Decoded with 4 of 8")
    with pytest.raises(gr.Error, match="Passphrase"):
        handlers.decode(public, key, "", 1.0)
    with pytest.raises(gr.Error, match="Passphrase"):
        handlers.decode(public, key, "wrong", 1.0)
    other_public, other_key, _ = handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    with pytest.raises(gr.Error, match="Wrong key"):
        handlers.decode(public, other_key, "", 1.0)
    damaged = tmp_path / "damaged.saep"
    data = bytearray(Path(other_public).read_bytes())
    data[30] ^= 0xFF
    damaged.write_bytes(bytes(data))
    with pytest.raises(gr.Error, match="Damaged"):
        handlers.decode(str(damaged), other_key, "", 1.0)
    with pytest.raises(gr.Error, match="Damaged"):
        handlers.decode(str(EXAMPLES / "astronaut.png"), other_key, "", 1.0)
    with pytest.raises(gr.Error, match="Upload the key"):
        handlers.decode(other_public, None, "", 1.0)


def test_code_for_another_model_is_refused(handlers, face, tmp_path):
    from sae.core.model import SparseAutoencoder
    from tests.conftest import TINY

    other = Handlers(LoadedModel(SparseAutoencoder(**{**TINY, "num_groups": 2}).eval(), "other", "test"), outbox=tmp_path / "o")
    public, key, _ = other.share(other.prepare(Image.new("RGB", (64, 64)))[0], 4, 1.0, True, 2.0, False, True, "")
    with pytest.raises(gr.Error, match="Wrong key.*groups"):
        handlers.decode(public, key, "", 1.0)


def test_old_shares_are_swept(handlers, face):
    import os

    public, key, _ = handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    os.utime(public, (0, 0))
    os.utime(key, (0, 0))
    handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    assert not Path(public).exists() and not Path(key).exists()


# ---------------------------------------------------------------------------------------------------
# Bad inputs: a clear gr.Error (or a usable face), never a crash
# ---------------------------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, **options) -> str:
    image.save(path, **options)
    return str(path)


def _bad_files(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (path, expected error text or None when the upload must work)."""
    corrupt = tmp_path / "corrupt.png"
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(png, format="PNG")
    corrupt.write_bytes(png.getvalue()[:60])
    rotated = Image.new("RGB", (80, 40), (200, 10, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6
    (tmp_path / "notes.png").write_text("not an image at all")
    return {
        "non-image": (str(tmp_path / "notes.png"), "not a readable image"),
        "corrupt png": (str(corrupt), "not a readable image"),
        "1x1": (_save(Image.new("RGB", (1, 1)), tmp_path / "one.png"), "at least"),
        "bomb": (_save(Image.new("1", (12000, 12000)), tmp_path / "bomb.png"), "megapixels"),
        "rgba": (_save(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), tmp_path / "rgba.png"), None),
        "grayscale": (_save(Image.new("L", (64, 64), 128), tmp_path / "gray.png"), None),
        "cmyk jpeg": (_save(Image.new("CMYK", (64, 64), (0, 50, 50, 0)), tmp_path / "cmyk.jpg"), None),
        "16-bit png": (_save(Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)), tmp_path / "deep.png"), None),
        "exif-rotated": (_save(rotated, tmp_path / "rotated.jpg", exif=exif), None),
        "no face": (_save(Image.new("RGB", (200, 100), (90, 140, 200)), tmp_path / "sky.png"), None),
    }


@pytest.mark.parametrize(
    "name", ["non-image", "corrupt png", "1x1", "bomb", "rgba", "grayscale", "cmyk jpeg", "16-bit png", "exif-rotated", "no face"]
)
def test_bad_inputs(handlers, tmp_path, name):
    path, error = _bad_files(tmp_path)[name]
    if error is None:
        ref, shown, message = handlers.prepare(path)
        assert shown.shape == (256, 256, 3) and handlers.faces.get(ref.key).views[False].face.codes.shape[0] == 1 and message
    else:
        with pytest.raises(gr.Error, match=error):
            handlers.prepare(path)


def test_cleared_upload_clears_quietly(handlers):
    face, shown, message = handlers.prepare(None)
    assert face is None and shown is None and "Upload a photo" in message


def test_display_is_crisp_nearest_neighbour():
    image = torch.zeros(1, 3, 64, 64)
    image[..., 0, 0] = 1
    shown = to_display(image)
    assert (shown[:4, :4] == 255).all() and shown[4, 4].sum() == 0


def test_caption_handles_identical():
    assert "identical" in caption(float("inf"), 1.0)


def test_about_mentions_source_and_card(tiny_model, tmp_path):
    (tmp_path / "README.md").write_text("---\nlicense: other\n---\n# Card\n\n| k | PSNR |\n")
    text = about_text(LoadedModel(tiny_model, "hub:x/y", "fallback: because", tmp_path))
    assert "hub:x/y" in text and "fallback: because" in text and "| k | PSNR |" in text and "license:" not in text


def test_build_has_named_endpoints(tiny_model):
    demo = build(LoadedModel(tiny_model, "test", "a tiny random model"))
    assert isinstance(demo, gr.Blocks)
    names = {d.api_name for d in demo.fns.values() if d.api_name}
    assert {"prepare", "curve", "update", "share", "decode"} <= names


# ---------------------------------------------------------------------------------------------------
# Uploads are deleted once read; the per-image cache is bounded and never serves another upload
# ---------------------------------------------------------------------------------------------------


def _gradio_upload(folder: Path, data: bytes, name: str) -> Path:
    """Put bytes where Gradio's upload route would: <upload folder>/<content hash>/<name>."""
    from sae.app.uploads import content_key

    path = folder / content_key(data) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def _png(color: tuple[int, int, int], size=(96, 80)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def uploaded(tiny_model, tmp_path) -> tuple[Handlers, Path]:
    """Handlers whose Gradio upload folder is a temporary one, and that folder."""
    from sae.app.uploads import Uploads

    folder = tmp_path / "gradio"
    folder.mkdir()
    uploads = Uploads(folder, keep=[EXAMPLES / "astronaut_face.png"])
    return Handlers(LoadedModel(tiny_model, "test", "tiny"), outbox=tmp_path / "outbox", uploads=uploads, cache_size=2), folder


def test_photo_upload_is_deleted_once_read(uploaded):
    handlers, folder = uploaded
    path = _gradio_upload(folder, (EXAMPLES / "astronaut.png").read_bytes(), "astronaut.png")
    ref, shown, message = handlers.prepare(str(path))
    assert not path.exists() and not path.parent.exists() and "Face found" in message
    whole_ref, whole, whole_message = handlers.select(ref, True)  # the toggle needs the file no more
    assert whole_ref.key == ref.key and "whole image" in whole_message and not np.array_equal(shown, whole)
    assert handlers.update(whole_ref, None, 4, *DEFAULTS.values())[PANELS].startswith("**key holder**")


def test_unreadable_upload_is_deleted_too(uploaded):
    handlers, folder = uploaded
    path = _gradio_upload(folder, b"not an image", "notes.png")
    with pytest.raises(gr.Error, match="not a readable image"):
        handlers.prepare(str(path))
    assert not path.exists()


def test_example_files_and_files_elsewhere_are_kept(uploaded, tmp_path):
    handlers, folder = uploaded
    example = _gradio_upload(folder, (EXAMPLES / "astronaut_face.png").read_bytes(), "astronaut_face.png")
    handlers.prepare(str(example))
    assert example.exists()  # Gradio serves its cached examples to every visitor
    elsewhere = tmp_path / "mine.png"
    elsewhere.write_bytes(_png((10, 200, 30)))
    handlers.prepare(str(elsewhere))
    assert elsewhere.exists()


def test_identical_upload_read_first_by_another_request(uploaded):
    """Two visitors upload the same bytes (one path): the second request finds the file gone and the cached result."""
    handlers, folder = uploaded
    data = _png((200, 120, 90))
    path = _gradio_upload(folder, data, "same.png")
    first = handlers.prepare(str(path))
    assert not path.exists()
    second = handlers.prepare(str(path))
    assert second[0] == first[0] and np.array_equal(second[1], first[1])
    handlers.prepare(Image.new("RGB", (70, 70), (1, 2, 3)))
    handlers.prepare(Image.new("RGB", (70, 70), (3, 2, 1)))  # capacity 2: the shared entry is evicted
    with pytest.raises(gr.Error, match="upload it again"):
        handlers.prepare(str(path))


def test_evicted_face_is_a_clear_message_never_another_face(uploaded):
    handlers, folder = uploaded
    refs = [
        handlers.prepare(str(_gradio_upload(folder, _png(color), f"{i}.png")))[0]
        for i, color in enumerate([(250, 0, 0), (0, 250, 0), (0, 0, 250)])
    ]
    assert len(handlers.faces) == 2 and len({ref.key for ref in refs}) == 3
    for call in (
        lambda: handlers.update(refs[0], None, 4, *DEFAULTS.values()),
        lambda: handlers.curve(refs[0], 4),
        lambda: handlers.select(refs[0], True),
        lambda: handlers.share(refs[0], 4, 1.0, True, 2.0, False, True, ""),
    ):
        with pytest.raises(gr.Error, match="no longer in the server's memory.*upload it again"):
            call()
    blue = handlers.update(refs[2], None, 4, *DEFAULTS.values())[0]

    def key_holder(color):
        fresh = handlers.prepare(Image.open(io.BytesIO(_png(color))))[0]
        return handlers.update(fresh, None, 4, *DEFAULTS.values())[0]

    assert np.array_equal(blue, key_holder((0, 0, 250))) and not np.array_equal(blue, key_holder((250, 0, 0)))


def test_decode_uploads_are_read_into_the_session_and_deleted(uploaded):
    handlers, folder = uploaded
    ref = handlers.prepare(Image.new("RGB", (64, 64), (90, 60, 30)))[0]
    public, key, _ = handlers.share(ref, 8, 1.0, True, 2.0, False, True, "pw")
    public_upload = _gradio_upload(folder, Path(public).read_bytes(), "face.saep")
    key_upload = _gradio_upload(folder, Path(key).read_bytes(), "face.saek")
    public_data, cleared, note = handlers.receive(str(public_upload), "public code")
    key_data = handlers.receive(str(key_upload), "key")[0]
    assert not public_upload.exists() and not key_upload.exists() and cleared is None and "received" in note
    with pytest.raises(gr.Error, match="Passphrase"):
        handlers.decode_received(public_data, key_data, "wrong", 1.0)
    assert "8 of 8" in handlers.decode_received(public_data, key_data, "pw", 1.0)[1]  # a retry needs no new upload
    with pytest.raises(gr.Error, match="Upload the key"):
        handlers.decode_received(public_data, None, "pw", 1.0)


def test_api_decode_deletes_both_files(uploaded):
    handlers, folder = uploaded
    ref = handlers.prepare(Image.new("RGB", (64, 64), (30, 60, 90)))[0]
    public, key, _ = handlers.share(ref, 8, 1.0, True, 2.0, False, True, "")
    files = [_gradio_upload(folder, Path(path).read_bytes(), Path(path).name) for path in (public, key)]
    assert "Decoded" in handlers.decode(str(files[0]), str(files[1]))[1]
    assert not any(file.exists() for file in files)
    with pytest.raises(gr.Error, match="upload it again"):
        handlers.decode(str(files[0]), str(files[1]))
    lone_key = _gradio_upload(folder, Path(key).read_bytes(), "lone.saek")
    with pytest.raises(gr.Error, match="Upload the public code"):
        handlers.decode(None, str(lone_key))
    assert not lone_key.exists()  # deleted although the request failed


# ---------------------------------------------------------------------------------------------------
# Races between sessions' steps and between workers
# ---------------------------------------------------------------------------------------------------


def test_a_late_curve_for_an_earlier_upload_is_replaced(handlers):
    """Two quick uploads in one session: the first photo's curve step finishing last must not stay on the chart."""
    first = handlers.prepare(Image.new("RGB", (90, 90), (220, 40, 40)))[0]
    second = handlers.prepare(Image.new("RGB", (90, 90), (40, 40, 220)))[0]
    late, _, first_table = handlers.curve(first, 4)
    own, _, own_table = handlers.curve(second, 4)
    outputs = _update(handlers, second, late)
    assert outputs[CURVE].ref == second and outputs[TABLE] == own_table != first_table
    assert list(outputs[FIGURE].data[0].y) == list(own.curve.psnr)  # the chart is the second photo's
    whole = handlers.select(second, True)[0]  # the other crop of the same upload has its own curve too
    assert _update(handlers, whole, own)[CURVE].ref == whole
    current = _update(handlers, second, own)
    assert current[CURVE] == gr.skip()  # a matching curve state is left as it is
    # The table is sent, never skipped: Gradio keeps a new component copy per session after a skip (Handlers.update)
    assert current[TABLE] == own_table
    assert _update(handlers, second, None)[TABLE] == []  # no curve yet: an empty table, not the last face's
    for outputs in (current, _update(handlers, second, late), _update(handlers, second, None), _update(handlers, None)):
        assert isinstance(outputs[TABLE], list)  # on every path a value, never a skip or update dict


def test_sweep_skips_files_another_worker_deleted(handlers, face, monkeypatch):
    """A file listed by one worker's sweep and deleted by another's before it is looked at is skipped."""
    import os

    public, key, _ = handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    os.utime(public, (0, 0))
    ghost = Path(public).parent / "deleted-by-the-other-worker.saek"
    glob = Path.glob

    def listing_with_ghost(self, pattern, *args, **kwargs):
        found = list(glob(self, pattern, *args, **kwargs))
        return [*found, ghost] if pattern == "*/*" else found

    monkeypatch.setattr(Path, "glob", listing_with_ghost)
    handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    assert not Path(public).exists() and Path(key).exists()


def test_a_sweep_never_removes_a_share_folder_before_it_is_filled(handlers, face, monkeypatch):
    """Worker B's share (and sweep) runs while worker A has created its folder but not written into it yet."""
    import tempfile
    import threading

    mkdtemp, other, results = tempfile.mkdtemp, [], []

    def created_then_other_worker_shares(*args, **kwargs):
        folder = mkdtemp(*args, **kwargs)
        if not other:  # only in worker A
            other.append(threading.Thread(target=lambda: results.append(handlers.share(face, 4, 1.0, True, 2.0, False, True, ""))))
            other[0].start()
            other[0].join(timeout=1.0)  # B runs now (or waits for A's lock)
        return folder

    monkeypatch.setattr(tempfile, "mkdtemp", created_then_other_worker_shares)
    public, key, _ = handlers.share(face, 8, 1.0, True, 2.0, False, True, "")
    other[0].join()
    assert Path(public).is_file() and Path(key).is_file() and all(Path(path).is_file() for path in results[0][:2])


def test_share_files_are_swept_on_a_timer(tiny_model, tmp_path, monkeypatch):
    """Shares go once older than the outbox's age without anyone sharing again."""
    import time

    import sae.app.outbox
    import sae.app.ui

    monkeypatch.setattr(sae.app.ui, "OUTBOX_MAX_AGE", 0.2)
    monkeypatch.setattr(sae.app.outbox, "SWEEP_EVERY", 0.1)
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny"), outbox=tmp_path / "outbox")
    paths = [Path(path) for path in handlers.share(handlers.prepare(Image.new("RGB", (64, 64)))[0], 4, 1.0, True, 2.0, False, True, "")[:2]]
    deadline = time.monotonic() + 10
    while any(path.exists() for path in paths) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(path.exists() for path in paths) and list((tmp_path / "outbox").iterdir()) == []


def test_share_files_are_deleted_at_exit(tmp_path):
    import subprocess
    import sys

    from tests.conftest import REPO

    script = """
import sys
from PIL import Image
from sae.zoo.hub import LoadedModel
from sae.core.model import SparseAutoencoder
from sae.app.ui import Handlers
from tests.conftest import TINY

handlers = Handlers(LoadedModel(SparseAutoencoder(**TINY).eval(), "test", "tiny"), outbox=sys.argv[1] if len(sys.argv) > 1 else None)
ref = handlers.prepare(Image.new("RGB", (64, 64), (90, 60, 30)))[0]
public, key, _ = handlers.share(ref, 4, 1.0, True, 2.0, False, True, "")
print(public, key, handlers.outbox.folder)
"""
    for given in ([str(tmp_path / "outbox")], []):  # a given folder is kept (emptied); one the app made is removed
        result = subprocess.run([sys.executable, "-c", script, *given], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        public, key, folder = result.stdout.split()[-3:]
        assert not Path(public).exists() and not Path(key).exists() and Path(folder).exists() == bool(given)
