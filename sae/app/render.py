"""What the browser is sent: small HTML for the panels (inline 1x lossless WebP images the page scales up crisply), an
SVG chart, and the comparison image a teacher downloads.

Sending HTML strings keeps a slider move cheap on both ends: no image files written to Gradio's cache and fetched
back, no plotting library in the browser, and the model input sent once per face (`PANELS_TEMPLATE`). Colours come
from the page's theme (CSS variables), so light and dark mode both read.
"""

from __future__ import annotations

import base64
import html
import io
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from sae.app.pipeline import Panel, QualityCurve

PALETTE = ("#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442")  # Okabe-Ito (colour-blind safe); the three used far from SSIM_COLOUR
PSNR_COLOUR, SSIM_COLOUR = "#0072B2", "#E69F00"
EXPLAIN = "PSNR: how close to the model input in dB (30 hard to tell apart, below 12 noise). SSIM: 1 identical, 0 unrelated."


def number(value: float, digits: int) -> str:
    """A fixed-point number that never prints as -0.000."""
    text = f"{value:.{digits}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def caption(psnr_db: float, ssim_value: float) -> str:
    """A panel's caption: PSNR ("identical" when infinite) and SSIM, never a negative zero."""
    shown = "identical" if math.isinf(psnr_db) else f"{number(psnr_db, 2)} dB"
    return f"PSNR {shown} · SSIM {number(ssim_value, 3)}"


def pixels(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) or (1, 3, H, W) floats in [0, 1] -> (H, W, 3) uint8 (numpy: cheaper than torch on one small image)."""
    array = image.detach().reshape(3, *image.shape[-2:]).numpy()
    return np.ascontiguousarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8).transpose(1, 2, 0))


def webp_bytes(image: torch.Tensor) -> bytes:
    """(3, H, W) floats in [0, 1] -> lossless WebP file bytes, at its fastest effort (method 0).

    Lossless, so the page shows the exact pixels scored; the fastest effort, because every slider move makes several.
    Browsers read lossless WebP from Safari 14 / iOS 14 on, and every current Chrome, Edge and Firefox.
    """
    buffer = io.BytesIO()
    Image.fromarray(pixels(image)).save(buffer, format="WEBP", lossless=True, quality=0, method=0)
    return buffer.getvalue()


def image_data_url(image: torch.Tensor) -> str:
    """(3, H, W) floats in [0, 1] -> a data: URL the panel HTML embeds."""
    return "data:image/webp;base64," + base64.b64encode(webp_bytes(image)).decode("ascii")


def _figure(index: int, title: str, picture: str, text: str, kind: str = "") -> str:
    return (
        f'<figure class="panel {kind}" id="panel-{index}"><figcaption class="title">{html.escape(title)}</figcaption>'
        f'{picture}<div class="caption" id="caption-{index}">{html.escape(text)}</div></figure>'
    )


def _img(image: torch.Tensor, title: str) -> str:
    return f'<img src="{image_data_url(image)}" alt="{html.escape(title)}">'


def reference_title(size: int) -> str:
    """The model input panel's title, and its image's alt text."""
    return f"Model input ({size}x{size})"


# The model input is the same image on every control change of a face, so it is not resent with each move: the panels
# hold a slot named for the view (face, crop, model) and the panels' gr.HTML fills it from its `reference` prop, sent
# only when the face, the crop or the model changes. A slot whose view is not the prop's stays empty: panels that
# arrive late from an earlier view never show the next view's input.
SLOT_OPEN, SLOT_CLOSE = "<!--reference ", "-->"
PANELS_TEMPLATE = f"${{(value ?? '').replace('{SLOT_OPEN}' + view + '{SLOT_CLOSE}', () => reference)}}"


def reference_slot(view: str) -> str:
    """Where the panels' template puts the model input of `view` (a short id that cannot end the comment: hex)."""
    return f"{SLOT_OPEN}{view}{SLOT_CLOSE}"


def reference_html(image: torch.Tensor, size: int) -> str:
    """The model input's <img>: the `reference` prop, made once per face."""
    return _img(image, reference_title(size))


