"""The photo box: a `gr.Image` whose unreadable uploads reach the handler instead of failing inside Gradio.

Gradio opens every uploaded image before the handler runs, so a text file named .png would fail there with a message
that shows a server path. This subclass hands the file's path on instead; `sae.core.faces.load_photo` then says what
is wrong with it and the handler resets the view. It is a class, not a patched instance, because Gradio rebuilds a
session's component from its class whenever an event updates it (clicking an example does). Gradio writes a type stub
(photo_input.pyi) beside this module the first time it is imported; .gitignore keeps it out of the repository.
"""

from __future__ import annotations

import gradio as gr
from PIL import Image


class PhotoInput(gr.Image):
    """`gr.Image` whose `preprocess` hands an unreadable upload on as its path (the handler explains and resets)."""

    def get_block_name(self) -> str:
        return "image"  # the browser draws it with Gradio's own image component

    def preprocess(self, payload):
        try:
            return super().preprocess(payload)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None if payload is None else payload.path
