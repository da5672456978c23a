"""The app's event handlers (sae.app.handlers) over two tiny served models: every view, the model switch, share and
decode, and every failure a visitor (or a hand-made API call) can cause: the view is reset and one message says what
happened, never an exception, a server path or a traceback."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from sae.app import face_cache
from sae.app.face_cache import FaceRef
from sae.app.handlers import NO_FACE, START, Handlers, budget_text, curve_table, describe, linkage_text, preview_seed, view_id
from sae.app.pipeline import QualityCurve, curve_ks, privacy_view
from sae.app.render import reference_slot, with_reference
from sae.app.settings import CONTROLS, NO_EXTRA, ShareSettings
from sae.app.uploads import Uploads, content_key
from sae.privacy.formats import Key, PublicCode
from tests.conftest import REPO, Page

EXAMPLES = REPO / "assets" / "examples"
PHOTO = EXAMPLES / "astronaut.png"
PANELS, CHART, LINKAGE, BUDGET = range(4)  # update's outputs
LINKAGE_LINE = re.compile(
    r"finds (\d+) of its (\d+) values in it(?:, every one)?, and (\d+) in the code of another image \(the same photo mirrored"
)


def controls(**changes) -> list:
    """The controls' values in CONTROLS order (k = 4 unless changed)."""
    return ShareSettings(**({"k": 4} | changes)).widget_values()


def _tinted(tmp_path: Path) -> Path:
    """Another photo of the same face (the example, brighter), for a second upload."""
    path = tmp_path / "tinted.png"
    Image.open(PHOTO).convert("RGB").point(lambda v: min(255, v + 60)).save(path)
    return path


@pytest.fixture
def handlers(served_models, tmp_path) -> Page:
    """The handlers, their outputs as one page shows them (the model input filled into the panels)."""
    return Page(Handlers(served_models, outbox=tmp_path / "outbox", uploads=Uploads(tmp_path / "gradio")))


@pytest.fixture
def celeba(served_models):
    return served_models[0]


@pytest.fixture
def utkface(served_models):
    return served_models[1]


@pytest.fixture
def face(handlers, celeba) -> FaceRef:
    return handlers.prepare(str(PHOTO), False, celeba.name, *controls())[0]


def _titles(panels: str) -> list[str]:
    return [html.unescape(title) for title in re.findall(r'<figcaption class="title">([^<]*)</figcaption>', panels)]


def _captions(panels: str) -> list[str]:
    return [html.unescape(text) for text in re.findall(r'<div class="caption" id="caption-\d+">([^<]*)</div>', panels)]


def _images(panels: str) -> list[np.ndarray]:
    sources = re.findall(r'src="data:image/webp;base64,([^"]+)"', panels)
    return [np.asarray(Image.open(io.BytesIO(base64.b64decode(src)))) for src in sources]


def _texts(outputs) -> list[str]:
    return [text for text in outputs if isinstance(text, str)]


def _clean(outputs, *paths: Path) -> None:
    """No output names a server path or shows a traceback."""
    for text in _texts(outputs):
        text = re.sub(r"data:image/webp;base64,[^\"]+", "", text)
        assert "Traceback" not in text and not any(str(path) in text for path in paths), text
        assert "/tmp/" not in text and "gradio" not in text.lower(), text


# ---------------------------------------------------------------------------------------------------
# The Explore view
# ---------------------------------------------------------------------------------------------------


def test_prepare_shows_the_whole_view(handlers, celeba):
    ref, note, panels, chart, linkage, budget, table = handlers.prepare(str(PHOTO), False, celeba.name, *controls())
    assert isinstance(ref, FaceRef) and not ref.whole and note.startswith("Face found: cropped like a CelebA photo")
    assert _titles(panels) == [
        "Model input (64x64)",
        "Key holder (all of the key)",
        "No key, decoded as is (k' = 32)",
        "Guess 4 of 32, knows 50%",
        "Magnitude attack",
    ]
    assert all(caption.startswith("PSNR ") and " · SSIM " in caption for caption in _captions(panels)[1:])
    images = _images(panels)  # one pixel per pixel: the page scales them up
    assert len(images) == len(_titles(panels)) == 5 and all(image.shape == (64, 64, 3) for image in images)
    assert chart.startswith('<div class="chart"') and "<svg" in chart and "key holder at k = 4" in chart
    assert LINKAGE_LINE.search(linkage) and "16 non-zeros" in budget and "k' = 32 per group" in budget
    assert [row[0] for row in table] == curve_ks(celeba.model.k_max) and all(len(row) == 3 for row in table)
    assert "-0.000" not in panels + chart


def test_the_reference_is_the_crop_the_model_sees(handlers, celeba):
    detected = handlers.prepare(str(PHOTO), False, celeba.name, *controls())
    whole = handlers.prepare(str(PHOTO), True, celeba.name, *controls())
    assert whole[0] == FaceRef(detected[0].key, True) and "whole image" in whole[1]
    crop, whole_crop = (handlers.faces.cache.get(detected[0].key).crops[("celeba", 64, w)][0] for w in (False, True))
    assert np.array_equal(_images(detected[2])[0], crop.permute(1, 2, 0).numpy())
    assert np.array_equal(_images(whole[2])[0], whole_crop.permute(1, 2, 0).numpy())
    assert not np.array_equal(_images(detected[2])[0], _images(whole[2])[0])