def with_reference(panels: str, view: str, reference: str) -> str:
    """What `PANELS_TEMPLATE` shows for these props: the slot of `view` replaced by `reference` (the first one only,
    as JavaScript's String.replace does)."""
    return panels.replace(reference_slot(view), reference, 1)


def panels_html(view: str, panels: list[Panel], size: int, hidden: tuple[str, str] | None = None) -> str:
    """The model input's slot (`reference_slot`) and each panel side by side, titles above and PSNR/SSIM below (a CSS
    grid of figures).

    `hidden` (title, reason) adds a panel saying why the chosen extra attack is not shown.
    """
    figures = [_figure(0, reference_title(size), reference_slot(view), "the reference", "reference")]
    figures += [_figure(i, p.title, _img(p.image, p.title), caption(p.psnr, p.ssim)) for i, p in enumerate(panels, start=1)]
    if hidden is not None:
        figures.append(_figure(len(figures), hidden[0], '<div class="empty"></div>', f"not shown: {hidden[1]}", "hidden"))
    return f'<div class="panels" id="panels">{"".join(figures)}</div><p class="explain">{html.escape(EXPLAIN)}</p>'


def sentence(message: str) -> str:
    """A message as the page shows it: starting with a capital (the library's messages start in lower case, to read
    well after a prefix)."""
    return message[:1].upper() + message[1:]


def empty_panels(message: str) -> str:
    """The panels' place when there is no face: one plain message."""
    return f'<div class="panels-empty" id="panels">{html.escape(sentence(message))}</div>'


# ---------------------------------------------------------------------------------------------------
# The quality chart
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChartFrame:
    """One drawing of the chart: its viewBox, plot margins, how many k ticks, and the CSS class that shows it.

    An SVG's text scales with the SVG, so one drawing cannot read on both a projector and a phone: the page gets a
    wide drawing and a narrow one, and the stylesheet shows the one that fits the screen (`sae.app.ui.CSS`)."""

    name: str
    width: int
    height: int
    left: int
    right: int
    top: int
    bottom: int
    k_ticks: int


WIDE = ChartFrame("wide", 640, 262, 44, 44, 24, 34, 8)
NARROW = ChartFrame("narrow", 300, 260, 36, 44, 24, 38, 4)  # drawn about as wide as its viewBox on a phone


def _polyline(xs, ys, x_of, y_of, colour: str, dash: str = "") -> str:
    points = " ".join(f"{x_of(x):.1f},{y_of(y):.1f}" for x, y in zip(xs, ys, strict=True) if math.isfinite(y))
    style = f' stroke-dasharray="{dash}"' if dash else ""
    return f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{style}/>'


