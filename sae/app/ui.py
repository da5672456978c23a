"""The Gradio app: upload a face, move k, see the key holder's view, the decoys and the attacks with live PSNR/SSIM.

Handlers are thin: they call `sae.app.face_cache`, `sae.app.pipeline` and `sae.privacy.scheme` and format the results. Each upload is
detected, cropped and encoded once into the bounded per-image cache (`sae.app.face_cache.FaceStore`); a session's
`gr.State` holds only a reference to it, so moving a control never re-encodes and memory does not grow with visitors.
Uploaded files are deleted as soon as they are read (`sae.app.uploads`); share downloads live briefly in `sae.app.outbox`.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image as PILImage

from sae.app.face_cache import FACE_CACHE_SIZE, GONE, FaceRef, FaceStore, View
from sae.app.outbox import OUTBOX_MAX_AGE, Outbox
from sae.app.pipeline import (
    ATTACKS,
    LEARNED,
    REGRESSION,
    Panel,
    QualityCurve,
    ShareSettings,
    decode_shared,
    privacy_panels,
    quality_curve,
    regression_mismatch,
    share,
)
from sae.app.uploads import Uploads
from sae.core.faces import PhotoError
from sae.core.rate import code_bytes
from sae.privacy import scheme as privacy
from sae.zoo import shipped as bundled_attack
from sae.zoo.hub import LoadedModel

EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
DISPLAY_SIZE = 256
MAX_CODE_FILE = 8_000_000  # bytes; public codes and keys of one face are a few kB
PANELS = 4  # key holder, decoys, permutation attack, extra attack
CPU = "model"  # one concurrency group for every event: the queue's limit then bounds all model work together

EXPLANATION = """
### What am I looking at?
The photo is cropped to a 64x64 face (left) and encoded into **groups** of numbers. Only the **k** largest
numbers of each group are kept: that sparse code is all that is needed to rebuild the face. Fewer
non-zeros, blurrier face.

To share the face privately, the owner hides the true numbers among **decoys** (made-up numbers that look
like real ones) and, optionally, shuffles each group with a secret **permutation**. The public code goes
to everyone; the small **key** says which numbers are true.

- **Key holder**: what someone with the key rebuilds (the owner can hand out a key to only part of the code).
- **No key (decoys)**: decoding the public code as it is.
- **Permutation attack**: an attacker who knows part of the key (default half) and guesses the rest.
- **Magnitude / re-encode attack**: cleverer guesses from the sizes of the numbers, or from re-encoding.
- **Learned attack** (when the app ships its fitted scorer): a small network trained on other faces' public codes
  guesses which numbers are true and keeps the likeliest k, or weighs every number by its guess (soft).
- **Regression attack** (when the app ships it; at the default settings only): a linear map, fitted on other faces,
  from the public code straight to pixels, with no key and no decoder.

Under each image: **PSNR** in dB (higher is closer; 30 dB is hard to tell apart, below 12 dB is noise) and
**SSIM** (1 is identical, 0 is unrelated). Both compare with the model input.
"""


def to_display(image: torch.Tensor) -> np.ndarray:
    """(1, 3, 64, 64) or (3, 64, 64) in [0, 1] -> uint8 HxWx3, upscaled with nearest neighbours (crisp pixels)."""
    image = image.reshape(3, *image.shape[-2:])
    factor = max(1, DISPLAY_SIZE // image.shape[-1])
    big = image.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    return (big.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def caption(psnr_db: float, ssim_value: float, name: str | None = None) -> str:
    shown = "identical" if np.isinf(psnr_db) else f"{psnr_db:.2f} dB"
    text = f"PSNR {shown} · SSIM {ssim_value:.3f}"
    return f"**{name}**: {text}" if name else text


def budget_text(model, k: int, k_prime: int | None = None, value_bits: int = 16, permuted: bool = True) -> str:
    nonzeros = k * model.num_groups
    size = code_bytes(model.num_groups, model.code_dim, k, value_bits)
    text = f"{k} per group × {model.num_groups} groups = **{nonzeros} non-zeros**, about {size} bytes"
    if k_prime is not None:
        public = privacy.public_nbytes(1, model.num_groups, model.code_dim, k_prime, value_bits)
        key = privacy.key_nbytes(1, model.num_groups, k, k_prime, permuted=permuted)
        text += f"; shared with k' = {k_prime} per group: public code {public} bytes, key about {key} bytes"
    return text


def curve_figure(curve: QualityCurve, k: int, levels: dict[str, float] | None = None) -> go.Figure:
    """PSNR and SSIM vs k, current k marked, the attacks' PSNRs at this k as horizontal reference lines."""
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=curve.ks, y=curve.psnr, name="PSNR (dB)", mode="lines"))
    figure.add_trace(go.Scatter(x=curve.ks, y=curve.ssim, name="SSIM", mode="lines", yaxis="y2"))
    figure.add_vline(x=k, line_dash="dot", annotation_text=f"k={k}")
    for name, level in (levels or {}).items():
        if np.isfinite(level):
            figure.add_hline(y=level, line_dash="dash", line_color="firebrick", annotation_text=name, annotation_position="bottom right")
    figure.update_layout(
        xaxis_title="k (non-zeros per group)",
        yaxis=dict(title="PSNR (dB)"),
        yaxis2=dict(title="SSIM", overlaying="y", side="right", range=[0, 1]),
        height=340,
        margin=dict(l=40, r=40, t=30, b=40),
        legend=dict(orientation="h"),
    )
    return figure


