"""The Gradio layout (sae.app.ui): it builds around several models, wires the named events, and its text and CSS say
what the page needs (every model and what failed in About; two panels a row on a phone)."""

from __future__ import annotations

import inspect
import re
import typing

import gradio as gr
import pytest
from PIL import Image

from sae.app import ui
from sae.app.handlers import Handlers
from sae.app.settings import CONTROLS, NO_EXTRA
from sae.privacy.catalogue import ATTACKS, EXTRA_ATTACKS
from sae.privacy.scheme import SCHEMES
from sae.zoo import files


@pytest.fixture
def demo(served_models) -> gr.Blocks:
    return ui.build(served_models, ["hub:someone/gone: cannot load it (offline)"])


def _component(demo: gr.Blocks, elem_id: str):
    return next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == elem_id)


def _events(demo: gr.Blocks) -> dict[str, object]:
    return {fn.api_name: fn for fn in demo.fns.values() if fn.api_name}


def test_build_has_the_named_events(demo):
    events = _events(demo)
    public = {name for name, fn in events.items() if fn.api_visibility == "public"}
    assert public == {"prepare", "update", "switch", "share", "decode", "comparison"}  # nothing else on the API page
    assert {"select", "share_preview", "decode_received"} <= set(events) - public  # UI-only steps stay off the API page


def test_a_control_move_shows_no_progress_overlay_and_keeps_only_the_last(demo):
    update = _events(demo)["update"]
    assert update.show_progress == "hidden" and update.trigger_mode == "always_last"  # no overlay flicker per slider step
    assert _events(demo)["prepare"].show_progress == "full"  # an upload takes long enough to show Gradio's timer


def test_every_model_event_passes_the_controls_in_controls_order(demo):
    controls = [_component(demo, elem_id) for elem_id in ("k-slider", "owner", "scheme", "decoys", "fill-all", "ratio", "permute", "known")]
    extra = _component(demo, "extra-attack")
    assert len(controls) + 1 == len(CONTROLS)
    events = _events(demo)
    for name in ("prepare", "select", "switch", "update", "comparison", "share", "share_preview"):
        inputs = [block._id for block in events[name].inputs]
        assert inputs[-len(CONTROLS) :] == [c._id for c in [*controls, extra]], name
        assert _component(demo, "model")._id in inputs, name


def test_the_api_names_every_input(demo):
    endpoints = demo.get_api_info()["named_endpoints"]
    names = {name: [p["parameter_name"] for p in endpoint["parameters"]] for name, endpoint in endpoints.items()}
    assert names["/prepare"] == ["photo", "whole", "model_name", *CONTROLS]  # not param_0, param_1, ...
    assert names["/update"] == names["/switch"] == names["/comparison"] == ["model_name", *CONTROLS]
    assert names["/share"] == ["model_name", "passphrase", *CONTROLS]
    assert list(inspect.signature(_events(demo)["update"].fn).parameters)[:3] == ["request", "ref", "model_name"]


def test_api_signature_spells_out_the_controls_and_drops_keywords():
    def handler(ref, /, model_name="x", *controls, session=None): ...

    first = inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    signature = ui.api_signature(handler, (first,))
    assert list(signature.parameters) == ["request", "ref", "model_name", *CONTROLS]
    assert {p.kind for p in signature.parameters.values()} == {inspect.Parameter.POSITIONAL_OR_KEYWORD}
    assert all(p.default is inspect.Parameter.empty for p in signature.parameters.values())


def test_the_model_choice_and_k_start_from_the_first_model(demo, served_models):
    choice = _component(demo, "model")
    assert [value for _, value in choice.choices] == [served.name for served in served_models] and choice.value == served_models[0].name
    assert "Not served: hub:someone/gone" in choice.info
    k = _component(demo, "k-slider")
    assert k.maximum == served_models[0].model.k_max == 16 and k.value == 16  # the default k (32) capped
    assert [value for _, value in _component(demo, "scheme").choices] == list(SCHEMES)
    assert [value for _, value in _component(demo, "extra-attack").choices] == [*EXTRA_ATTACKS, NO_EXTRA]
    assert [title for title, _ in _component(demo, "extra-attack").choices][:-1] == [ATTACKS[name].title for name in EXTRA_ATTACKS]


def test_the_switch_updates_k_and_the_whole_view(demo):
    switch = _events(demo)["switch"]
    outputs = [block._id for block in switch.outputs]
    assert outputs[0] == _component(demo, "k-slider")._id and len(outputs) == 1 + 7
    prepare = _events(demo)["prepare"]
    assert [block._id for block in prepare.outputs] == outputs[1:]  # the same view as an upload


