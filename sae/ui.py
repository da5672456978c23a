"""The Gradio app: upload a face, move k, see the key holder's view, the decoys and the attacks with live PSNR/SSIM.

Handlers are thin: they call `sae.faces`, `sae.pipeline` and `sae.privacy` and format the results. The per-image
state (the 64x64 input and its dense codes) lives in a `gr.State`, so moving a control never re-encodes.
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch
from PIL import Image as PILImage

from sae import privacy
from sae.faces import PhotoError, face_input, load_photo, locate_face
from sae.hub import LoadedModel
from sae.pipeline import (
    ATTACKS,
    EncodedFace,
    Panel,
    QualityCurve,
    ShareSettings,
    decode_shared,
    encode_face,
    privacy_panels,
    quality_curve,
    share,
)
from sae.rate import code_bytes

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
DISPLAY_SIZE = 256
MAX_CODE_FILE = 8_000_000  # bytes; public codes and keys of one face are a few kB
OUTBOX_MAX_AGE = 600.0  # seconds a downloadable code or key stays on disk
PANELS = 4  # key holder, decoys, permutation attack, extra attack

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


def _read_upload(path: str | None, what: str) -> bytes:
    if path is None:
        raise gr.Error(f"Upload the {what} file.")
    file = Path(path)
    if file.stat().st_size > MAX_CODE_FILE:
        raise gr.Error(f"the {what} file is too large to be one of ours")
    return file.read_bytes()


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-")[:40] or "face"


class Handlers:
    """The app's event handlers, bound to one loaded model (testable without a browser)."""

    def __init__(self, loaded: LoadedModel, outbox: Path | None = None):
        self.loaded = loaded
        self.model = loaded.model
        self.outbox = outbox or Path(tempfile.mkdtemp(prefix="sae-outbox-"))
        self.outbox.mkdir(parents=True, exist_ok=True)

    def prepare(self, photo, whole_image: bool = False) -> tuple[EncodedFace | None, np.ndarray | None, str]:
        """Upload -> (cached codes, the 64x64 model input shown large, what the face finder did).

        A cleared photo (None) clears the panels quietly rather than raising an error toast.
        """
        if photo is None:
            return None, None, "Upload a photo, use the webcam, or pick an example."
        try:
            image = load_photo(photo)
        except PhotoError as error:
            raise gr.Error(str(error)) from error
        crop = locate_face(image, whole_image=bool(whole_image))
        face = encode_face(self.model, face_input(image, crop.box))
        return face, to_display(face.image), crop.message

    def update(
        self, face: EncodedFace | None, curve: QualityCurve | None, k, owner_fraction, decoys, ratio, fill_all, permute, known, extra
    ):
        """One interaction: the four privacy panels (one batched decode), their captions, the budget and the chart."""
        settings = settings_from(k, owner_fraction, decoys, ratio, fill_all, permute, known, extra)
        budget = budget_text(self.model, settings.k, settings.k_prime(self.model.code_dim), settings.value_bits, settings.permute)
        if face is None:
            return (*[None] * PANELS, *[""] * PANELS, budget, None)
        panels = privacy_panels(self.model, face, settings)
        padded: list[Panel | None] = [*panels, *[None] * (PANELS - len(panels))]
        images = [None if p is None else to_display(p.image) for p in padded]
        captions = ["" if p is None else caption(p.psnr, p.ssim, p.name) for p in padded]
        levels = {p.name: p.psnr for p in panels[1:]}
        figure = None if curve is None else curve_figure(curve, settings.k, levels)
        return (*images, *captions, budget, figure)

    def curve(self, face: EncodedFace | None, k) -> tuple[QualityCurve | None, go.Figure | None, list[list[float]]]:
        """The whole k-curve for this face (one batched decode), computed once per upload."""
        if face is None:
            return None, None, []
        curve = quality_curve(self.model, face)
        return curve, curve_figure(curve, int(k)), curve_table(curve)

    def share(self, face: EncodedFace | None, k, owner_fraction, decoys, ratio, fill_all, permute, passphrase: str = ""):
        """Make a real share (OS entropy, fresh secret): the public code and the key as downloadable files."""
        if face is None:
            raise gr.Error("Upload a face first (Explore tab).")
        settings = replace(settings_from(k, owner_fraction, decoys, ratio, fill_all, permute, 0.0, "none"), seed=secrets.randbits(63))
        generator = torch.Generator().manual_seed(settings.seed)
        public, key = share(self.model, face, settings, generator, secret=secrets.token_bytes(privacy.SECRET_BYTES))
        if settings.owner_fraction < 1.0:
            key = key.restrict(public, settings.owner_fraction)
        self._sweep()
        folder = Path(tempfile.mkdtemp(dir=self.outbox))
        stem = _safe_stem(f"face-k{settings.k}")
        public_path, key_path = folder / f"{stem}.saep", folder / f"{stem}.saek"
        public_path.write_bytes(public.to_bytes())
        key_path.write_bytes(key.to_bytes(passphrase or None))
        note = (
            f"Public code: {public_path.stat().st_size} bytes (k' = {public.k_prime} per group, "
            f"{'permuted' if public.permuted else 'not permuted'}). Key: {key_path.stat().st_size} bytes, reveals {key.k} per group"
            f"{', passphrase-protected' if passphrase else ''}. Keep the key private; the public code can go anywhere."
        )
        return str(public_path), str(key_path), note

    def decode(self, public_file: str | None, key_file: str | None, passphrase: str = "", fraction: float = 1.0):
        """A received public code and key -> the key holder's image; a wrong key or damaged file is a clear message."""
        try:
            public = privacy.PublicCode.from_bytes(_read_upload(public_file, "public code"))
            key = privacy.Key.from_bytes(_read_upload(key_file, "key"), passphrase or None)
            image = decode_shared(self.model, public, key, float(fraction))
        except privacy.CodeFormatError as error:
            raise gr.Error(f"Damaged or unknown file: {error}") from error
        except privacy.KeyMismatchError as error:
            raise gr.Error(f"Wrong key: {error}") from error
        except privacy.PassphraseError as error:
            raise gr.Error(f"Passphrase: {error}") from error
        kept = privacy.kept_count(key.k, float(fraction))
        return to_display(image), f"Decoded with {kept} of {key.k} true entries per group ({public.num_groups} groups)."

    def _sweep(self) -> None:
        """Delete shares older than OUTBOX_MAX_AGE: nothing we wrote outlives a visit for long."""
        cutoff = time.time() - OUTBOX_MAX_AGE
        for path in sorted(self.outbox.glob("*/*"), reverse=True):
            if path.stat().st_mtime < cutoff:
                path.unlink(missing_ok=True)
        for folder in self.outbox.glob("*"):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


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
    """
    preprocess = image.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
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


def build(loaded: LoadedModel) -> gr.Blocks:
    """The Blocks layout: Explore (inputs left, panels right, chart below), Share, Decode, About."""
    handlers = Handlers(loaded)
    model = loaded.model
    k0 = min(privacy.DEFAULT_K, model.k_max)
    defaults = ShareSettings(k=k0)
    with gr.Blocks(title="Sparse codes for faces", analytics_enabled=False, delete_cache=(600, 600)) as demo:
        gr.Markdown(
            "# Sparse autoencoder on faces\nHow much of a face survives when only *k* numbers per group are kept, "
            "and what does someone without the key see?"
        )
        gr.Markdown(f"<small>Model: {loaded.source}: {loaded.note}</small>", elem_id="model-note")
        face_state, curve_state = gr.State(None), gr.State(None)
        with gr.Tab("Explore"):
            with gr.Row():
                with gr.Column(scale=1):
                    photo = guard_uploads(
                        gr.Image(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"], image_mode=None)
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
                        extra = gr.Radio(list(ATTACKS), value="magnitude", label="Extra attack", elem_id="extra-attack")
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
            gr.Markdown("Upload a public code and its key (and the passphrase if the key has one).")
            with gr.Row():
                public_in = gr.File(label="Public code", file_types=[".saep"], type="filepath", elem_id="public-in")
                key_in = gr.File(label="Key", file_types=[".saek"], type="filepath", elem_id="key-in")
            decode_pass = gr.Textbox(label="Passphrase (if any)", type="password")
            fraction = gr.Slider(0.05, 1.0, value=1.0, step=0.05, label="Fraction of the key to use")
            decode_button = gr.Button("Decode", variant="primary", elem_id="decode-button")
            decoded = gr.Image(label="Key holder's reconstruction", format="png", interactive=False, height=DISPLAY_SIZE)
            decode_note = gr.Markdown(elem_id="decode-note")
        with gr.Tab("About"):
            gr.Markdown(about_text(loaded))

        images, captions = [p[0] for p in panels], [p[1] for p in panels]
        controls = [k, owner, decoys, ratio, fill_all, permute, known, extra]
        update_outputs = [*images, *captions, budget, plot]
        prepared = gr.on(
            [photo.change, whole.change], handlers.prepare, [photo, whole], [face_state, model_input, face_note], api_name="prepare"
        )
        prepared.then(handlers.curve, [face_state, k], [curve_state, plot, table], api_name="curve").then(
            handlers.update, [face_state, curve_state, *controls], update_outputs, api_name="refresh", api_visibility="private"
        )
        gr.on(
            [k.release, k.input, owner.release, known.release, ratio.release, decoys.change, fill_all.change, permute.change, extra.change],
            handlers.update,
            [face_state, curve_state, *controls],
            update_outputs,
            trigger_mode="always_last",
            api_name="update",
        )
        share_button.click(
            handlers.share,
            [face_state, k, owner, decoys, ratio, fill_all, permute, passphrase],
            [public_out, key_out, share_note],
            api_name="share",
        )
        decode_button.click(handlers.decode, [public_in, key_in, decode_pass, fraction], [decoded, decode_note], api_name="decode")
    return demo
