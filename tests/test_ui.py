from __future__ import annotations

import gradio as gr
import numpy as np
import pytest
from PIL import Image

from sae.hub import LoadedModel
from sae.ui import Handlers, build, caption, to_display


@pytest.fixture
def handlers(tiny_model) -> Handlers:
    return Handlers(LoadedModel(tiny_model, "test", "a tiny random model"))


def test_prepare_reconstruct_curve(handlers):
    face, shown = handlers.prepare(Image.new("RGB", (120, 90), (200, 150, 100)))
    assert shown.shape == (256, 256, 3) and shown.dtype == np.uint8
    image, text, budget = handlers.reconstruct(face, 4)
    assert image.shape == (256, 256, 3) and text.startswith("PSNR ") and "16 non-zeros" in budget
    curve, figure = handlers.curve(face, 4)
    assert len(curve.ks) == handlers.model.k_max and figure is not None
    assert handlers.mark(curve, 7) is not None


def test_bad_upload_is_a_message_not_a_crash(handlers):
    with pytest.raises(gr.Error, match="at least"):
        handlers.prepare(Image.new("RGB", (1, 1)))
    with pytest.raises(gr.Error, match="Upload a photo"):
        handlers.prepare(None)


def test_no_face_yet(handlers):
    assert handlers.reconstruct(None, 3)[0] is None
    assert handlers.curve(None, 3) == (None, None)


def test_display_is_crisp_nearest_neighbour():
    import torch

    image = torch.zeros(1, 3, 64, 64)
    image[..., 0, 0] = 1
    shown = to_display(image)
    assert (shown[:4, :4] == 255).all() and shown[4, 4].sum() == 0


def test_caption_handles_identical():
    assert "identical" in caption(float("inf"), 1.0)


def test_build(tiny_model):
    demo = build(LoadedModel(tiny_model, "test", "a tiny random model"))
    assert isinstance(demo, gr.Blocks)