def test_build_can_be_given_its_handlers(served_models, tmp_path):
    handlers = Handlers(served_models, outbox=tmp_path / "outbox")
    demo = ui.build(served_models, handlers=handlers)
    assert _events(demo)["prepare"].fn.__wrapped__.handler == handlers.prepare and _component(demo, "model").info is None


def test_the_face_handlers_get_the_visitor_s_session():
    seen = []
    call = ui.with_session(lambda *args, session: seen.append((args, session)) or "shown")
    assert call(gr.Request(session_hash="visitor"), 1, "m") == "shown" and seen == [((1, "m"), "visitor")]
    assert list(inspect.signature(call).parameters) == ["request", *CONTROLS]  # the handler's `*args` are the controls
    assert typing.get_type_hints(call)["request"] is gr.Request  # what Gradio reads to fill `request` itself


def test_every_model_event_passes_the_gate_and_only_the_slider_skips_the_queue(demo):
    """The slider's event is not queued (sae.app.gate says why), so the queue's limit
    no longer bounds it: every event that touches a model runs through the one WorkGate instead."""
    events = _events(demo)
    gated = ("prepare", "select", "switch", "update", "comparison", "share", "share_preview", "decode_received", "decode")
    gates = {events[name].fn.gate for name in gated}
    assert len(gates) == 1 and next(iter(gates)).workers == ui.WORKERS
    assert [name for name in gated if not events[name].queue] == ["update"]
    assert all(events[name].concurrency_id == ui.CPU for name in gated if name != "update")


def test_the_page_redraws_with_its_controls_once_a_face_has_landed(served_models, tmp_path):
    """An upload, a crop toggle or a model switch draws the controls its request read; a move made meanwhile is answered
    first. Each is followed by the redraw (`Handlers.redraw`), unqueued and off the API page, reading the crop, model
    and controls anew and drawing the whole view an upload draws, through the same gate as every model event."""
    handlers = Handlers(served_models, outbox=tmp_path / "outbox")
    demo = ui.build(served_models, handlers=handlers)
    events = _events(demo)
    prepare, select = events["prepare"], events["select"]
    chained = [fn for fn in demo.fns.values() if fn.trigger_after is not None and getattr(fn.fn, "gate", None)]
    redraws = [fn for fn in chained if getattr(fn.fn.__wrapped__, "handler", None) == handlers.redraw]
    after = {demo.fns[fn.trigger_after].api_name for fn in redraws}
    assert after == {"prepare", "select", "switch"} and len(redraws) == 3
    for fn in redraws:
        assert fn.fn.__wrapped__.handler == handlers.redraw and fn.fn.gate is prepare.fn.gate
        assert not fn.queue and fn.api_visibility == "private" and fn.show_progress == "hidden" and not fn.trigger_only_on_success
        assert [block._id for block in fn.inputs] == [block._id for block in select.inputs]  # face, crop, model, controls
        assert [block._id for block in fn.outputs] == [block._id for block in prepare.outputs]


def test_a_model_switch_refreshes_the_share_tab_and_clears_what_the_previous_model_made(served_models, tmp_path):
    """The model menu sits above the tabs: a switch made on the Share or Decode tab must not leave that tab describing
    the previous model, nor its files and reconstruction standing beside the new one."""
    handlers = Handlers(served_models, outbox=tmp_path / "outbox")
    demo = ui.build(served_models, handlers=handlers)
    switch, model = _events(demo)["switch"], _component(demo, "model")
    redraw = next(fn for fn in demo.fns.values() if fn.trigger_after == switch._id)
    preview = next(fn for fn in demo.fns.values() if fn.trigger_after == redraw._id)
    tab = _events(demo)["share_preview"]  # the Share tab's own preview, on its select
    assert preview.api_name == "switch_share_preview" and preview is not tab and tab.targets[0][1] == "select"
    assert preview.fn is tab.fn and not preview.trigger_only_on_success
    assert [block.elem_id for block in preview.outputs] == ["share-face", "share-what"]
    assert [block._id for block in preview.inputs] == [block._id for block in _events(demo)["share_preview"].inputs]
    cleared = [
        fn
        for fn in demo.fns.values()
        if fn.trigger_after is None and any(target[0] == model._id and target[1] == "change" for target in fn.targets) and fn is not switch
    ]
    assert len(cleared) == 1 and not cleared[0].queue
    ids = [block.elem_id for block in cleared[0].outputs]
    assert ids == ["public-file", "key-file", "share-note", "decoded", "decode-note"] and cleared[0].fn() == (None, None, "", None, "")