def curve_table(curve: QualityCurve) -> list[list[float]]:
    return [[int(k), round(float(p), 2), round(float(s), 4)] for k, p, s in zip(curve.ks, curve.psnr, curve.ssim, strict=True)]


def settings_from(k, owner_fraction, decoys, ratio, fill_all, permute, known, extra) -> ShareSettings:
    """The controls' values -> ShareSettings (the one place that maps widgets to science)."""
    if extra not in ATTACKS:
        raise gr.Error(f"unknown attack {extra!r}; choose one of {', '.join(ATTACKS)}")
    return ShareSettings(
        k=int(k),
        owner_fraction=float(owner_fraction),
        decoys=bool(decoys),
        k_prime_ratio=None if fill_all else float(ratio),
        permute=bool(permute),
        known_fraction=float(known),
        extra_attack=extra,
    )


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "face"


@dataclass(frozen=True)
class FaceCurve:
    """What the session's curve state holds: the quality curve and the face (upload and crop) it was computed for."""

    ref: FaceRef
    curve: QualityCurve


def _photo_error(error: PhotoError) -> gr.Error:
    return gr.Error(str(error))


class Handlers:
    """The app's event handlers, bound to one loaded model (testable without a browser)."""

    def __init__(
        self,
        loaded: LoadedModel,
        outbox: Path | None = None,
        *,
        uploads: Uploads | None = None,
        cache_size: int = FACE_CACHE_SIZE,
    ):
        self.loaded = loaded
        self.model = loaded.model
        self.outbox = Outbox(outbox, OUTBOX_MAX_AGE)
        self.uploads = uploads or Uploads(keep=sorted(EXAMPLES.glob("*.png")))
        self.faces = FaceStore(self.model, self.uploads, cache_size)
        self.scorers, self.scorer_note = bundled_attack.load(loaded.directory, self.model)
        self.regression, self.regression_note = bundled_attack.load_regression(loaded.directory, self.model)
        self.attacks = [
            name
            for name in ATTACKS
            if (self.scorers is not None or name not in LEARNED) and (self.regression is not None or name != REGRESSION)
        ]

    def attack_note(self) -> str | None:
        """Why an attack is not offered (or where it is shown), for the extra-attack control; None when all are there."""
        notes = []
        if self.scorers is None:
            notes.append(f"Learned attack not offered: {self.scorer_note}.")
        if self.regression is None:
            notes.append(f"Regression attack not offered: {self.regression_note}.")
        else:
            fitted = self.regression
            notes.append(f"Regression attack: shown at k = {fitted.k}, k' = {fitted.k_prime}, the default scheme, only.")
        return " ".join(notes) or None

    @staticmethod
    def _code_file(path: str | Path | None, data: bytes | None, what: str) -> bytes:
        """The bytes of an uploaded public code or key, or a clear message why there are none."""
        if path is None:
            raise gr.Error(f"Upload the {what} file.")
        if data is None:
            raise gr.Error(GONE)
        if len(data) > MAX_CODE_FILE:
            raise gr.Error(f"the {what} file is too large to be one of ours")
        return data

    def _view(self, ref: FaceRef) -> View:
        try:
            return self.faces.view(ref)
        except PhotoError as error:
            raise _photo_error(error) from None

    def _show(self, ref: FaceRef) -> tuple[FaceRef, np.ndarray, str]:
        view = self._view(ref)
        return ref, to_display(view.face.image), view.message

    # -- events -----------------------------------------------------------------------------------------------

    def prepare(self, photo, whole_image: bool = False) -> tuple[FaceRef | None, np.ndarray | None, str]:
        """Upload -> (the session's reference to the cached codes, the 64x64 model input shown large, what the face finder did).

        A cleared photo (None) clears the panels quietly rather than raising an error toast.
        """
        if photo is None:
            return None, None, "Upload a photo, use the webcam, or pick an example."
        try:
            key = self.faces.add(photo)
        except PhotoError as error:
            raise _photo_error(error) from error
        return self._show(FaceRef(key, bool(whole_image)))

    def select(self, ref: FaceRef | None, whole_image: bool) -> tuple[FaceRef | None, np.ndarray | None, str]:
        """The whole-image toggle: switch to the other cached crop of the same upload (the file itself is gone)."""
        if ref is None:
            return None, None, "Upload a photo, use the webcam, or pick an example."
        return self._show(FaceRef(ref.key, bool(whole_image)))

    def update(self, ref: FaceRef | None, curve: FaceCurve | None, k, owner_fraction, decoys, ratio, fill_all, permute, known, extra):
        """One interaction: the four privacy panels (one batched decode), their captions, the budget and the chart.

        Returns (4 images, 4 captions, budget, chart, curve state, curve table). The curve state is left as it is
        (`gr.skip()`) unless it belongs to another face: two quick uploads can finish their curve steps out of order,
        so a curve for an earlier photo is replaced by this face's, chart and table together. The table is sent every
        time, never skipped: in Gradio 6.31 a skipped component output is rebuilt as a new component in the session's
        config, and the next value sent to it files that copy under a new id, so every upload after a skip left one
        more table in the session for as long as it lived (found under `python -m benchmarks.load`).
        """
        settings = settings_from(k, owner_fraction, decoys, ratio, fill_all, permute, known, extra)
        if settings.extra_attack not in self.attacks:
            note = self.regression_note if settings.extra_attack == REGRESSION else self.scorer_note
            raise gr.Error(f"the {settings.extra_attack} attack is not available: {note}")
        hidden = ""  # why the chosen extra attack is not shown at these settings
        if settings.extra_attack == REGRESSION:
            hidden = regression_mismatch(self.model, settings, self.regression)
            settings = replace(settings, extra_attack="none") if hidden else settings
        budget = budget_text(self.model, settings.k, settings.k_prime(self.model.code_dim), settings.value_bits, settings.permute)
        if ref is None:
            return (*[None] * PANELS, *[""] * PANELS, budget, None, None, [])
        face = self._view(ref).face
        panels = privacy_panels(self.model, face, settings, self.scorers, self.regression)
        padded: list[Panel | None] = [*panels, *[None] * (PANELS - len(panels))]
        images = [None if p is None else to_display(p.image) for p in padded]
        captions = ["" if p is None else caption(p.psnr, p.ssim, p.name) for p in padded]
        if hidden:
            captions[-1] = f"**regression attack**: not shown: {hidden}"
        levels = {p.name: p.psnr for p in panels[1:]}
        state = gr.skip()
        if curve is not None and curve.ref != ref:  # a late curve step of an earlier upload (or crop)
            curve = FaceCurve(ref, quality_curve(self.model, face))
            state = curve
        figure = None if curve is None else curve_figure(curve.curve, settings.k, levels)
        table = [] if curve is None else curve_table(curve.curve)
        return (*images, *captions, budget, figure, state, table)

    def curve(self, ref: FaceRef | None, k) -> tuple[FaceCurve | None, go.Figure | None, list[list[float]]]:
        """The whole k-curve for this face (one batched decode), computed once per upload and crop."""
        if ref is None:
            return None, None, []
        curve = quality_curve(self.model, self._view(ref).face)
        return FaceCurve(ref, curve), curve_figure(curve, int(k)), curve_table(curve)

    def share(self, ref: FaceRef | None, k, owner_fraction, decoys, ratio, fill_all, permute, passphrase: str = ""):
        """Make a real share (OS entropy, fresh secret): the public code and the key as downloadable files."""
        if ref is None:
            raise gr.Error("Upload a face first (Explore tab).")
        face = self._view(ref).face
        settings = replace(settings_from(k, owner_fraction, decoys, ratio, fill_all, permute, 0.0, "none"), seed=secrets.randbits(63))
        generator = torch.Generator().manual_seed(settings.seed)
        public, key = share(self.model, face, settings, generator, secret=secrets.token_bytes(privacy.SECRET_BYTES))
        if settings.owner_fraction < 1.0:
            key = key.restrict(public, settings.owner_fraction)
        stem = _safe_stem(f"face-k{settings.k}")
        public_path, key_path = self.outbox.write({f"{stem}.saep": public.to_bytes(), f"{stem}.saek": key.to_bytes(passphrase or None)})
        note = (
            f"Public code: {public_path.stat().st_size} bytes (k' = {public.k_prime} per group, "
            f"{'permuted' if public.permuted else 'not permuted'}). Key: {key_path.stat().st_size} bytes, reveals {key.k} per group"
            f"{', passphrase-protected' if passphrase else ''}. Keep the key private; the public code can go anywhere."
        )
        return str(public_path), str(key_path), note

    def receive(self, path: str | None, what: str) -> tuple[bytes, None, str]:
        """Decode tab: read an uploaded code or key into the session (the file is deleted) and clear the upload box."""
        data = self._code_file(path, None if path is None else self.uploads.take(path), what)
        name = Path(path).name
        return data, None, f"{what.capitalize()} received: {name}, {len(data)} bytes (the uploaded file is already deleted)."

    def decode(self, public_file: str | None, key_file: str | None, passphrase: str = "", fraction: float = 1.0):
        """A public code and key uploaded as files (the API's /decode) -> the key holder's image; the files are deleted."""
        taken = [None if path is None else self.uploads.take(path) for path in (public_file, key_file)]  # both deleted, whatever follows
        public_data = self._code_file(public_file, taken[0], "public code")
        return self.decode_received(public_data, self._code_file(key_file, taken[1], "key"), passphrase, fraction)

    def decode_received(self, public_data: bytes | None, key_data: bytes | None, passphrase: str = "", fraction: float = 1.0):
        """A received public code and key -> the key holder's image; a wrong key or damaged file is a clear message."""
        if public_data is None or key_data is None:
            raise gr.Error(f"Upload the {'public code' if public_data is None else 'key'} file.")
        try:
            public = privacy.PublicCode.from_bytes(public_data)
            key = privacy.Key.from_bytes(key_data, passphrase or None)
            image = decode_shared(self.model, public, key, float(fraction))
        except privacy.CodeFormatError as error:
            raise gr.Error(f"Damaged or unknown file: {error}") from error
        except privacy.KeyMismatchError as error:
            raise gr.Error(f"Wrong key: {error}") from error
        except privacy.PassphraseError as error:
            raise gr.Error(f"Passphrase: {error}") from error
        kept = privacy.kept_count(key.k, float(fraction))
        return to_display(image), f"Decoded with {kept} of {key.k} true entries per group ({public.num_groups} groups)."