def test_select_toggles_the_crop_of_the_same_upload(handlers, celeba, face):
    whole = handlers.select(face, True, celeba.name, *controls())
    assert whole[0] == FaceRef(face.key, True) and "whole image" in whole[1]
    back = handlers.select(whole[0], False, celeba.name, *controls())
    assert back == handlers.prepare(str(PHOTO), False, celeba.name, *controls())
    assert handlers.select(None, True, celeba.name, *controls())[:2] == (None, START)


def test_update_follows_the_controls(handlers, celeba, face):
    def update(**changes):
        return handlers.update(face, celeba.name, *controls(**changes))

    base = update()
    assert len(base) == 4 and base[PANELS] == handlers.prepare(str(PHOTO), False, celeba.name, *controls())[2]
    assert _captions(update(k=1)[PANELS]) != _captions(update(k=16)[PANELS])
    assert _titles(update(decoys=False)[PANELS])[2:4] == ["No key, decoded as is (no decoys)", "Guess 4 of 4, knows 50%"]
    assert "k' = 4 per group" in update(decoys=False)[BUDGET] and "k' = 16 per group" in update(k_prime_ratio=4.0)[BUDGET]
    half = update(owner_fraction=0.5)
    assert (
        _titles(half[PANELS])[1] == "Key holder (50% of the key)" and _images(half[PANELS])[1].tolist() != _images(base[PANELS])[1].tolist()
    )
    assert _titles(update(known_fraction=0.0)[PANELS])[3] == "Guess 4 of 32"
    assert _titles(update(extra_attack="re-encode")[PANELS])[-1] == "Re-encode attack"
    none = update(extra_attack=NO_EXTRA)
    assert len(_titles(none[PANELS])) == 4 and none[CHART].count('class="swatch level"') == 2
    for changes in ({}, {"k": 1}, {"scheme": "paper"}, {"decoys": False}, {"owner_fraction": 0.05}, {"known_fraction": 1.0}):
        outputs = update(**changes)
        assert "-0.000" not in "".join(outputs)
        assert outputs[CHART].count('class="swatch level"') == len(_titles(outputs[PANELS])) - 2  # one per attack panel


def test_a_control_change_draws_the_session_s_latest_face(handlers, celeba, utkface, face, tmp_path):
    """Gradio reads a session's state when the request arrives, before the handler waits for a worker: a move sent
    during an upload carries the previous face. The upload, whole-image and model handlers record what they give the
    session, and a move draws that instead; without a session (a direct call) the carried face is drawn."""
    second = handlers.prepare(str(_tinted(tmp_path)), False, celeba.name, *controls(), session="visitor")[0]
    assert second != face and handlers.sessions.latest("visitor", face) == second
    stale = handlers.update(face, celeba.name, *controls(k=2), session="visitor")  # the move carried the first face
    assert stale == handlers.update(second, celeba.name, *controls(k=2)) != handlers.update(face, celeba.name, *controls(k=2))
    whole = handlers.select(face, True, celeba.name, *controls(), session="visitor")[0]
    assert whole == FaceRef(second.key, True) == handlers.sessions.latest("visitor", None)  # the toggle of the latest upload
    assert handlers.switch(face, utkface.name, *controls(), session="visitor")[1] == whole
    handlers.prepare(str(tmp_path / "missing.png"), False, celeba.name, *controls(), session="visitor")  # a failed upload
    assert handlers.sessions.latest("visitor", face) is None  # the view was reset: a move shows no face either,
    assert handlers.update(face, celeba.name, *controls(), session="visitor")[PANELS] == gr.skip()  # and keeps the message
    redrawn = handlers.redraw(face, False, celeba.name, *controls(k=2), session="visitor")  # the redraw after it too
    assert redrawn[:5] == (gr.skip(),) * 5 and redrawn[6] == gr.skip() and "k = 2 per group" in redrawn[5]


def test_the_redraw_once_a_face_lands_shows_the_latest_face_as_the_page_is_set(handlers, celeba, utkface, tmp_path):
    """Once an upload, a crop toggle or a model switch lands, the page redraws the whole view (model input, note and
    table included) of the session's latest face with the crop, model and controls it shows then: the same view as a
    face handler called with those."""
    ref = handlers.prepare(str(PHOTO), False, celeba.name, *controls(), session="visitor")[0]
    redrawn = handlers.redraw(ref, True, utkface.name, *controls(k=2), session="visitor")
    assert redrawn[0] == FaceRef(ref.key, True) == handlers.sessions.latest("visitor", None)
    assert handlers.props["view"] == view_id(redrawn[0], utkface)
    assert redrawn == handlers.select(ref, True, utkface.name, *controls(k=2))
    assert redrawn[1:3] != handlers.select(ref, True, celeba.name, *controls(k=2))[1:3]  # the model's own note and panels


