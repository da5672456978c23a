"""The controls' slider (sae.app.bounded_slider): a typed value outside the range becomes the nearest valid one, in a
slider and in the copy Gradio rebuilds from its class, and the browser still draws Gradio's own slider."""

from __future__ import annotations

import pytest

from sae.app.bounded_slider import BoundedSlider


@pytest.mark.parametrize("payload, expected", [(500, 128), (128, 128), (7, 7), (0, 1), (-3, 1), (None, 32), (31, 31)])
def test_k_is_clamped_into_its_range(payload, expected):
    slider = BoundedSlider(1, 128, value=32, step=1)
    for box in (slider, BoundedSlider(**slider.constructor_args)):
        assert box.preprocess(payload) == expected


def test_fractions_clamp_to_their_ends_and_keep_their_steps():
    owner = BoundedSlider(0.05, 1.0, value=1.0, step=0.05)
    assert [owner.preprocess(v) for v in (0, 1.5, 0.5, None)] == [0.05, 1.0, 0.5, 1.0]


def test_the_browser_draws_gradios_slider():
    assert BoundedSlider(0, 1).get_block_name() == "slider"