def test_the_panels_are_two_a_row_on_a_phone():
    grid = re.search(r"@media \(max-width: 640px\) \{ \.panels \{ ([^}]*)\}", ui.CSS)
    assert grid is not None and "grid-template-columns: repeat(2, minmax(0, 1fr))" in grid.group(1)
    assert re.search(r"\.panels \{ display: grid; grid-template-columns: repeat\(auto-fit, minmax\(200px, 1fr\)\)", ui.CSS)
    assert "image-rendering: pixelated" in ui.CSS  # the 1x panels scale up crisply


def test_about_lists_every_model_its_data_and_what_failed(served_models, tmp_path):
    from dataclasses import replace

    (tmp_path / "README.md").write_text("---\nlicense: other\n---\n# Card\n\n| k | PSNR |\n")
    carded = replace(served_models[0], loaded=replace(served_models[0].loaded, directory=tmp_path))
    uncarded = replace(served_models[1], loaded=replace(served_models[1].loaded, directory=None))
    text = ui.about_text([carded, uncarded], ["hub:someone/gone: cannot load it (offline)", "/models/x: not a directory"])
    for served in served_models:
        assert f"## {served.name}" in text and f"**Serving:** {served.loaded.directory.name}, {served.loaded.note}." in text
        assert str(served.loaded.directory) not in text.replace(f"## {served.name}", "")  # no server path but the name given
        assert f"**Training data:** {served.data.description}. **Licence:** {served.data.licence}." in text
    assert "k from 1 to 16, 64x64 RGB faces" in text and "k from 1 to 24, 128x128 RGB faces" in text
    assert "<details><summary>Model card</summary>" in text and "| k | PSNR |" in text and "license:" not in text
    assert text.count("<details>") == 1  # only the model with a card
    assert text.startswith(ui.ABOUT_LEAD + "\n\n## ")  # what the tab holds, in plain words, before the first model
    assert text.endswith("## Not served\n\n- hub:someone/gone: cannot load it (offline)\n\n- /models/x: not a directory")
    assert "Not served" not in ui.about_text(served_models, [])
    broken = f"CelebA 64x64 (bundled): cannot load the model in {files.BUNDLED['celeba64']}: bad header"
    assert ui.about_text(served_models, [broken]).endswith(
        "- CelebA 64x64 (bundled): cannot load the model in assets/models/celeba64: bad header"
    )


def test_a_model_source_is_shown_without_the_servers_folders(tmp_path):
    from sae.app.models import shown_source

    assert shown_source(str(files.BUNDLED["utkface128"])) == "assets/models/utkface128"
    assert shown_source(str(tmp_path / "teachers-model")) == "teachers-model"
    assert shown_source("someone/faces@0123abc") == "someone/faces@0123abc"  # a Hub id as it is


def test_an_unreadable_upload_reaches_the_handler(tmp_path):
    """Gradio's own preprocessing would fail with a server path in its message; the photo box passes the path on, and
    so does a copy Gradio rebuilds from the class (what it does to a session's component after an update)."""
    from gradio.data_classes import FileData

    from sae.app.photo_input import PhotoInput

    text = tmp_path / "notes.png"
    text.write_bytes(b"not an image")
    picture = tmp_path / "face.png"
    Image.new("RGB", (20, 20), "white").save(picture)
    for box in (PhotoInput(type="filepath"), PhotoInput(**PhotoInput(type="filepath").constructor_args)):
        assert box.preprocess(FileData(path=str(text), orig_name="notes.png")) == str(text)
        assert box.preprocess(FileData(path=str(picture), orig_name="face.png")) == str(picture)
        assert box.preprocess(None) is None


def test_the_decoy_options_act_only_where_they_apply(demo):
    cases = {(True, True): False, (True, False): True, (False, False): False, (False, True): False}
    assert {case: ui.ratio_acts(*case) for case in cases} == cases  # k'/k only with decoys not at every position
    assert [update["interactive"] for update in ui.decoy_controls(False, False)] == [False, False]
    assert [update["interactive"] for update in ui.decoy_controls(True, False)] == [True, True]
    assert _component(demo, "ratio").interactive is False and _component(demo, "fill-all").interactive is True  # the defaults
    ids = {name: _component(demo, name)._id for name in ("decoys", "fill-all", "ratio")}
    (wired,) = [fn for fn in demo.fns.values() if fn.fn is ui.decoy_controls]
    assert set(wired.targets) == {(ids["decoys"], "change"), (ids["fill-all"], "change")}
    assert [block._id for block in wired.outputs] == [ids["fill-all"], ids["ratio"]] and not wired.queue


def test_the_theme_fetches_no_fonts():
    theme = ui.theme()
    assert (theme.font, theme.font_mono) == ("system-ui, sans-serif", "ui-monospace, monospace")  # no Google Fonts
