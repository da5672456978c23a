"""The Gradio app: upload a face, move k, see the reconstruction and its PSNR/SSIM live.

Handlers are thin: they call `sae.faces` and `sae.pipeline` and format the results. The per-image
state (the 64x64 input and its dense codes) lives in a `gr.State`, so moving the slider never
re-encodes.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
import plotly.graph_objects as go
import torch

from sae.faces import PhotoError, face_input, load_photo
from sae.hub import LoadedModel
from sae.metrics import psnr, ssim
from sae.pipeline import EncodedFace, QualityCurve, decode_many, encode_face, quality_curve, sparsify_each
from sae.rate import code_bytes

EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
DISPLAY_SIZE = 256

EXPLANATION = """
**What am I looking at?** The photo is cropped to a 64x64 face and encoded into a code of
*groups* (feature maps) of numbers. Only the *k* largest numbers of each group are kept: that
sparse code is all that is needed to rebuild the face. Fewer non-zeros, blurrier face. The numbers
under each image compare it with the model input: PSNR in dB (higher is closer, 30 dB is hard to
tell apart) and SSIM (1 is identical).
"""


def to_display(image: torch.Tensor) -> np.ndarray:
    """(1, 3, 64, 64) or (3, 64, 64) in [0, 1] -> uint8 HxWx3, upscaled with nearest neighbours (crisp pixels)."""
    image = image.reshape(3, *image.shape[-2:])
    factor = max(1, DISPLAY_SIZE // image.shape[-1])
    big = image.repeat_interleave(factor, -1).repeat_interleave(factor, -2)
    return (big.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def caption(psnr_db: float, ssim_value: float) -> str:
    shown = "identical" if np.isinf(psnr_db) else f"{psnr_db:.2f} dB"
    return f"PSNR {shown} · SSIM {ssim_value:.3f}"


def budget_text(model, k: int) -> str:
    nonzeros = k * model.num_groups
    size = code_bytes(model.num_groups, model.code_dim, k)
    return f"{k} per group × {model.num_groups} groups = **{nonzeros} non-zeros**, about {size} bytes"


def curve_figure(curve, k: int) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=curve.ks, y=curve.psnr, name="PSNR (dB)", mode="lines"))
    figure.add_trace(go.Scatter(x=curve.ks, y=curve.ssim, name="SSIM", mode="lines", yaxis="y2"))
    figure.add_vline(x=k, line_dash="dot", annotation_text=f"k={k}")
    figure.update_layout(
        xaxis_title="k (non-zeros per group)",
        yaxis=dict(title="PSNR (dB)"),
        yaxis2=dict(title="SSIM", overlaying="y", side="right", range=[0, 1]),
        height=320,
        margin=dict(l=40, r=40, t=30, b=40),
        legend=dict(orientation="h"),
    )
    return figure


class Handlers:
    """The app's event handlers, bound to one loaded model (testable without a browser)."""

    def __init__(self, loaded: LoadedModel):
        self.loaded = loaded
        self.model = loaded.model

    def prepare(self, photo) -> tuple[EncodedFace, np.ndarray]:
        """Upload -> (cached codes, the 64x64 model input shown large)."""
        if photo is None:
            raise gr.Error("Upload a photo, use the webcam, or pick an example.")
        try:
            image = load_photo(photo)
        except PhotoError as error:
            raise gr.Error(str(error)) from error
        face = encode_face(self.model, face_input(image))
        return face, to_display(face.image)

    def reconstruct(self, face: EncodedFace | None, k: int) -> tuple[np.ndarray | None, str, str]:
        """Reconstruction at k with its PSNR/SSIM and the code's size."""
        k = int(k)
        if face is None:
            return None, "", budget_text(self.model, k)
        image = decode_many(self.model, sparsify_each(self.model, face.codes, [k]))
        return to_display(image), caption(psnr(face.image, image)[0], ssim(face.image, image)[0]), budget_text(self.model, k)

    def curve(self, face: EncodedFace | None, k: int) -> tuple[QualityCurve | None, go.Figure | None]:
        """The whole k-curve for this face (one batched decode), computed once per upload."""
        if face is None:
            return None, None
        curve = quality_curve(self.model, face)
        return curve, curve_figure(curve, int(k))

    def mark(self, curve: QualityCurve | None, k: int) -> go.Figure | None:
        """Move the current-k marker on the cached curve."""
        return None if curve is None else curve_figure(curve, int(k))


def build(loaded: LoadedModel) -> gr.Blocks:
    """The Blocks layout (Depth-Anything style: inputs left, results right, examples below)."""
    handlers = Handlers(loaded)
    model = loaded.model
    with gr.Blocks(title="Sparse codes for faces", analytics_enabled=False, delete_cache=(600, 600)) as demo:
        gr.Markdown("# Sparse autoencoder on faces\nHow much of a face survives when only *k* numbers per group are kept?")
        face_state = gr.State(None)
        curve_state = gr.State(None)
        with gr.Row():
            with gr.Column():
                photo = gr.Image(label="Photo", type="filepath", sources=["upload", "webcam", "clipboard"], image_mode=None)
                k = gr.Slider(1, model.k_max, value=min(32, model.k_max), step=1, label="k: non-zeros per group")
                budget = gr.Markdown(budget_text(model, min(32, model.k_max)))
            with gr.Column():
                with gr.Row():
                    model_input = gr.Image(label="Model input (64x64)", format="png", interactive=False)
                    recon = gr.Image(label="Reconstruction at k", format="png", interactive=False)
                metrics = gr.Markdown()
                plot = gr.Plot(label="Quality vs k for this face")
        examples = sorted(str(p) for p in EXAMPLES.glob("*.png"))
        if examples:
            gr.Examples(examples=examples, inputs=photo)
        gr.Markdown(EXPLANATION)
        gr.Markdown(f"Model: {loaded.source} ({loaded.note}); {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters.")

        photo.change(handlers.prepare, photo, [face_state, model_input], api_name="prepare").then(
            handlers.reconstruct, [face_state, k], [recon, metrics, budget], api_name="reconstruct"
        ).then(handlers.curve, [face_state, k], [curve_state, plot], api_name="curve")
        k.release(handlers.reconstruct, [face_state, k], [recon, metrics, budget], trigger_mode="always_last", api_name=False).then(
            handlers.mark, [curve_state, k], plot, api_name=False
        )
        k.input(handlers.reconstruct, [face_state, k], [recon, metrics, budget], trigger_mode="always_last", api_name=False)
    return demo
