"""Handler unit tests: every panel, the chart, share and decode, and every bad input the issue lists."""

from __future__ import annotations

import io
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from sae.hub import LoadedModel
from sae.ui import PANELS, Handlers, about_text, build, caption, to_display

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
DEFAULTS = dict(owner_fraction=1.0, decoys=True, ratio=2.0, fill_all=True, permute=True, known=0.5, extra="magnitude")


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
    image, text, budget = outputs[0], outputs[PANELS], outputs[-2]
    assert image.shape == (256, 256, 3) and "PSNR " in text and "16 non-zeros" in budget
    curve, figure, table = handlers.curve(face, 4)
    assert len(curve.ks) == handlers.model.k_max and figure is not None and len(table) == handlers.model.k_max


def test_face_detection_and_whole_image_toggle(handlers):
    _, detected, message = handlers.prepare(str(EXAMPLES / "astronaut.png"))
    _, whole, whole_message = handlers.prepare(str(EXAMPLES / "astronaut.png"), True)
    assert "Face found" in message and "whole image" in whole_message
    assert not np.array_equal(detected, whole)  # the model input shown is the one actually used


def test_update_shows_four_panels_with_numbers(handlers, face):
    curve = handlers.curve(face, 4)[0]
    outputs = _update(handlers, face, curve)
    images, captions, budget, figure = outputs[:PANELS], outputs[PANELS : 2 * PANELS], outputs[-2], outputs[-1]
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
    assert "k' = 16" in _update(handlers, face, k=16, decoys=False)[-2]
    assert "k' = 32" in _update(handlers, face, k=8, fill_all=False, ratio=4.0)[-2]


def test_no_face_yet(handlers):
    outputs = _update(handlers, None)
    assert outputs[:PANELS] == (None,) * PANELS and outputs[-1] is None
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
    from sae.model import SparseAutoencoder
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
        face, shown, message = handlers.prepare(path)
        assert shown.shape == (256, 256, 3) and face.codes.shape[0] == 1 and message
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