def test_an_upload_landing_while_a_switch_works_stays_the_session_s_face(handlers, celeba, utkface, face, tmp_path, monkeypatch):
    """A model switch (or a crop toggle) works on the face it read when it started. An upload that landed meanwhile,
    drawn with the model its request read, stays the session's face: the switch answers with the previous face but
    does not record it, and the redraw after it draws the upload under the model the page shows."""
    handlers.prepare(str(PHOTO), False, celeba.name, *controls(), session="visitor")
    refresh = Handlers._refresh
    uploaded = []

    def upload_lands_meanwhile(self, ref, model_name, controls_):
        if not uploaded:
            uploaded.append(handlers.prepare(str(_tinted(tmp_path)), False, celeba.name, *controls(), session="visitor")[0])
        return refresh(self, ref, model_name, controls_)

    monkeypatch.setattr(Handlers, "_refresh", upload_lands_meanwhile)
    switched = handlers.switch(face, utkface.name, *controls(), session="visitor")
    monkeypatch.setattr(Handlers, "_refresh", refresh)
    (upload,) = uploaded
    assert switched[1] == face != upload and handlers.sessions.latest("visitor", None) == upload
    redrawn = handlers.redraw(switched[1], False, utkface.name, *controls(), session="visitor")
    assert redrawn[0] == upload and handlers.props["view"] == view_id(upload, utkface)
    assert redrawn == handlers.switch(upload, utkface.name, *controls())[1:]


def test_a_redraw_that_a_newer_upload_overtook_changes_nothing(handlers, celeba, face, tmp_path, monkeypatch):
    """The redraw after a face lands is not queued: a failed upload sent right after can be answered while it draws.
    The failure's message then stands (the redraw changes nothing), as does a newer face."""
    handlers.prepare(str(PHOTO), False, celeba.name, *controls(), session="visitor")
    refresh = Handlers._refresh

    def failed_upload_meanwhile(self, ref, model_name, controls_):
        drawn = refresh(self, ref, model_name, controls_)
        handlers.prepare(str(tmp_path / "missing.png"), False, celeba.name, *controls(), session="visitor")
        return drawn

    monkeypatch.setattr(Handlers, "_refresh", failed_upload_meanwhile)
    assert handlers.redraw(face, False, celeba.name, *controls(), session="visitor") == (gr.skip(),) * 7
    assert handlers.sessions.latest("visitor", face) is None


def test_a_hidden_extra_attack_is_explained(handlers, celeba, face):
    panels = handlers.update(face, celeba.name, *controls(scheme="paper", extra_attack="learned (keep k)"))[PANELS]
    assert _titles(panels)[-1] == "Learned attack (keep k)" and 'class="panel hidden"' in panels
    assert "not shown: no learned_attack.safetensors beside the model" in panels
    assert len(_images(panels)) == 4  # the reference and three panels; the hidden one has no image


def test_the_chart_marks_k_and_the_table_is_the_curve(handlers, celeba, face):
    chart = handlers.update(face, celeba.name, *controls(k=16))[CHART]
    assert "key holder at k = 16" in chart and chart.count('class="marker"') == 2  # one per drawing (wide, narrow)
    table = handlers.prepare(str(PHOTO), False, celeba.name, *controls())[-1]
    assert table[-1][0] == 16 and all(isinstance(value, int | float) for row in table for value in row)


def test_linkage_paper_finds_every_value_keyed_about_as_many_as_elsewhere(handlers, celeba, face):
    paper = LINKAGE_LINE.search(handlers.update(face, celeba.name, *controls(k=8, scheme="paper"))[LINKAGE])
    found, total, elsewhere = map(int, paper.groups())
    assert total == 8 * celeba.model.num_groups and found == total and elsewhere < total // 2
    keyed_line = handlers.update(face, celeba.name, *controls(k=8, scheme="keyed"))[LINKAGE]
    found, total, elsewhere = map(int, LINKAGE_LINE.search(keyed_line).groups())
    assert found < total // 2 and abs(found - elsewhere) < total // 4 and "does not point to this photo" in keyed_line


def test_no_face_yet(handlers, celeba):
    assert handlers.prepare(None, False, celeba.name, *controls())[:6] == (
        None,
        START,
        '<div class="panels-empty" id="panels">The panels appear here once a face is loaded.</div>',
        "",
        "",
        budget_text(celeba, ShareSettings(k=4)),
    )
    panels, chart, linkage, budget = handlers.update(None, celeba.name, *controls())
    assert panels == chart == linkage == gr.skip() and "16 non-zeros" in budget  # the panels keep the start text


def test_k_beyond_the_model_is_capped(handlers, celeba, face):
    assert "16 per group" in handlers.update(face, celeba.name, *controls(k=99))[BUDGET]
    assert "1 per group" in handlers.update(face, celeba.name, *controls(k=0))[BUDGET]


# ---------------------------------------------------------------------------------------------------
# Switching models
# ---------------------------------------------------------------------------------------------------


def test_switch_keeps_the_photo_and_the_settings(handlers, celeba, utkface, face):
    settings = controls(k=16, scheme="paper", owner_fraction=0.5, extra_attack=NO_EXTRA)
    k, ref, note, panels, chart, linkage, budget, table = handlers.switch(face, utkface.name, *settings)
    assert k == gr.update(maximum=24, value=16) and ref == face and "cropped like a UTKFace photo" in note
    assert _titles(panels)[:2] == ["Model input (128x128)", "Key holder (50% of the key)"] and len(_titles(panels)) == 4
    images = _images(panels)
    assert len(images) == 4 and all(image.shape == (128, 128, 3) for image in images)
    assert "16 per group" in budget and [row[0] for row in table] == curve_ks(24)
    assert LINKAGE_LINE.search(linkage).group(1) == LINKAGE_LINE.search(linkage).group(2)  # the paper scheme still


