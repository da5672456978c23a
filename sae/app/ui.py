"""The Gradio layout: controls on top, the panels side by side, the chart below; Share, Decode and About tabs.

Built for a projector first (1366x768: controls and panels above the fold, the chart one scroll down) and a phone
(two panels a row). Handlers live in `sae.app.handlers`; this module only places widgets and wires events.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import gradio as gr

from sae.app import render
from sae.app.bounded_slider import BoundedSlider
from sae.app.face_cache import FACE_CACHE_SIZE
from sae.app.gate import WORKERS, WorkGate
from sae.app.handlers import EXAMPLES, START, Handlers
from sae.app.models import ServedModel, shown_source
from sae.app.outbox import OUTBOX_MAX_AGE
from sae.app.photo_input import PhotoInput
from sae.app.settings import CONTROLS, NO_EXTRA, ShareSettings
from sae.privacy.catalogue import ATTACKS, EXTRA_ATTACKS
from sae.privacy.scheme import SCHEMES, default_k
from sae.zoo import files

SCHEME_LABELS = {"keyed": "keyed", "paper": "paper"}
R = TypeVar("R")
CPU = "model"  # one concurrency group for every queued event (the slider's is not queued: sae.app.gate)

ABOUT_LEAD = (
    "Each model below turns a face into sparse codes and back; the Explore tab explains what the panels show. For each: "
    "where it was loaded from, what it was trained on and under which licence, and its model card (how it was trained, "
    "its measured quality against simpler codes, and what attacks recover without the key)."
)
EXPLANATION = """
### What am I looking at?
The photo is cropped to a face (the **model input**) and encoded into groups of numbers; only the **k** largest of each
group are kept, and that sparse code is all it takes to rebuild the face. To share it, the owner publishes a **public
code** (the true numbers hidden among **decoys**, each group shuffled by a secret **permutation**) and hands out a small
**key** that says which numbers are true. In the **keyed** scheme every stored number is also padded with a stream
cipher, so without the key the public code is random bytes; in the **paper** scheme (as in the 2020 paper), the
numbers are in the clear.