def about_text(loaded: LoadedModel) -> str:
    """Model source, parameters, and the model card's training and evaluation sections when there is one."""
    model = loaded.model
    parameters = sum(p.numel() for p in model.parameters())
    lines = [
        f"**Model serving:** {loaded.source}, {loaded.note}.",
        f"**Parameters:** {parameters / 1e6:.2f}M; {model.num_groups} groups of {model.code_dim} entries, k from 1 to {model.k_max}, "
        f"{model.image_size}x{model.image_size} RGB faces.",
        "**Training data:** CelebA aligned faces (research use only), ids 1-8000; the test set 9001-10000 was never trained on.",
    ]
    card = _card(loaded)
    if card:
        lines += ["", "---", "", card]
    return "\n\n".join(lines)


def _card(loaded: LoadedModel) -> str:
    directory = loaded.directory
    path = None if directory is None else Path(directory) / "README.md"
    if path is None or not path.is_file():
        return ""
    text = path.read_text(encoding="utf-8")
    return text.split("---", 2)[2].strip() if text.startswith("---") and text.count("---") >= 2 else text


def guard_uploads(image: gr.Image) -> gr.Image:
    """Make an unreadable upload reach the user as our message instead of a processing error.

    Gradio opens every uploaded image (the header only, with type="filepath") before the handler runs, so a text
    file renamed .png fails there with "Could not preprocess input component ...". gr.Error passes through
    untouched. The instance is wrapped rather than subclassed: subclassing a component makes Gradio write a .pyi
    file next to this module at import time.

    A file that is already gone was an identical upload that another request read and deleted first: its path goes
    on to `Handlers.prepare`, which finds the result in the per-image cache or asks for the upload again.
    """
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except FileNotFoundError:
            return payload.path
        except (OSError, ValueError, SyntaxError, PILImage.DecompressionBombError) as error:
            raise gr.Error(f"not a readable image file ({error.__class__.__name__})") from error

    image.preprocess = checked
    return image