def test_switch_caps_k_at_the_new_k_max(handlers, celeba, utkface, face):
    handlers.switch(face, utkface.name, *controls(k=20))
    k, *view = handlers.switch(face, celeba.name, *controls(k=20))
    assert k == gr.update(maximum=16, value=16) and "16 per group" in view[5]
    assert handlers.switch(face, utkface.name, *controls(k=16))[0] == gr.update(maximum=24, value=16)  # not raised back


def test_switch_encodes_once_per_model(handlers, celeba, utkface, monkeypatch):
    calls = []
    original = face_cache.encode_face
    monkeypatch.setattr(face_cache, "encode_face", lambda model, pixels: calls.append(model) or original(model, pixels))
    ref = handlers.prepare(str(PHOTO), False, celeba.name, *controls())[0]
    handlers.switch(ref, utkface.name, *controls())
    handlers.switch(ref, celeba.name, *controls())
    handlers.switch(ref, utkface.name, *controls(k=8))
    handlers.update(ref, celeba.name, *controls(k=2))
    handlers.update(ref, utkface.name, *controls(k=3))
    assert calls == [celeba.model, utkface.model]
    codes = handlers.faces.cache.get(ref.key).codes
    assert set(codes) == {(celeba.name, False), (utkface.name, False)}
    assert codes[(celeba.name, False)].codes.shape == codes[(utkface.name, False)].codes.shape == (1, 4, 32)
    assert codes[(utkface.name, False)].image.shape == (1, 3, 128, 128)


def test_switch_without_a_face(handlers, utkface):
    k, ref, note, panels, *_ = handlers.switch(None, utkface.name, *controls(k=20))
    assert k == gr.update(maximum=24, value=20) and ref is None and note == START and "once a face is loaded" in panels


# ---------------------------------------------------------------------------------------------------
# Failures reset the view and say why
# ---------------------------------------------------------------------------------------------------


def _save(image: Image.Image, path: Path, **options) -> str:
    image.save(path, **options)
    return str(path)


def _bad_files(tmp_path: Path) -> dict[str, tuple[str, str | None]]:
    """name -> (path, the message's words, or None when the upload must work)."""
    png = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(png, format="PNG")
    (tmp_path / "corrupt.png").write_bytes(png.getvalue()[:60])
    (tmp_path / "notes.png").write_text("not an image at all")
    rotated = Image.new("RGB", (80, 40), (200, 10, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6
    return {
        "non-image": (str(tmp_path / "notes.png"), "Not a readable image"),
        "truncated png": (str(tmp_path / "corrupt.png"), "Not a readable image"),
        "1x1": (_save(Image.new("RGB", (1, 1)), tmp_path / "one.png"), "at least"),
        "bomb": (_save(Image.new("1", (12000, 12000)), tmp_path / "bomb.png"), "megapixels"),
        "rgba": (_save(Image.new("RGBA", (64, 64), (0, 0, 0, 0)), tmp_path / "rgba.png"), None),
        "grayscale": (_save(Image.new("L", (64, 64), 128), tmp_path / "gray.png"), None),
        "cmyk jpeg": (_save(Image.new("CMYK", (64, 64), (0, 50, 50, 0)), tmp_path / "cmyk.jpg"), None),
        "16-bit png": (_save(Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)), tmp_path / "deep.png"), None),
        "exif-rotated": (_save(rotated, tmp_path / "rotated.jpg", exif=exif), None),
        "no face": (_save(Image.new("RGB", (200, 100), (90, 140, 200)), tmp_path / "sky.png"), "No face found"),
    }


def _assert_reset(outputs, words: str, budget: str) -> None:
    ref, note, panels, chart, linkage, shown_budget, table = outputs
    assert ref is None and note.startswith('<span class="failure">') and words in html.unescape(note)
    assert panels.startswith('<div class="panels-empty"') and NO_FACE in panels and words not in html.unescape(panels)  # said once
    assert (chart, linkage, shown_budget, table) == ("", "", budget, [])


@pytest.mark.parametrize(
    "name", ["non-image", "truncated png", "1x1", "bomb", "rgba", "grayscale", "cmyk jpeg", "16-bit png", "exif-rotated", "no face"]
)
def test_bad_uploads(handlers, celeba, tmp_path, name):
    path, words = _bad_files(tmp_path)[name]
    outputs = handlers.prepare(path, False, celeba.name, *controls())
    _clean(outputs, tmp_path)
    if words is None or name == "no face":
        ref, note, panels = outputs[:3]
        assert ref is not None and len(_images(panels)) == 5 and "failure" not in note and (words is None or words in note)
        assert handlers.faces.cache.get(ref.key).codes[(celeba.name, False)].codes.shape == (1, 4, 32)
    else:
        _assert_reset(outputs, words, budget_text(celeba, ShareSettings(k=4)))


def test_a_failed_upload_clears_the_previous_face(handlers, celeba, face, tmp_path):
    (tmp_path / "notes.png").write_text("text")
    ref, *_ = handlers.prepare(str(tmp_path / "notes.png"), False, celeba.name, *controls())
    assert ref is None  # the session's state is cleared: the next control change shows no stale face