- **Key holder**: what someone with the key (or the part of it the owner grants) rebuilds.
- **No key, decoded as is**: the public code decoded with its decoys.
- **Guess**: an attacker who keeps the true numbers they know (the "Attacker knows" share; never the permutation or
  the cipher's secret), the rest of k public numbers at random.
- **Extra attack**: cleverer guesses: magnitudes, re-encoding, a network or a linear map trained on other faces.
- **Linkage**: with the numbers in the clear, whoever has the photo finds its numbers in the public code.
"""
CSS = """
#heading h2 { margin-top: 0; margin-bottom: 4px; }
#heading p { margin: 0; }
@media (max-width: 640px) { #heading { min-width: 100% !important; } .row:has(> #heading) { flex-wrap: wrap; } }
#model input, #extra-attack input { padding-right: 24px; text-overflow: ellipsis; }
.panels { display: grid; grid-template-columns: repeat(auto-fit, minmax(200px, 1fr)); gap: 10px; }
@media (max-width: 640px) { .panels { grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 6px; } }
.panel { margin: 0; min-width: 0; }
.panel img, .panel .empty { width: 100%; aspect-ratio: 1; display: block; border-radius: 6px; image-rendering: pixelated;
  background: var(--block-background-fill); }
.panel .title { font-weight: 600; font-size: 0.95rem; line-height: 1.25; margin-bottom: 4px; min-height: 2.5em; }
.panel .caption { font-size: 0.9rem; margin-top: 4px; font-variant-numeric: tabular-nums; }
.panel.hidden .empty { border: 1px dashed var(--border-color-primary); }
.panels-empty { padding: 2rem; text-align: center; border: 1px dashed var(--border-color-primary); border-radius: 8px; }
.failure { color: var(--error-text-color, #c62828); font-weight: 600; }
.dark .failure { color: #ff8a80; }  /* the dark theme's error colour is near-white */
.explain { font-size: 0.85rem; opacity: 0.8; margin: 6px 0 0; }
.chart-svg { width: 100%; height: auto; max-height: 320px; color: var(--body-text-color); font-size: 12px; }
.chart-svg.narrow { display: none; font-size: 14px; max-height: none; max-width: 360px; margin: 0 auto; }
@media (max-width: 800px) { .chart-svg.wide { display: none; } .chart-svg.narrow { display: block; } }
.chart-svg text { fill: currentColor; }
.chart-svg .grid { stroke: currentColor; opacity: 0.15; }
.chart-svg .marker { stroke: currentColor; stroke-dasharray: 2 3; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 16px; font-size: 0.9rem; margin-top: 4px; }
.legend .swatch { display: inline-block; width: 18px; height: 0; border-top: 3px solid var(--swatch); margin-right: 6px;
  vertical-align: middle; }
.legend .swatch.dashed { border-top-style: dashed; }
.legend .swatch.level { border-top-style: dotted; }
.legend .swatch.dot { width: 10px; height: 10px; border: 0; border-radius: 50%; background: var(--swatch); }
#photo img.no-preview { visibility: hidden; }
#photo .image-frame:has(img.no-preview) { position: relative; }
#photo .image-frame:has(img.no-preview)::after { content: "No preview"; position: absolute; inset: 0; display: flex;
  align-items: center; justify-content: center; white-space: nowrap; color: var(--body-text-color-subdued); }
"""
# Run once when the page loads (`demo.launch(js=...)`): two listeners on the document, each a named function.
# `clampOnEnter`: Enter in a number box with a range puts a value outside it at the nearest end (an emptied or
# unreadable value at its minimum) in the box itself. Gradio has sent the typed value already and the server clamps it
# the same way (`sae.app.bounded_slider`): this only keeps the box from showing a number the view does not.
# `markUnpreviewable`: a photo the browser cannot draw (a text file, or a TIFF the server reads but browsers do not)
# shows "No preview" instead of a broken-image icon; the face note says whether the server could read it.
PAGE_JS = """() => {
  function clampOnEnter(event) {
    const box = event.target;
    if (event.key !== "Enter" || !(box instanceof HTMLInputElement) || box.type !== "number" || !box.min || !box.max) return;
    const low = Number(box.min), high = Number(box.max);
    const value = box.value === "" ? low : Number(box.value);
    const clamped = Number.isFinite(value) ? Math.min(Math.max(value, low), high) : low;
    if (box.value === "" || clamped !== Number(box.value)) {
      box.value = String(clamped);
      box.dispatchEvent(new Event("input", { bubbles: true }));
    }
  }
  function markUnpreviewable(event) {
    const image = event.target;
    if (image instanceof HTMLImageElement && image.closest("#photo")) image.classList.toggle("no-preview", event.type === "error");
  }
  document.addEventListener("keydown", clampOnEnter, true);
  document.addEventListener("error", markUnpreviewable, true);
  document.addEventListener("load", markUnpreviewable, true);
}"""

DOWNLOAD_JS = """(file) => {
  if (file && file.url) {
    const link = document.createElement("a");
    link.href = file.url; link.download = file.orig_name || "comparison.png";
    document.body.appendChild(link); link.click(); link.remove();
  }
}"""


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts (the default theme fetches Google Fonts, an outbound request offline) and
    the controls' explanations dark enough to read on a projector."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]).set(
        block_info_text_color="*neutral_600",
        block_info_text_color_dark="*neutral_300",  # the default is too faint for a projector
    )


def about_text(models: list[ServedModel], failures: list[str]) -> str:
    """Each served model: where it came from, its size, its training data and licence, and its model card; first, in
    two plain sentences, what the page holds."""
    parts = [ABOUT_LEAD]
    for served in models:
        model = served.model
        parameters = sum(p.numel() for p in model.parameters()) / 1e6
        parts += [
            f"## {served.name}",
            f"**Serving:** {shown_source(served.loaded.source)}, {served.loaded.note}. **Parameters:** {parameters:.2f}M; "
            f"{model.num_groups} groups of "
            f"{model.code_dim} entries, k from 1 to {model.k_max}, {model.image_size}x{model.image_size} RGB faces.",
            f"**Training data:** {served.data.description}. **Licence:** {served.data.licence}.",
        ]
        card = _card(served.loaded.directory)
        if card:
            parts += [f"<details><summary>Model card</summary>\n\n{card}\n\n</details>"]
    if failures:
        inside = f"{files.ASSETS.parent}/"  # a bundled model's folder, as `shown_source` shows it; the console keeps it whole
        parts += ["## Not served", *[f"- {line.replace(inside, '')}" for line in failures]]
    return "\n\n".join(parts)


def _card(directory: Path | None) -> str:
    path = None if directory is None else Path(directory) / files.CARD
    if path is None or not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    return text.split("---", 2)[2].strip() if text.startswith("---") and text.count("---") >= 2 else text


def _extra_choices() -> list[tuple[str, str]]:
    return [(ATTACKS[name].title, name) for name in EXTRA_ATTACKS] + [("None", NO_EXTRA)]


def api_signature(handler: Callable[..., object], leading: tuple[inspect.Parameter, ...] = ()) -> inspect.Signature:
    """`handler`'s inputs as the API page and clients name them: its positional parameters with `*controls` spelled out
    as `CONTROLS` (Gradio names a `*args` input param_0, param_1, ...), after `leading` (what Gradio fills in itself).

    Every input becomes positional-or-keyword without a default (a default before the spelled-out controls, or a
    positional-only input after `leading`, would not be a valid signature); keyword-only ones (`session`) are not inputs.
    """
    named = list(leading)
    for parameter in inspect.signature(handler).parameters.values():
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            named += [inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD) for name in CONTROLS]
        elif parameter.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            named.append(parameter.replace(kind=inspect.Parameter.POSITIONAL_OR_KEYWORD, default=inspect.Parameter.empty))
    return inspect.Signature(named)


def with_named_controls(fn: Callable[..., R]) -> Callable[..., R]:
    """`fn` (a handler, or a `functools.wraps` wrapper of one, whose signature is the handler's) with its inputs named
    (`api_signature`)."""
    fn.__signature__ = api_signature(fn)  # type: ignore[attr-defined]
    return fn


def ratio_acts(decoys: bool, fill_all: bool) -> bool:
    """k'/k sets the public numbers per true one only with decoys that do not fill every position."""
    return bool(decoys) and not fill_all


def decoy_controls(decoys: bool, fill_all: bool) -> tuple[dict, dict]:
    """The decoy options usable only where they act: "every position" with decoys, k'/k with `ratio_acts`."""
    return gr.update(interactive=bool(decoys)), gr.update(interactive=ratio_acts(decoys, fill_all))


def with_session(handler: Callable[..., R]) -> Callable[..., R]:
    """`handler` called with the visitor's session id as `session=`, so a control change draws the face the session
    loaded last (`sae.app.sessions`); the API names its inputs as `handler` does (`api_signature`).

    Gradio fills `request` by the annotation of `call`'s own parameter of that name (`typing.get_type_hints`, which a
    `__signature__` does not change), so the signature keeps that very parameter first. A `functools.wraps` wrapper
    around the result (`WorkGate`) shows the same signature."""

    def call(request: gr.Request, *args: object) -> R:
        return handler(*args, session=request.session_hash)

    call.__name__ = handler.__name__
    own = next(iter(inspect.signature(call).parameters.values()))
    call.__signature__ = api_signature(handler, (own,))  # type: ignore[attr-defined]
    call.handler = handler  # type: ignore[attr-defined]  # what it calls (the layout's tests read it)
    return call


def build(
    models: list[ServedModel],
    failures: list[str] | None = None,
    face_cache: int = FACE_CACHE_SIZE,
    handlers: Handlers | None = None,
    workers: int = WORKERS,
) -> gr.Blocks:
    """The Blocks layout (`handlers` may be passed in by a caller that inspects them while serving); at most `workers`
    handlers that touch a model run at once."""
    failures = failures or []
    handlers = handlers or Handlers(models, cache_size=face_cache)
    gate = WorkGate(workers)
    per_session = (handlers.prepare, handlers.select, handlers.switch, handlers.update, handlers.redraw)  # its latest face
    prepare, select, switch, update, redraw_view = (gate(with_session(method)) for method in per_session)
    with_controls = (handlers.comparison, handlers.share_preview, handlers.make_share)
    comparison, share_preview, make_share = (with_named_controls(gate(method)) for method in with_controls)
    first = models[0]
    defaults = ShareSettings(k=default_k(first.model.k_max))
    every_position = defaults.k_prime_ratio is None  # the shipped decoys fill every position of a group
    queued, private = dict(concurrency_id=CPU), dict(concurrency_id=CPU, api_visibility="private")
    with gr.Blocks(title="Sparse codes for faces", analytics_enabled=False, delete_cache=(60, int(OUTBOX_MAX_AGE))) as demo:
        with gr.Row(equal_height=True):
            gr.Markdown(
                "## Sparse codes for faces\nHow much of a face survives when only *k* numbers per group are kept, and what "
                "does someone without the key see?",
                elem_id="heading",
            )
            model_choice = gr.Dropdown(
                [served.name for served in models],
                value=first.name,
                label="Model",
                scale=0,
                min_width=300,
                elem_id="model",
                info=("Not served: " + "; ".join(failures)) if failures else None,
            )
        face_state = gr.State(None)
        public_data, key_data = gr.State(None, time_to_live=OUTBOX_MAX_AGE), gr.State(None, time_to_live=OUTBOX_MAX_AGE)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1, min_width=230):
                    photo = PhotoInput(
                        label="Photo",
                        type="filepath",
                        sources=["upload", "webcam", "clipboard"],
                        image_mode=None,
                        height=150,
                        buttons=["fullscreen"],
                        elem_id="photo",
                    )
                    whole = gr.Checkbox(False, label="Use the whole image (no face detection)", elem_id="whole")
                    face_note = gr.Markdown(START, elem_id="face-note")
                with gr.Column(scale=3):
                    with gr.Row():
                        k = BoundedSlider(
                            1,
                            first.model.k_max,
                            value=defaults.k,
                            step=1,
                            label="k: non-zeros per group",
                            info="fewer: a blurrier face and a smaller code",
                            elem_id="k-slider",
                        )
                        owner = BoundedSlider(
                            0.05,
                            1.0,
                            value=1.0,
                            step=0.05,
                            label="Owner's key fraction",
                            info="the part of the true numbers the key unlocks",
                            elem_id="owner",
                        )
                        known = BoundedSlider(
                            0.0,
                            1.0,
                            value=defaults.known_fraction,
                            step=0.05,
                            label="Attacker knows",
                            info="the part of the true entries the guesser knows",
                            elem_id="known",
                        )
                    with gr.Row():
                        scheme = gr.Radio(
                            [(SCHEME_LABELS[name], name) for name in SCHEMES],
                            value=defaults.scheme,
                            label="Scheme",
                            info="keyed: cipher-padded; paper: in the clear",
                            elem_id="scheme",
                        )
                        with gr.Column(min_width=200):
                            decoys = gr.Checkbox(defaults.decoys, label="Decoys", elem_id="decoys")
                            fill_all = gr.Checkbox(
                                every_position, label="Decoys at every position", elem_id="fill-all", interactive=defaults.decoys
                            )
                            permute = gr.Checkbox(defaults.permute, label="Secret permutation", elem_id="permute")
                        ratio = BoundedSlider(
                            1.0,
                            8.0,
                            value=2.0,
                            step=0.5,
                            label="k'/k",
                            elem_id="ratio",
                            info="public numbers per true one",
                            interactive=ratio_acts(defaults.decoys, every_position),
                        )
                        extra = gr.Dropdown(_extra_choices(), value=defaults.extra_attack, label="Extra attack", elem_id="extra-attack")
            start = handlers.explore(None, first, defaults)
            panels = gr.HTML(start.panels, html_template=render.PANELS_TEMPLATE, view="", reference="", elem_id="panels-block")
            linkage = gr.Markdown(elem_id="linkage")
            budget = gr.Markdown(start.budget, elem_id="budget")
            chart = gr.HTML(elem_id="chart-block")
            with gr.Row():
                compare = gr.Button("Download the comparison (PNG)", elem_id="compare-button", scale=0, min_width=320, size="sm")
                compare_file = gr.File(visible=False, elem_id="compare-file")
            with gr.Accordion("The numbers: PSNR and SSIM at sampled k (every k to 8, then four per doubling)", open=False):
                table = gr.Dataframe(headers=["k", "PSNR (dB)", "SSIM"], interactive=False)
            examples = sorted(str(p) for p in EXAMPLES.glob("*.png"))
            if examples:
                gr.Examples(examples=examples, inputs=photo)
            gr.Markdown(EXPLANATION)
        with gr.Tab("Share") as share_tab:
            with gr.Row():
                share_face = gr.Image(label="The face that will be shared", interactive=False, height=200, elem_id="share-face", buttons=[])
                with gr.Column(scale=2):
                    share_what = gr.Markdown(elem_id="share-what")
                    passphrase = gr.Textbox(label="Passphrase for the key (optional)", type="password")
                    share_button = gr.Button("Make public code and key", variant="primary", elem_id="share-button")
            with gr.Row():
                public_out = gr.File(label="Public code (.saep)", elem_id="public-file")
                key_out = gr.File(label="Key (.saek)", elem_id="key-file")
            share_note = gr.Markdown(elem_id="share-note")
        with gr.Tab("Decode"):
            gr.Markdown(
                "Upload a public code and its key (and the passphrase if the key has one). Each file is read into this "
                "session and deleted from the server at once, so the upload box empties again."
            )
            with gr.Row():  # the inputs beside the result: on a projector the reconstruction shows without scrolling
                with gr.Column(scale=3):
                    with gr.Row():
                        with gr.Column(min_width=200):
                            public_in = gr.File(label="Public code", file_types=[".saep"], type="filepath", elem_id="public-in")
                            public_note = gr.Markdown(elem_id="public-note")
                        with gr.Column(min_width=200):
                            key_in = gr.File(label="Key", file_types=[".saek"], type="filepath", elem_id="key-in")
                            key_note = gr.Markdown(elem_id="key-note")
                    decode_pass = gr.Textbox(label="Passphrase (if any)", type="password")
                    fraction = BoundedSlider(0.05, 1.0, value=1.0, step=0.05, label="Fraction of the key to use")
                    decode_button = gr.Button("Decode", variant="primary", elem_id="decode-button")
                    decode_files = gr.Button(visible=False)  # the API's /decode: both files in one call
                with gr.Column(scale=2, min_width=280):
                    decoded = gr.Image(label="Key holder's reconstruction", format="png", interactive=False, height=256, elem_id="decoded")
                    decode_note = gr.Markdown(elem_id="decode-note")
        with gr.Tab("About"):
            gr.Markdown(about_text(models, failures))

        controls = [k, owner, scheme, decoys, fill_all, ratio, permute, known, extra]
        view = [face_state, face_note, panels, chart, linkage, budget, table]
        # A control change redraws the panels (no loading overlay on every step), outside the queue, whose per-event
        # machinery weighs on every move (sae.app.gate bounds the work instead).
        moved = [panels, chart, linkage, budget]
        update_event = dict(fn=update, inputs=[face_state, model_choice, *controls], outputs=moved, show_progress="hidden", queue=False)
        # A face handler draws the controls its request read, and a move made meanwhile is answered first (with the
        # previous face): once the face has landed, the page redraws the session's latest face with what it shows,
        # whatever order answers came in.
        redraw = dict(
            fn=redraw_view,
            inputs=[face_state, whole, model_choice, *controls],
            outputs=view,
            show_progress="hidden",
            queue=False,
            api_name="redraw",
            api_visibility="private",
        )
        photo.change(prepare, [photo, whole, model_choice, *controls], view, api_name="prepare", trigger_mode="always_last", **queued).then(
            **redraw
        )
        whole.change(select, [face_state, whole, model_choice, *controls], view, api_name="select", **private).then(**redraw)
        model_choice.change(switch, [face_state, model_choice, *controls], [k, *view], api_name="switch", **queued).then(**redraw).then(
            share_preview, [face_state, model_choice, *controls], [share_face, share_what], api_name="switch_share_preview", **private
        )
        moves = [k.input, k.release, owner.input, owner.release, known.input, known.release, ratio.input, ratio.release]
        changes = [scheme.change, decoys.change, fill_all.change, permute.change, extra.change]
        gr.on([*moves, *changes], **update_event, trigger_mode="always_last", api_name="update")
        instant = dict(queue=False, show_progress="hidden", api_visibility="private")  # UI-only steps, at once
        # Another model: files shared or decoded with the previous one go (the Share tab's preview follows above).
        model_choice.change(lambda: (None, None, "", None, ""), None, [public_out, key_out, share_note, decoded, decode_note], **instant)
        gr.on([decoys.change, fill_all.change], decoy_controls, [decoys, fill_all], [fill_all, ratio], **instant)
        compare.click(comparison, [face_state, model_choice, *controls], compare_file, api_name="comparison", **queued).then(
            None, compare_file, None, js=DOWNLOAD_JS
        )
        share_tab.select(share_preview, [face_state, model_choice, *controls], [share_face, share_what], **private)
        # Files made for an earlier face or settings never stand beside this one. Outside the queue, so that it runs
        # at once, before a share made meanwhile could land.
        share_tab.select(lambda: (None, None, ""), None, [public_out, key_out, share_note], **instant)
        share_button.click(
            make_share, [face_state, model_choice, passphrase, *controls], [public_out, key_out, share_note], api_name="share", **queued
        )
        public_in.upload(lambda path: handlers.receive(path, "public code"), public_in, [public_data, public_in, public_note], **private)
        key_in.upload(lambda path: handlers.receive(path, "key"), key_in, [key_data, key_in, key_note], **private)
        gr.on(
            [public_in.upload, key_in.upload], lambda: (None, ""), None, [decoded, decode_note], **instant
        )  # a new file: the last reconstruction goes
        decode_button.click(
            gate(handlers.decode_received), [public_data, key_data, model_choice, decode_pass, fraction], [decoded, decode_note], **private
        )
        decode_files.click(
            gate(handlers.decode),
            [public_in, key_in, model_choice, decode_pass, fraction],
            [decoded, decode_note],
            api_name="decode",
            **queued,
        )
    return demo