def _panel(label: str, index: int) -> tuple[gr.Image, gr.Markdown]:
    with gr.Column(min_width=160):
        image = gr.Image(
            label=label, format="png", interactive=False, height=DISPLAY_SIZE, elem_id=f"panel-{index}", elem_classes=["crisp"]
        )
        text = gr.Markdown(elem_id=f"caption-{index}", elem_classes=["caption"])
    return image, text


CSS = ".crisp img { image-rendering: pixelated; }"


def theme() -> gr.themes.Base:
    """Gradio's default look with system fonts: the default theme fetches Google Fonts, an outbound request offline."""
    return gr.themes.Default(font=["system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def build(loaded: LoadedModel, face_cache: int = FACE_CACHE_SIZE, handlers: Handlers | None = None) -> gr.Blocks:
    """The Blocks layout: Explore (inputs left, panels right, chart below), Share, Decode, About.

    `handlers` may be passed in by a caller that inspects them while serving (benchmarks/load.py reads the cache size).
    """
    handlers = handlers or Handlers(loaded, cache_size=face_cache)
    model = loaded.model
    k0 = min(privacy.DEFAULT_K, model.k_max)
    defaults = ShareSettings(k=k0)
    # delete_cache sweeps Gradio's copies of what no handler deletes (output images, share downloads, an upload whose
    # request never ran because its client left): every minute, files older than OUTBOX_MAX_AGE. The outbox sweeps the
    # share files it wrote itself on the same schedule, and all of them at exit (`sae.app.outbox`).
    with gr.Blocks(title="Sparse codes for faces", analytics_enabled=False, delete_cache=(60, int(OUTBOX_MAX_AGE))) as demo:
        gr.Markdown(
            "# Sparse autoencoder on faces\nHow much of a face survives when only *k* numbers per group are kept, "
            "and what does someone without the key see?"
        )
        gr.Markdown(f"<small>Model: {loaded.source}: {loaded.note}</small>", elem_id="model-note")
        face_state, curve_state = gr.State(None), gr.State(None)
        # A received public code and key (a few kB) stay with the session, not on disk, for at most OUTBOX_MAX_AGE.
        public_data, key_data = gr.State(None, time_to_live=OUTBOX_MAX_AGE), gr.State(None, time_to_live=OUTBOX_MAX_AGE)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = guard_uploads(
                        gr.Image(
                            label="Photo",
                            type="filepath",
                            sources=["upload", "webcam", "clipboard"],
                            image_mode=None,
                            buttons=["fullscreen"],  # no download: the uploaded file is deleted once read
                            elem_id="photo",
                        )
                    )
                    whole = gr.Checkbox(False, label="Use the whole image (no face detection)")
                    face_note = gr.Markdown(elem_id="face-note")
                    k = gr.Slider(1, model.k_max, value=k0, step=1, label="k: non-zeros per group", elem_id="k-slider")
                    budget = gr.Markdown(budget_text(model, k0, defaults.k_prime(model.code_dim), defaults.value_bits))
                    owner = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Owner's key fraction (fidelity granted)")
                    with gr.Accordion("Privacy and attacks", open=True):
                        decoys = gr.Checkbox(defaults.decoys, label="Decoys")
                        fill_all = gr.Checkbox(defaults.k_prime_ratio is None, label="Decoys at every position (k' = code size)")
                        ratio = gr.Slider(1.0, 8.0, value=defaults.k_prime_ratio or 2.0, step=0.5, label="k'/k (when not every position)")
                        permute = gr.Checkbox(defaults.permute, label="Secret permutation")
                        known = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Attacker's known fraction of the key")
                        extra = gr.Radio(
                            handlers.attacks,
                            value="magnitude",
                            label="Extra attack",
                            info=handlers.attack_note(),
                            elem_id="extra-attack",
                        )
                with gr.Column(scale=3):
                    with gr.Row():
                        with gr.Column(min_width=160):
                            model_input = gr.Image(
                                label="Model input (64x64)", format="png", interactive=False, height=DISPLAY_SIZE, elem_classes=["crisp"]
                            )
                            gr.Markdown("the reference")
                        names = ("Key holder", "No key (decoys)", "Permutation attack", "Extra attack")
                        panels = [_panel(name, index) for index, name in enumerate(names)]
                    plot = gr.Plot(label="Quality vs k for this face; dashed: attacks at this k")
                    with gr.Accordion("The numbers", open=False):
                        table = gr.Dataframe(headers=["k", "PSNR (dB)", "SSIM"], interactive=False)
            examples = sorted(str(p) for p in EXAMPLES.glob("*.png"))
            if examples:
                gr.Examples(examples=examples, inputs=photo)
            gr.Markdown(EXPLANATION)
        with gr.Tab("Share"):
            gr.Markdown("Make a real share of the face in Explore with its current settings: a public code anyone may see, and a key.")
            passphrase = gr.Textbox(label="Passphrase for the key (optional)", type="password")
            share_button = gr.Button("Make public code and key", variant="primary", elem_id="share-button")
            with gr.Row():
                public_out = gr.File(label="Public code (.saep)", elem_id="public-file")
                key_out = gr.File(label="Key (.saek)", elem_id="key-file")
            share_note = gr.Markdown()
        with gr.Tab("Decode"):
            gr.Markdown(
                "Upload a public code and its key (and the passphrase if the key has one). Each file is read into this "
                "session and deleted from the server at once, so the upload box empties again."
            )
            with gr.Row():
                with gr.Column():
                    public_in = gr.File(label="Public code", file_types=[".saep"], type="filepath", elem_id="public-in")
                    public_note = gr.Markdown(elem_id="public-note")
                with gr.Column():
                    key_in = gr.File(label="Key", file_types=[".saek"], type="filepath", elem_id="key-in")
                    key_note = gr.Markdown(elem_id="key-note")
            decode_pass = gr.Textbox(label="Passphrase (if any)", type="password")
            fraction = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Fraction of the key to use")
            decode_button = gr.Button("Decode", variant="primary", elem_id="decode-button")
            decode_files = gr.Button(visible=False)  # the API's /decode: both files in one call
            decoded = gr.Image(label="Key holder's reconstruction", format="png", interactive=False, height=DISPLAY_SIZE)
            decode_note = gr.Markdown(elem_id="decode-note")
        with gr.Tab("About"):
            gr.Markdown(about_text(loaded))

        images, captions = [p[0] for p in panels], [p[1] for p in panels]
        controls = [k, owner, decoys, ratio, fill_all, permute, known, extra]
        update_outputs = [*images, *captions, budget, plot, curve_state, table]  # the curve state only when it was stale
        queued = dict(concurrency_id=CPU)
        private = dict(concurrency_id=CPU, api_visibility="private")
        prepared = photo.change(
            handlers.prepare, [photo, whole], [face_state, model_input, face_note], api_name="prepare", trigger_mode="always_last", **queued
        )
        prepared.then(handlers.curve, [face_state, k], [curve_state, plot, table], api_name="curve", **queued).then(
            handlers.update, [face_state, curve_state, *controls], update_outputs, api_name="refresh", **private
        )
        selected = whole.change(handlers.select, [face_state, whole], [face_state, model_input, face_note], api_name="select", **private)
        selected.then(handlers.curve, [face_state, k], [curve_state, plot, table], api_name="select_curve", **private).then(
            handlers.update, [face_state, curve_state, *controls], update_outputs, api_name="select_refresh", **private
        )
        gr.on(
            [k.release, k.input, owner.release, known.release, ratio.release, decoys.change, fill_all.change, permute.change, extra.change],
            handlers.update,
            [face_state, curve_state, *controls],
            update_outputs,
            trigger_mode="always_last",
            api_name="update",
            **queued,
        )
        share_button.click(
            handlers.share,
            [face_state, k, owner, decoys, ratio, fill_all, permute, passphrase],
            [public_out, key_out, share_note],
            api_name="share",
            **queued,
        )
        public_in.upload(
            lambda path: handlers.receive(path, "public code"),
            public_in,
            [public_data, public_in, public_note],
            api_name="receive_public",
            **private,
        )
        key_in.upload(lambda path: handlers.receive(path, "key"), key_in, [key_data, key_in, key_note], api_name="receive_key", **private)
        decode_button.click(handlers.decode_received, [public_data, key_data, decode_pass, fraction], [decoded, decode_note], **private)
        decode_files.click(handlers.decode, [public_in, key_in, decode_pass, fraction], [decoded, decode_note], api_name="decode", **queued)
    return demo