@pytest.fixture
def small(served_models, tmp_path) -> tuple[Page, Path]:
    """Handlers with room for one upload (as a page shows their outputs), and their Gradio upload folder."""
    folder = tmp_path / "gradio"
    return Page(Handlers(served_models, outbox=tmp_path / "outbox", uploads=Uploads(folder), cache_size=1)), folder


def _upload(folder: Path, colour: tuple[int, int, int]) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (90, 90), colour).save(buffer, format="PNG")
    path = folder / content_key(buffer.getvalue()) / "photo.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return str(path)


def test_an_evicted_upload_resets_every_view_and_never_shows_another_face(small, celeba, utkface, tmp_path):
    handlers, folder = small
    red_path = _upload(folder, (250, 0, 0))
    red = handlers.prepare(red_path, False, celeba.name, *controls())
    blue = handlers.prepare(_upload(folder, (0, 0, 250)), False, celeba.name, *controls())
    blue_page = dict(handlers.props)  # the page that shows blue (the resets below clear this page's model input)
    assert len(handlers.faces) == 1 and red[0].key != blue[0].key
    memory = "This photo is no longer in the server's memory (it keeps the 1 most recent uploads): upload it again."
    _assert_reset(
        handlers.prepare(red_path, False, celeba.name, *controls()), "no longer on the server", budget_text(celeba, ShareSettings(k=4))
    )
    _assert_reset(handlers.select(red[0], True, celeba.name, *controls()), memory, "")
    _assert_reset(handlers.switch(red[0], utkface.name, *controls())[1:], memory, "")
    escaped = html.escape(memory)
    assert handlers.update(red[0], celeba.name, *controls()) == (f'<div class="panels-empty" id="panels">{escaped}</div>', "", "", "")
    assert handlers.make_share(red[0], celeba.name, "", *controls()) == (None, None, f'<span class="failure">{escaped}</span>')
    assert handlers.share_preview(red[0], celeba.name, *controls()) == (None, f'<span class="failure">{escaped}</span>')
    with pytest.raises(gr.Error, match="upload it again"):
        handlers.comparison(red[0], celeba.name, *controls())
    moved = handlers.handlers.update(blue[0], celeba.name, *controls())[PANELS]
    assert with_reference(moved, **blue_page) == blue[2]  # the entry still held is unaffected
    again = handlers.prepare(_upload(folder, (250, 0, 0)), False, celeba.name, *controls())  # uploaded again: the same face
    assert again[0] == red[0] and again[2] == red[2] != blue[2]


def test_an_unknown_model_is_a_message(handlers, celeba, face):
    unknown = "Unknown model 'nope'"
    _assert_reset(handlers.prepare(str(PHOTO), False, "nope", *controls()), unknown, "")
    _assert_reset(handlers.prepare(None, False, "nope", *controls()), unknown, "")
    _assert_reset(handlers.select(face, True, "nope", *controls()), unknown, "")
    _assert_reset(handlers.select(None, True, "nope", *controls()), unknown, "")
    k, *view = handlers.switch(face, "nope", *controls())
    assert k == gr.update() and _assert_reset(view, unknown, "") is None
    escaped = html.escape(unknown)
    assert handlers.update(face, "nope", *controls()) == (f'<div class="panels-empty" id="panels">{escaped}</div>', "", "", "")
    assert handlers.share_preview(face, "nope", *controls()) == (None, f'<span class="failure">{escaped}</span>')
    assert handlers.make_share(face, "nope", "", *controls()) == (None, None, f'<span class="failure">{escaped}</span>')
    with pytest.raises(gr.Error, match="Unknown model"):
        handlers.comparison(face, "nope", *controls())


@pytest.mark.parametrize(
    "changes, words",
    [({"scheme": "rot13"}, "Unknown scheme"), ({"extra_attack": "telepathy"}, "Unknown extra attack"), ({"k": "many"}, "unusable value")],
)
def test_unusable_controls_are_a_message(handlers, celeba, face, changes, words):
    values = dict(zip(CONTROLS, controls(), strict=True))
    values |= changes
    _assert_reset(handlers.prepare(str(PHOTO), False, celeba.name, *values.values()), words, "")
    _assert_reset(handlers.select(face, True, celeba.name, *values.values()), words, "")
    assert words in html.unescape(handlers.update(face, celeba.name, *values.values())[PANELS])
    k, *view = handlers.switch(face, celeba.name, *values.values())
    assert k == gr.update() and _assert_reset(view, words, "") is None
    assert words in html.unescape(handlers.make_share(face, celeba.name, "", *values.values())[2])


# ---------------------------------------------------------------------------------------------------
# The comparison image, the share, the decode
# ---------------------------------------------------------------------------------------------------


