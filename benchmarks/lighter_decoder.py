"""What the decoder's residual blocks cost on the slider: a model beside a copy of it whose decoder has none.

    python -m benchmarks.lighter_decoder [--model assets/models/utkface128] [--runs 3] [--out docs/lighter-decoder.md]

A slider move decodes every panel's code again (the face is encoded once, at upload), through all of the decoder's
convolutions, its residual blocks' included. This measures what dropping those blocks would win: the model beside a
copy whose decoder keeps every layer but its residual blocks (`without_decoder_blocks`: the same weights, the same
encoder and codes, no retraining), both served by the app and measured as `benchmarks.slider_runs` measures the
bundled models (fresh servers, the floor app in turns, each run after a probe of each model's handler in this
process). The copy is a timing probe, never shipped: its pictures are worse, by how much the second table says (PSNR
and SSIM on the first test faces of the model's data, when the data is beside the checkout). What is left of its
decoder is linear, so retrained weights for the same layers would change its pictures, not its time per move; only
fewer or narrower layers would cost less.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks import browser, slider_runs
from benchmarks import document as report
from benchmarks.run import DATA
from benchmarks.serving import chromium_available
from sae.app.settings import ShareSettings
from sae.cli.evaluate import evaluate_model
from sae.cli.results import cell
from sae.core.data import load_split, to_float
from sae.core.model import ResidualBlock, SparseAutoencoder
from sae.privacy import catalogue
from sae.zoo.files import DataNote
from sae.zoo.hub import load_model

LIGHTER = "-without-decoder-blocks"  # the copy's directory: the model's name and this


def without_decoder_blocks(model: SparseAutoencoder) -> SparseAutoencoder:
    """A copy of `model` whose decoder keeps every layer but its residual blocks (`decoder_blocks=0`), with the same
    weights; the encoder, the grouped layers and so the codes are the model's.

    Every block is `x + branch(x)`, so the copy's decoder is the model's with each branch set to zero: what it draws
    with no non-linearity at all."""
    lighter = SparseAutoencoder(**(dict(model._hub_mixin_config) | {"decoder_blocks": 0}))
    state = {key: value for key, value in model.state_dict().items() if not key.startswith("decoder.")}
    kept = [layer for layer in model.decoder if not isinstance(layer, ResidualBlock)]
    for index, layer in enumerate(kept):
        state |= {f"decoder.{index}.{key}": value for key, value in layer.state_dict().items()}
    lighter.load_state_dict(state)
    return lighter.eval()


def lighter_copy(model_dir: str, into: Path) -> Path:
    """`without_decoder_blocks` of the model in `model_dir`, saved with its data note as a directory in `into`, for the
    app to serve. The model's shipped attacks are not copied (each names the weights it was fitted to): the app's
    default extra attack must need none, or the copy's moves would do less work than the model's."""
    if not catalogue.ATTACKS[ShareSettings().extra_attack].available({}):
        raise RuntimeError("the app's default extra attack needs a fitted part, which the copy does not have")
    model = load_model(model_dir, fallback=None).model
    out = into / (Path(model_dir).name + LIGHTER)
    without_decoder_blocks(model).save_pretrained(out)
    DataNote.read(Path(model_dir)).write(out)
    return out


def quality(models: dict[str, SparseAutoencoder], images: torch.Tensor) -> dict[str, dict[int, dict[str, float]]]:
    """Mean PSNR and SSIM of each model's reconstruction of `images` at k = 8, 16, ... up to its k_max."""
    ks = [k for k in (8, 16, 32, 64, 128, 256) if k <= min(model.k_max for model in models.values())]
    return {name: evaluate_model(model, images, ks) for name, model in models.items()}


def quality_table(scores: dict[str, dict[int, dict[str, float]]], faces: int) -> str:
    """One row per k: each model's PSNR / SSIM, and what the copy loses."""
    (model, full), (copy, light) = scores.items()
    lines = [
        f"PSNR (dB) / SSIM on the first {faces} test faces:",
        "",
        f"| k | {Path(model).name} | {Path(copy).name} | lost (dB) |",
        "|---|---|---|---|",
    ]
    lines += [f"| {k} | {cell(ours)} | {cell(light[k])} | {ours['psnr'] - light[k]['psnr']:.2f} |" for k, ours in full.items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.lighter_decoder", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="assets/models/utkface128")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=browser.STEPS, help="slider steps per app and run")
    parser.add_argument("--uploads", type=int, default=3, help="uploads per app and run")
    parser.add_argument("--faces", type=int, default=256, help="test faces for the quality table")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--out", default=None, help="also write the tables here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not chromium_available():
        raise SystemExit("benchmarks.lighter_decoder: Chromium not found (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="sae-lighter-") as scratch:
        copy = lighter_copy(args.model, Path(scratch))
        results = slider_runs.run([args.model, str(copy)], args.runs, args.steps, args.uploads)
        tables = [slider_runs.markdown(results)]
        data = DATA.get(DataNote.read(Path(args.model)).dataset)
        scores = {}
        if data is not None and data.is_dir():
            models = {name: load_model(name, fallback=None).model for name in (args.model, str(copy))}
            size = models[args.model].image_size
            images = to_float(load_split(data, "test", args.cache_dir, args.faces, size))
            scores = quality(models, images)
            tables.append(quality_table(scores, len(images)))
        else:
            tables.append(f"No quality table: the model's data ({data}) is not beside the checkout.\n")
    text = "\n".join(tables)
    print(text)
    if args.out:
        title, used = "The slider without the decoder's residual blocks", sys.argv[1:] if argv is None else argv
        Path(args.out).write_text(report.document(title, "benchmarks.lighter_decoder", __doc__, text, used))
    everything = {"runs": results, "quality": {name: {str(k): cell for k, cell in rows.items()} for name, rows in scores.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(everything, indent=2))
    return everything


if __name__ == "__main__":
    main()
