"""The controls' sliders: a `gr.Slider` that clamps a typed value into its range instead of failing inside Gradio.

Each slider has a number box; a value typed there is sent as it stands (500 for k, 0 for the owner's fraction), and
Gradio's own preprocessing refuses one outside the range before any handler runs, which leaves the page showing the
previous view beside the typed number with no message. Clamped here, the view follows the nearest valid value at once;
the box itself shows it as Enter is pressed (`sae.app.ui.PAGE_JS`) or when it loses focus (Gradio's slider). It is a
class, not a patched instance, for the reason `sae.app.photo_input` gives.
"""

from __future__ import annotations

import gradio as gr


class BoundedSlider(gr.Slider):
    """`gr.Slider` whose `preprocess` clamps the value into [minimum, maximum]; an emptied box counts as the minimum,
    which the box then shows too. The range is the session's copy of the slider, so a model switch's new maximum
    applies; handlers still check k against the model they use."""

    def get_block_name(self) -> str:
        return "slider"  # the browser draws it with Gradio's own slider

    def preprocess(self, payload: float | None) -> float:
        value = self.minimum if payload is None else min(max(payload, self.minimum), self.maximum)
        return super().preprocess(value)