def test_comparison_writes_a_png_named_after_what_it_shows(handlers, celeba, face):
    path = Path(handlers.comparison(face, celeba.name, *controls(k=8)))
    assert re.fullmatch(r"comparison-k8-[0-9a-f]{8}\.png", path.name) and path.parent.parent == handlers.outbox.folder
    # settings that change the picture but not the public code (the attacker's knowledge, the extra attack, the key
    # fraction) change the name too; the same view is the same name
    names = {
        Path(handlers.comparison(face, celeba.name, *controls(k=8, **change))).name
        for change in ({}, {"known_fraction": 0.25}, {"extra_attack": NO_EXTRA}, {"owner_fraction": 0.5})
    }
    assert len(names) == 4 and path.name in names
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGB" and image.size == (12 + 5 * (256 + 12), 356)  # input and 4 panels
    with pytest.raises(gr.Error, match="Load a face first"):
        handlers.comparison(None, celeba.name, *controls())


def test_share_writes_the_code_and_key_named_after_the_code(handlers, celeba, face):
    public_path, key_path, note = handlers.make_share(face, celeba.name, "", *controls(k=8))
    public_path, key_path = Path(public_path), Path(key_path)
    public, key = PublicCode.from_bytes(public_path.read_bytes()), Key.from_bytes(key_path.read_bytes())
    assert public_path.name == f"face-{public.short_id()}.saep" and key_path.name == f"face-{public.short_id()}.saek"
    assert public.keyed and public.k_prime == 32 and key.granted == 8 * 4
    assert f"`{public_path.name}`: {public_path.stat().st_size} bytes (keyed, k' = 32 per group)" in note
    assert "unlocks 32 entries" in note and "passphrase" not in note
    image, text = handlers.decode(str(public_path), str(key_path), celeba.name)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and text == f"Decoded with 32 entries (4 groups, keyed) by {celeba.name}."
    assert public_path.exists()  # a file outside Gradio's upload folder is never deleted


def test_two_shares_never_collide(handlers, celeba, face):
    other = handlers.prepare(Image.new("RGB", (64, 64), (30, 60, 90)), False, celeba.name, *controls())[0]
    shares = [handlers.make_share(ref, celeba.name, "", *controls(k=8))[:2] for ref in (face, other, face)]
    names = [Path(path).name for share in shares for path in share]
    assert len(set(names)) == len(names) and all(Path(path).is_file() for share in shares for path in share)
    assert Path(shares[0][0]).read_bytes() != Path(shares[2][0]).read_bytes()  # fresh secrets for every share


@pytest.mark.parametrize("scheme", ["keyed", "paper"])
def test_a_share_with_part_of_the_key_gives_a_restricted_key(handlers, celeba, face, scheme):
    public_path, key_path, note = handlers.make_share(face, celeba.name, "", *controls(k=8, scheme=scheme, owner_fraction=0.5))
    key = Key.from_bytes(Path(key_path).read_bytes())
    assert 0 < key.granted < 8 * 4 and f"unlocks {key.granted} entries" in note
    if scheme == "paper":
        assert key.granted == 4 * 4 and "values in the clear" in note
    image, text = handlers.decode(public_path, key_path, celeba.name)
    assert image is not None and text.startswith(f"Decoded with {key.granted} entries")


def test_share_preview_describes_the_settings(handlers, celeba, utkface, face):
    pixels, text = handlers.share_preview(face, celeba.name, *controls(k=8, owner_fraction=0.5, known_fraction=0.25))
    assert pixels.shape == (64, 64, 3) and pixels.dtype == np.uint8
    assert text == (
        f"Will share this face with **{celeba.name}**: k = 8, keyed scheme, k' = 32, permuted, key fraction 50%."
    )  # not the attacker's knowledge: a share does not use it
    assert handlers.share_preview(face, utkface.name, *controls())[0].shape == (128, 128, 3)
    assert handlers.share_preview(None, celeba.name, *controls())[0] is None
    assert handlers.make_share(None, celeba.name, "", *controls()) == (
        None,
        None,
        '<span class="failure">Load a face in the Explore tab first.</span>',
    )


def test_describe_the_paper_scheme_without_permutation(celeba):
    text = describe(ShareSettings(k=4, scheme="paper", permute=False, decoys=False, known_fraction=0.0), celeba)
    assert text == "k = 4, paper scheme, k' = 4, not permuted, key fraction 100%, attacker knows 0% of the true entries"


@pytest.fixture
def shared(handlers, celeba, face) -> tuple[bytes, bytes]:
    """A passphrase-protected share of the face: (public code bytes, key bytes)."""
    public, key, note = handlers.make_share(face, celeba.name, "open sesame", *controls(k=8))
    assert "passphrase-protected" in note
    return Path(public).read_bytes(), Path(key).read_bytes()


def test_decode_with_the_passphrase_and_part_of_the_key(handlers, celeba, shared):
    image, text = handlers.decode_received(*shared, celeba.name, "open sesame", 1.0)
    assert image.shape == (64, 64, 3) and text == f"Decoded with 32 entries (4 groups, keyed) by {celeba.name}."
    half, text = handlers.decode_received(*shared, celeba.name, "open sesame", 0.5)
    assert half.shape == (64, 64, 3) and text.startswith("Decoded with 50% of the key's entries") and not np.array_equal(half, image)


