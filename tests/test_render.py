"""What the browser is sent (sae.app.render): the panels' HTML with inline lossless WebP images, the SVG chart, the comparison PNG."""

from __future__ import annotations

import base64
import io
import itertools
import math
import re

import numpy as np
import pytest
import torch
from PIL import Image

from sae.app import render
from sae.app.pipeline import Panel, QualityCurve


def _image(seed: int, size: int = 8) -> torch.Tensor:
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def _panels(size: int = 8) -> list[Panel]:
    return [
        Panel("key holder", "Key holder (50% of the key)", _image(1, size), 31.4159, 0.9),
        Panel("decode as is", "No key, decoded as is (no decoys)", _image(2, size), 6.0, -0.00001),
        Panel("guess", "Guess 4 of 8, knows 50%", _image(3, size), float("inf"), 1.0),
    ]


def _decoded(data_url: str) -> np.ndarray:
    assert data_url.startswith("data:image/webp;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(data_url.split(",", 1)[1]))))


def test_numbers_never_print_as_minus_zero():
    assert render.number(-0.00001, 3) == "0.000" and render.number(-0.0, 2) == "0.00"
    assert render.number(-0.0006, 3) == "-0.001" and render.number(1.23456, 2) == "1.23"


def test_caption_handles_identical_and_tiny_negative_ssim():
    assert render.caption(float("inf"), 1.0) == "PSNR identical · SSIM 1.000"
    assert render.caption(12.345, -0.00001) == "PSNR 12.35 dB · SSIM 0.000"


def test_pixels_are_rounded_clamped_uint8_in_hwc():
    image = torch.zeros(1, 3, 2, 3)
    image[0, 0, 0, 0], image[0, 1, 1, 2], image[0, 2, 0, 1] = 1.5, 0.5, -1.0
    shown = render.pixels(image)
    assert shown.shape == (2, 3, 3) and shown.dtype == np.uint8
    assert shown[0, 0, 0] == 255 and shown[1, 2, 1] == 128 and shown[0, 1, 2] == 0
    assert np.array_equal(render.pixels(image[0]), shown)


def test_inline_images_hold_the_exact_pixels_at_one_pixel_per_pixel():
    image = _image(0, 16)
    decoded = _decoded(render.image_data_url(image))
    assert decoded.shape == (16, 16, 3) and np.array_equal(decoded, render.pixels(image))


def test_panels_html_titles_captions_and_reference():
    html = render.with_reference(render.panels_html("ab12", _panels(), 64), "ab12", render.reference_html(_image(0), 64))
    figures = re.findall(r'<figure class="panel ([a-z]*)" id="panel-(\d+)">', html)
    assert figures == [("reference", "0"), ("", "1"), ("", "2"), ("", "3")]
    titles = re.findall(r'<figcaption class="title">([^<]*)</figcaption>', html)
    assert titles == ["Model input (64x64)", "Key holder (50% of the key)", "No key, decoded as is (no decoys)", "Guess 4 of 8, knows 50%"]
    captions = re.findall(r'<div class="caption" id="caption-(\d+)">([^<]*)</div>', html)
    assert captions[0] == ("0", "the reference")
    assert captions[1:] == [
        ("1", "PSNR 31.42 dB · SSIM 0.900"),
        ("2", "PSNR 6.00 dB · SSIM 0.000"),
        ("3", "PSNR identical · SSIM 1.000"),
    ]
    assert "-0.000" not in html and render.EXPLAIN in html
    sources = re.findall(r'<img src="([^"]+)" alt="([^"]*)">', html)
    assert len(sources) == 4 and np.array_equal(_decoded(sources[1][0]), render.pixels(_panels()[0].image))
    assert np.array_equal(_decoded(sources[0][0]), render.pixels(_image(0))) and sources[0][1] == "Model input (64x64)"


def test_the_panels_hold_a_slot_for_the_model_input_not_the_image():
    panels = render.panels_html("ab12", _panels(), 64)
    assert panels.count("<img") == 3 and render.reference_slot("ab12") in panels  # the three panels, not the input
    reference = render.reference_html(_image(0), 64)
    assert render.with_reference(panels, "cd34", reference) == panels  # another view's input never fills this slot
    assert render.with_reference(panels, "ab12", reference).count("<img") == 4


def test_the_template_fills_the_slot_of_its_view():
    """PANELS_TEMPLATE is JavaScript (the browser test runs it); its literal pieces are the slot's."""
    assert render.PANELS_TEMPLATE == "${(value ?? '').replace('<!--reference ' + view + '-->', () => reference)}"
    assert render.reference_slot("ab12") == "<!--reference ab12-->"


def test_a_hidden_extra_attack_gets_a_panel_saying_why():
    html = render.panels_html("ab12", _panels(), 64, ("Learned attack (keep k)", "no file beside the model"))
    hidden = re.search(r'<figure class="panel hidden" id="panel-4">(.*?)</figure>', html)
    assert hidden is not None and "Learned attack (keep k)" in hidden.group(1) and '<div class="empty"></div>' in hidden.group(1)
    assert "not shown: no file beside the model" in hidden.group(1) and "<img" not in hidden.group(1)


def test_titles_and_messages_are_escaped():
    html = render.panels_html("ab12", [Panel("x", "<b>k' & co</b>", _image(1), 1.0, 0.5)], 8)
    assert "<b>" not in html and "&lt;b&gt;k&#x27; &amp; co&lt;/b&gt;" in html
    assert render.empty_panels("<script>") == '<div class="panels-empty" id="panels">&lt;script&gt;</div>'


def _curve() -> QualityCurve:
    ks = np.arange(1, 17)
    return QualityCurve(ks, 10 + ks.astype(float), np.linspace(-0.00001, 0.8, 16))


def test_chart_has_a_legend_entry_and_a_level_per_attack():
    levels = {"No key, decoded as is (k' = 8)": 9.5, "Guess 4 of 8": 11.25, "Magnitude attack": -0.0001}
    html = render.chart_html(_curve(), 4, 16, levels, 14.0)
    legend = re.findall(r'<span class="swatch (\w+)" style="--swatch:(#[0-9A-F]{6})"></span>([^<]*)</span>', html)
    assert [kind for kind, _, _ in legend] == ["solid", "dashed", "dot", "level", "level", "level"]
    assert [text for kind, _, text in legend if kind == "level"] == [
        "No key, decoded as is (k&#x27; = 8): 9.50 dB",
        "Guess 4 of 8: 11.25 dB",
        "Magnitude attack: 0.00 dB",
    ]
    assert legend[2][2] == "key holder at k = 4: 14.00 dB"
    level_colours = [colour for kind, colour, _ in legend if kind == "level"]
    assert level_colours == list(render.PALETTE[:3])
    assert all(f'stroke="{colour}"' in html for colour in level_colours)  # each level drawn in its legend's colour
    assert "-0.000" not in html and html.count('<div class="legend">') == 1  # one legend under both drawings
    drawings = re.findall(r'<svg viewBox="0 0 (\d+) (\d+)"[^>]* class="chart-svg (\w+)">(.*?)</svg>', html)
    assert [(int(w), int(h), name) for w, h, name, _ in drawings] == [
        (frame.width, frame.height, frame.name) for frame in (render.WIDE, render.NARROW)
    ]
    for *_, svg in drawings:  # each drawing whole: both lines, every level, the marker and the key holder's dot
        assert svg.count("<polyline") == 2 and svg.count('class="marker"') == 1 and svg.count('class="holder"') == 1
        assert all(f'stroke="{colour}"' in svg for colour in level_colours)
        assert '<text x="0" y="14" class="axis">PSNR dB</text>' in svg  # from the left edge, not cut off
    assert html.count("<svg") == 2 and html.count("</svg>") == 2


@pytest.mark.parametrize("frame", [render.WIDE, render.NARROW], ids=lambda frame: frame.name)
@pytest.mark.parametrize("k_max", [4, 16, 128])
def test_chart_ticks_are_distinct_and_inside_the_drawing(frame, k_max):
    """Every label's anchor lies inside the viewBox; k's ticks are distinct, start at 1, and neighbours leave a gap
    between them (a digit is under 9 units wide at the drawings' font sizes); for a k_max that k_ticks divides (the
    bundled models' 128 and 64 among them) they end at k_max, at most k_ticks + 1 of them. How big labels are drawn is
    the browser test's."""
    svg = render.chart_svg(frame, _curve(), 4, k_max, {}, 14.0)
    anchors = [(float(x), float(y)) for x, y in re.findall(r'<text x="([\d.]+)" y="([\d.]+)"', svg)]
    assert all(0 <= x <= frame.width and 0 < y <= frame.height for x, y in anchors)
    ticks = re.findall(rf'<text x="([\d.]+)" y="{frame.height - frame.bottom + 16}" text-anchor="middle">(\d+)</text>', svg)
    labels = [int(label) for _, label in ticks]
    assert labels[0] == 1 and labels[-1] == k_max and len(set(labels)) == len(labels) <= frame.k_ticks + 1
    for (x1, a), (x2, b) in itertools.pairwise(ticks):  # centred labels: half of each one's width, and a gap
        assert float(x2) - float(x1) >= 4.5 * (len(a) + len(b)) + 6, (a, b)


@pytest.mark.parametrize("frame", [render.WIDE, render.NARROW], ids=lambda frame: frame.name)
def test_chart_points_cover_the_curve_and_skip_what_is_not_finite(frame):
    curve = _curve()
    curve.psnr[0] = math.inf  # identical at k = 1: no point, not a broken line
    html = render.chart_svg(frame, curve, 16, 16, {}, math.inf)
    psnr_line, ssim_line = re.findall(r'<polyline points="([^"]*)"', html)
    assert len(psnr_line.split()) == 15 and len(ssim_line.split()) == 16
    assert 'class="holder"' not in html and "inf" not in psnr_line
    xs = [float(point.split(",")[0]) for point in ssim_line.split()]
    assert xs[0] == frame.left and xs[-1] == frame.width - frame.right  # k = 1 .. k_max span the plot


def test_comparison_png_size_mode_and_tiles():
    panels = _panels()
    data = render.comparison_png(_image(0), panels, "a heading that says which settings")
    image = Image.open(io.BytesIO(data))
    gap, tiles = 12, 1 + len(panels)
    assert image.format == "PNG" and image.mode == "RGB"
    assert image.size == (gap + tiles * (render.TILE + gap), 34 + 28 + render.TILE + 26 + gap)
    pixels = np.asarray(image)
    first = pixels[34 + 28 : 34 + 28 + render.TILE, gap : gap + render.TILE]
    expected = np.asarray(Image.fromarray(render.pixels(_image(0))).resize((render.TILE, render.TILE), Image.Resampling.NEAREST))
    assert np.array_equal(first, expected)  # scaled up crisply (nearest), not blurred


def test_long_titles_are_shortened_to_fit_a_tile():
    from PIL import ImageDraw

    draw = ImageDraw.Draw(Image.new("RGB", (10, 10)))
    font = render._font(17)
    text = render._fit(draw, "a very long panel title " * 10, font, render.TILE)
    assert text.endswith("…") and draw.textlength(text, font=font) <= render.TILE
    assert render._fit(draw, "short", font, render.TILE) == "short"
