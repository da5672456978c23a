"""The controls' slider (sae.app.bounded_slider): a typed value outside the range becomes the nearest valid one, in a
slider and in the copy Gradio rebuilds from its class (without its value, with an updated maximum), and the browser
still draws Gradio's own slider."""

from __future__ import annotations

import pytest

from sae.app.bounded_slider import BoundedSlider


@pytest.mark.parametrize("payload, expected", [(500, 128), (128, 128), (7, 7), (0, 1), (-3, 1), (None, 1), (31, 31)])
def test_k_is_clamped_into_its_range(payload, expected):
    slider = BoundedSlider(1, 128, value=32, step=1)
    rebuilt = {name: value for name, value in slider.constructor_args.items() if name != "value"}  # as Gradio rebuilds it
    for box in (slider, BoundedSlider(**rebuilt)):
        assert box.preprocess(payload) == expected


def test_a_new_maximum_applies_to_the_rebuilt_slider():
    """A model switch updates k's maximum; Gradio rebuilds the session's slider from its class with that maximum."""
    rebuilt = {name: value for name, value in BoundedSlider(1, 128, value=32, step=1).constructor_args.items() if name != "value"}
    assert BoundedSlider(**(rebuilt | {"maximum": 64})).preprocess(100) == 64
    assert BoundedSlider(**(rebuilt | {"maximum": 256})).preprocess(200) == 200


def test_fractions_clamp_to_their_ends_and_keep_their_steps():
    owner = BoundedSlider(0.05, 1.0, value=1.0, step=0.05)
    assert [owner.preprocess(v) for v in (0, 1.5, 0.5, None)] == [0.05, 1.0, 0.5, 0.05]  # emptied: the minimum, as shown


def test_the_browser_draws_gradios_slider():
    assert BoundedSlider(0, 1).get_block_name() == "slider"