def test_decode_failures_clear_the_image_and_say_why(handlers, celeba, utkface, face, shared, tmp_path):
    from sae.app.models import serve
    from sae.core.model import SparseAutoencoder
    from sae.zoo.hub import LoadedModel
    from tests.conftest import TINY

    public, key = shared
    other_public, other_key, _ = handlers.make_share(face, celeba.name, "", *controls(k=8))
    damaged = bytearray(public)
    damaged[30] ^= 0xFF
    narrow = serve(LoadedModel(SparseAutoencoder(**{**TINY, "num_groups": 2}).eval(), "narrow", "a test model"))
    narrow_handlers = Handlers([narrow], outbox=tmp_path / "narrow")
    cases = {
        "Passphrase: this key is protected by a passphrase; none was given": (public, key, celeba.name, ""),
        "Passphrase: wrong passphrase": (public, key, celeba.name, "wrong"),
        "Wrong key: key does not belong to this public code": (public, Path(other_key).read_bytes(), celeba.name, ""),
        "Damaged or unknown file: public code is corrupted or truncated": (bytes(damaged), key, celeba.name, "open sesame"),
        "Damaged or unknown file: public code is corrupted or truncated ": (public[:20], key, celeba.name, "open sesame"),
        "Damaged or unknown file: not a public code": (PHOTO.read_bytes(), key, celeba.name, "open sesame"),
        "The key box holds a public code (.saep): upload the key (.saek) there.": (public, public, celeba.name, ""),
        "The public code box holds a key (.saek): upload the public code (.saep) there.": (key, key[:3], celeba.name, ""),
        "The two files are in each other's boxes": (key, public, celeba.name, "open sesame"),
        f"This public code was made with {celeba.name}: choose it in the Model menu at the top": (public, key, utkface.name, "open sesame"),
        "Upload the public code file.": (None, key, celeba.name, ""),
        "Upload the key file.": (public, None, celeba.name, ""),
        "Unknown model 'nope'": (public, key, "nope", "open sesame"),
    }
    for words, (public_data, key_data, model, passphrase) in cases.items():
        image, text = handlers.decode_received(public_data, key_data, model, passphrase, 1.0)
        assert image is None and text.startswith('<span class="failure">') and words.strip() in html.unescape(text), (words, text)
        _clean((text.replace(celeba.name, ""),), tmp_path)  # a test model's menu name is its folder; no other path
    image, text = narrow_handlers.decode_received(Path(other_public).read_bytes(), Path(other_key).read_bytes(), "narrow", "", 1.0)
    assert image is None and "This public code was made by a model this app does not serve (4 groups of 32 entries)." in html.unescape(text)
    image, text = handlers.decode_received(*shared, celeba.name, "open sesame", 0.0)
    assert image is None and "at least one entry" in text


def test_a_code_that_names_no_model_is_offered_to_every_model_it_fits(handlers, celeba, utkface, face, tmp_path):
    """A file that names no model (zeros for its model id) fits every served model of its shape: the message lists
    them all instead of picking one."""
    from dataclasses import replace

    from sae.app.models import serve
    from sae.core.model import SparseAutoencoder
    from sae.zoo.hub import LoadedModel
    from tests.conftest import TINY

    public_path, key_path, _ = handlers.make_share(face, celeba.name, "", *controls(scheme="paper"))
    unnamed = replace(PublicCode.from_bytes(Path(public_path).read_bytes()), model_id=bytes(8)).to_bytes()
    narrow = serve(LoadedModel(SparseAutoencoder(**{**TINY, "num_groups": 2}).eval(), "narrow", "a test model"))
    both = Handlers([narrow, celeba, utkface], outbox=tmp_path / "both")
    image, text = both.decode_received(unnamed, Path(key_path).read_bytes(), "narrow")
    expected = f"This public code names no model; {celeba.name} and {utkface.name} fit its shape: choose it in the Model menu"
    assert image is None and expected in html.unescape(text)
    one = Handlers([narrow, celeba], outbox=tmp_path / "one")  # fitting one model by shape is not being named by it
    image, text = one.decode_received(unnamed, Path(key_path).read_bytes(), "narrow")
    assert image is None and f"This public code names no model; {celeba.name} fits its shape" in html.unescape(text)
    image, text = both.decode_received(unnamed, Path(key_path).read_bytes(), celeba.name)
    assert image is None and "Wrong key" in text  # the chosen model fits it: the key (bound to the named code) does not


# ---------------------------------------------------------------------------------------------------
# The text helpers
# ---------------------------------------------------------------------------------------------------


def test_budget_text(celeba, handlers, face):
    text = budget_text(celeba, ShareSettings(k=4, k_prime_ratio=2.0))
    assert text.startswith("k = 4 per group × 4 groups = **16 non-zeros** (about ") and "shared with k' = 8 per group" in text
    sizes = re.search(r"public code (\d+) bytes, key (\d+) bytes\.$", text)
    public_path, key_path, _ = handlers.make_share(face, celeba.name, "", *controls(k_prime_ratio=2.0))
    assert sizes is not None and tuple(map(int, sizes.groups())) == (Path(public_path).stat().st_size, Path(key_path).stat().st_size)
    # a key to part of the code can be larger (keyed: it also stores a chain link and a cutoff) or smaller
    part = budget_text(celeba, ShareSettings(k=4, k_prime_ratio=2.0, owner_fraction=0.5))
    assert part.endswith("key " + sizes.group(2) + " bytes (a whole key's size; a key to part of it can differ).")
    _, part_key, _ = handlers.make_share(face, celeba.name, "", *controls(k_prime_ratio=2.0, owner_fraction=0.5))
    assert Path(part_key).stat().st_size != int(sizes.group(2))  # what the line warns of


