"""How the tools write and print results: one file layout, one way to show a PSNR/SSIM cell.

Every report is STEM.json (everything), STEM.md (the table a model card or docs page carries) and STEM.html (a
plotly chart), written side by side into the model directory.
"""

from __future__ import annotations

import json
from pathlib import Path

import plotly.graph_objects as go


def cell(scores: dict[str, float] | None) -> str:
    """'PSNR / SSIM' of a {psnr, ssim} dict, e.g. '29.87 / 0.913'; '-' for none."""
    return "-" if scores is None else f"{scores['psnr']:.2f} / {scores['ssim']:.3f}"


def percent(rate: float) -> str:
    """A rate in [0, 1] as a percentage with one decimal."""
    return f"{100 * rate:.1f}%"


def write_results(out: str | Path, stem: str, result: dict, table: str, figure: go.Figure) -> None:
    """STEM.json, STEM.md and STEM.html in `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(result, indent=2))
    (out / f"{stem}.md").write_text(table)
    figure.write_html(out / f"{stem}.html", include_plotlyjs="cdn")