def chart_svg(frame: ChartFrame, curve: QualityCurve, k: int, k_max: int, levels: dict[str, float], holder: float) -> str:
    """The chart drawn in `frame`: PSNR (left axis) and SSIM (right axis) against k, the current k marked, the key
    holder's PSNR at this k as a dot, and each attack's PSNR at this k as a level in its own colour."""
    width, height, left, right, top, bottom = frame.width, frame.height, frame.left, frame.right, frame.top, frame.bottom
    finite = [v for v in (*curve.psnr, *levels.values(), holder) if math.isfinite(v)]
    low = 5 * math.floor(min(finite, default=0) / 5)
    high = 5 * math.ceil(max(finite, default=40) / 5 + 0.01)
    x_of = lambda x: left + (width - left - right) * (x - 1) / max(1, k_max - 1)  # noqa: E731
    y_of = lambda y: top + (height - top - bottom) * (high - min(max(y, low), high)) / (high - low)  # noqa: E731
    s_of = lambda s: top + (height - top - bottom) * (1 - min(max(s, 0), 1))  # noqa: E731
    parts = [f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="PSNR and SSIM against k" class="chart-svg {frame.name}">']
    for tick in range(low, high + 1, 5):
        y = y_of(tick)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{tick}</text>')
    for tick in (0, 0.5, 1):
        parts.append(f'<text x="{width - right + 6}" y="{s_of(tick) + 4:.1f}">{tick:g}</text>')
    step = max(1, k_max // frame.k_ticks)
    for tick in sorted({1, *range(step, k_max + 1, step)}):
        parts.append(f'<text x="{x_of(tick):.1f}" y="{height - bottom + 16}" text-anchor="middle">{tick}</text>')
    parts.append(f'<text x="{(left + width - right) / 2}" y="{height - 4}" text-anchor="middle">k (non-zeros per group)</text>')
    parts.append(f'<text x="0" y="{top - 10}" class="axis">PSNR dB</text>')  # from the left edge: wider than the left margin
    parts.append(f'<text x="{width - right + 6}" y="{top - 10}" class="axis">SSIM</text>')
    parts.append(_polyline(curve.ks, curve.psnr, x_of, y_of, PSNR_COLOUR))
    parts.append(_polyline(curve.ks, curve.ssim, x_of, s_of, SSIM_COLOUR, "6 4"))
    for colour, level in zip(PALETTE, levels.values(), strict=False):
        if math.isfinite(level):
            parts.append(
                f'<line x1="{left}" x2="{width - right}" y1="{y_of(level):.1f}" y2="{y_of(level):.1f}" stroke="{colour}" '
                'stroke-width="2" stroke-dasharray="3 3"/>'
            )
    parts.append(f'<line x1="{x_of(k):.1f}" x2="{x_of(k):.1f}" y1="{top}" y2="{height - bottom}" class="marker"/>')
    if math.isfinite(holder):
        parts.append(f'<circle cx="{x_of(k):.1f}" cy="{y_of(holder):.1f}" r="5" fill="{PSNR_COLOUR}" class="holder"/>')
    parts.append("</svg>")
    return "".join(parts)


def chart_html(curve: QualityCurve, k: int, k_max: int, levels: dict[str, float], holder: float) -> str:
    """The chart (`chart_svg`) in its WIDE and NARROW drawings, and one HTML legend below them."""
    legend = [
        ("PSNR of the model against k", PSNR_COLOUR, "solid"),
        ("SSIM (right axis)", SSIM_COLOUR, "dashed"),
        (f"key holder at k = {k}: {number(holder, 2)} dB", PSNR_COLOUR, "dot"),
    ]
    legend += [(f"{name}: {number(level, 2)} dB", colour, "level") for (name, level), colour in zip(levels.items(), PALETTE, strict=False)]
    items = "".join(
        f'<span class="item"><span class="swatch {kind}" style="--swatch:{colour}"></span>{html.escape(text)}</span>'
        for text, colour, kind in legend
    )
    drawings = "".join(chart_svg(frame, curve, k, k_max, levels, holder) for frame in (WIDE, NARROW))
    return f'<div class="chart" id="chart">{drawings}<div class="legend">{items}</div></div>'


# ---------------------------------------------------------------------------------------------------
# The comparison image
# ---------------------------------------------------------------------------------------------------

TILE = 256


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def comparison_png(reference: torch.Tensor, panels: list[Panel], heading: str) -> bytes:
    """The model input and every panel side by side, each scaled to TILE pixels (nearest: crisp), with its title above,
    PSNR/SSIM below and the settings as a heading: one PNG a teacher can drop into slides."""
    title_font, text_font = _font(17), _font(15)
    tiles = [("Model input", reference, "the reference"), *((p.title, p.image, caption(p.psnr, p.ssim)) for p in panels)]
    gap, head, above, below = 12, 34, 28, 26
    canvas = Image.new("RGB", (gap + len(tiles) * (TILE + gap), head + above + TILE + below + gap), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((gap, 8), heading, fill="black", font=title_font)
    for index, (title, image, text) in enumerate(tiles):
        left = gap + index * (TILE + gap)
        picture = Image.fromarray(pixels(image)).resize((TILE, TILE), Image.Resampling.NEAREST)
        canvas.paste(picture, (left, head + above))
        draw.text((left, head + 4), _fit(draw, title, title_font, TILE), fill="black", font=title_font)
        draw.text((left, head + above + TILE + 5), _fit(draw, text, text_font, TILE), fill="black", font=text_font)
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG")
    return buffer.getvalue()


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont, width: int) -> str:
    """`text` shortened with an ellipsis until it fits `width` pixels."""
    while text and draw.textlength(text, font=font) > width:
        text = text[:-2] + "…"
    return text