def test_describe_names_the_secret_the_attacker_lacks_only_where_there_is_one(celeba):
    for settings, secret in ((ShareSettings(k=4), True), (ShareSettings(k=4, scheme="paper"), True),
                             (ShareSettings(k=4, scheme="paper", permute=False), False)):  # fmt: skip
        assert describe(settings, celeba).endswith("of the true entries" + (" (not the secret)" if secret else "")), settings


def test_linkage_text_verdicts():
    assert "points to this photo" in linkage_text(16, 2, 16, keyed=False) and "does not point" in linkage_text(2, 3, 16, keyed=True)
    assert linkage_text(16, 2, 16, keyed=False).startswith("**Linkage**: the public code **points to this photo**. An attacker")
    assert linkage_text(16, 2, 16, keyed=False).endswith(
        "finds 16 of its 16 values in it, every one, and 2 in the code of another image (the same photo mirrored, a nearly identical face)."
    )
    assert "finds 3 of its 16 values in it, and 2 in the code of another image (the same photo mirrored): values that match by chance" in (
        linkage_text(3, 2, 16, keyed=True)
    )
    assert "finds 16 of its 16 values in it, and 9 in the code" in linkage_text(16, 9, 16, keyed=True)  # chance, not "every one"


def test_curve_table_rounds():
    table = curve_table(QualityCurve(np.array([1, 2]), np.array([12.3456, 20.0]), np.array([0.123456, 0.5])))
    assert table == [[1, 12.35, 0.1235], [2, 20.0, 0.5]] and isinstance(table[0][0], int)


def test_handlers_need_a_model(tmp_path):
    with pytest.raises(ValueError, match="at least one model"):
        Handlers([], outbox=tmp_path)


def test_the_first_model_is_the_default(handlers, celeba, utkface):
    assert handlers.default == celeba.name and list(handlers.models) == [celeba.name, utkface.name]
    assert handlers.faces.framings == [("celeba", 64), ("utkface", 128)]


def test_previews_of_two_faces_never_share_secrets(handlers, celeba, face):
    other = handlers.prepare(Image.new("RGB", (64, 64), (200, 40, 40)), False, celeba.name, *controls())[0]
    assert preview_seed(face) != preview_seed(other) and preview_seed(face) == preview_seed(FaceRef(face.key, True))
    views = [
        privacy_view(celeba, handlers.faces.view(ref, celeba).face, ShareSettings(k=8, seed=preview_seed(ref))) for ref in (face, other)
    ]
    assert views[0].key.root != views[1].key.root and views[0].public.nonce != views[1].public.nonce


def test_a_move_does_not_resend_the_model_input(served_models, celeba, tmp_path):
    raw = Handlers(served_models, outbox=tmp_path / "outbox", uploads=Uploads(tmp_path / "gradio"))
    ref, _, panels, *_ = raw.prepare(str(PHOTO), False, celeba.name, *controls())
    view, reference = panels.props["view"], panels.props["reference"]
    assert isinstance(panels, gr.HTML) and reference.startswith('<img src="data:image/webp;base64,')
    assert reference.endswith('alt="Model input (64x64)">')
    assert reference_slot(view) in panels.value and reference not in panels.value
    moved = raw.update(ref, celeba.name, *controls(k=8))[PANELS]
    assert isinstance(moved, str) and reference_slot(view) in moved and reference.split('"')[1] not in moved


@pytest.mark.parametrize("after", ["another upload", "the whole image", "another model"])
def test_late_panels_of_an_earlier_view_never_show_the_next_views_input(handlers, celeba, utkface, after):
    first = handlers.prepare(str(PHOTO), False, celeba.name, *controls())[0]
    if after == "another upload":
        shown = handlers.prepare(Image.new("RGB", (80, 80), (20, 90, 160)), False, celeba.name, *controls())[2]
    elif after == "the whole image":
        shown = handlers.select(first, True, celeba.name, *controls())[2]
    else:
        shown = handlers.switch(first, utkface.name, *controls())[3]
    late = handlers.update(first, celeba.name, *controls(k=8))[PANELS]  # answered after the next view's
    assert handlers.props["reference"] in shown and handlers.props["reference"] not in late
    assert late == handlers.handlers.update(first, celeba.name, *controls(k=8))[PANELS]  # its slot left empty


def test_every_reset_clears_the_model_input(served_models, celeba, utkface, tmp_path):
    raw = Handlers(served_models, outbox=tmp_path / "outbox", uploads=Uploads(tmp_path / "gradio"))
    ref = raw.prepare(str(PHOTO), False, celeba.name, *controls())[0]
    text = tmp_path / "notes.png"
    text.write_bytes(b"not an image")
    resets = [
        raw.prepare(str(text), False, celeba.name, *controls())[2],
        raw.prepare(str(PHOTO), False, "nope", *controls())[2],
        raw.select(ref, True, "nope", *controls())[2],
        raw.switch(ref, "nope", *controls())[3],
    ]
    for panels in resets:
        assert isinstance(panels, gr.HTML) and panels.props == {"view": "", "reference": ""}
        assert panels.value.startswith('<div class="panels-empty"')
