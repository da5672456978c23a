"""The model card (a model directory's README.md): what the model is, how it was made, how well it does, and what
each sharing scheme protects.

    python -m sae.cli.card --model assets/models/utkface128 [--run runs/utk128log]

Every number in it comes from the directory's result files (`sae.cli.evaluate`, `sae.cli.privacy_eval`), its data
note and the training run's config and history; nothing is typed by hand.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from sae.cli.evaluate import markdown
from sae.zoo import files
from sae.zoo.files import DataNote

LOSS_WORDS = {"mse": "MSE loss", "log": "loss: mean log-MSE per image (mean PSNR)"}


def command(config: dict, out: str) -> str:
    """The `sae.cli.train` command line that a run's train_config.json records: preset and epochs always, every other
    option only where it differs from `TrainConfig`'s default."""
    from sae.cli.train import TrainConfig  # the defaults live with the trainer

    defaults = {f.name: f.default for f in fields(TrainConfig) if f.default is not MISSING}
    flags = [f"--out {out}", f"--preset {config.get('preset', 'default')}", f"--epochs {config.get('epochs')}"]
    for name, default in defaults.items():
        value = config.get(name, default)
        if name in ("out", "preset", "epochs", "cache_dir", "warmup_steps", "min_lr_ratio") or value == default:  # not flags
            continue
        flags.append(f"--{name.replace('_', '-')} {value:g}" if isinstance(value, float) else f"--{name.replace('_', '-')} {value}")
    return f"python -m sae.cli.train --data {config.get('data', '../shared/data/celeba10k')} " + " ".join(flags)


def _recipe(config: dict) -> str:
    """What the command's defaults and options amount to, in words."""
    ema = config.get("ema_decay")
    return (
        f"batch {config.get('batch_size')}, Adam lr {config.get('lr')} with the grouped linear layers at "
        f"{config.get('grouped_lr_scale', 1.0)}x, start `{config.get('init', 'pca')}`, cosine decay, "
        f"k log-uniform in 1..{config.get('train_k_max') or 'k_max'} per batch, {LOSS_WORDS[config.get('loss', 'mse')]}, "
        f"seed {config.get('seed', 0)}"
        + (f"; validated and saved: an exponential moving average of the weights, decay {ema}" if ema else "")
    )


def _timing(config: dict, history: list[dict]) -> str:
    """Epochs, minutes of steps and speed from the run's history (not wall time, which loading and validation add to)."""
    seconds = sum(row["seconds"] for row in history)
    best = max(history, key=lambda r: sum(v for key, v in r.items() if key.startswith("val_psnr")))
    return (
        f"{len(history)} epochs on {config.get('device', 'cpu')}: about {seconds / 60:.0f} minutes of training steps "
        f"at {min(r['images_per_s'] for r in history):.0f}-{max(r['images_per_s'] for r in history):.0f} images/s "
        f"(the machine was shared with other work). Best validation epoch: {int(best['epoch'])}."
    )


DATASETS = {"celeba": ("CelebA", "celeba-research-only"), "utkface": ("UTKFace", "utkface-non-commercial-research")}


NO_PRIVACY = "not measured yet for this model (`python -m sae.cli.privacy_eval` writes the tables beside it)."


def render(
    evaluation: dict,
    config: dict,
    history: list[dict] | None = None,
    notes: str = "",
    base: tuple[dict, list[dict]] | None = None,
    data: DataNote | None = None,
    privacy: str = "",
    extra: dict[str, str] | None = None,
) -> str:
    """Model card Markdown with Hub front matter. `base` is the config and history of the run a fine-tuning run
    started from (its `--init` directory), so the card gives both commands; `privacy` is the privacy tables
    (privacy.md); `extra` maps a heading to a further table (another model's rows on the same faces, say)."""
    model = config.get("model", {})
    data = data or DataNote()
    name, licence = DATASETS.get(data.dataset, (data.dataset, "other"))
    size = evaluation.get("image_size", model.get("image_size", 64))
    lines = [
        "---",
        "library_name: sae",
        "license: other",
        f"license_name: {licence}",
        "tags: [sparse-autoencoder, privacy, image-reconstruction, pytorch_model_hub_mixin]",
        f"datasets: [{name}]",
        "---",
        "",
        f"# Sparse autoencoder on convolutional groups, {name} {size}x{size}",
        "",
        f"{evaluation['parameters'] / 1e6:.2f}M parameters. A convolutional encoder (pixel-unshuffle stem, residual blocks) "
        f"produces {evaluation['num_groups']} groups of feature maps; each group has its own linear layer to "
        f"{evaluation['code_dim']} code entries (one batched einsum), of which the k largest in magnitude are kept "
        "(k chosen at decode time, 1 to k_max); the grouped linear decoder and a mirrored convolutional decoder rebuild "
        "the image. Every non-linearity sits in a residual branch, so the network has an exact linear path, which "
        "training starts at a closed-form PCA solution (`sae.core.init`: local patch PCA, a shared low-resolution face "
        "in every group, global components dealt out over the groups). Config: `" + json.dumps(model) + "`.",
        "",
        "## Evaluation",
        "",
        markdown(evaluation),
        "PSNR/SSIM per image with scikit-image, `data_range=1`, averaged over the test faces. "
        "JPEG: Pillow, each image at the highest quality whose whole file fits the code's size "
        "(positions at log2 C(m, k) bits per group plus 16-bit values). The full PSNR/SSIM-vs-k curve is in "
        "`evaluation.json` and `evaluation.html`.",
        "",
        "## Training",
        "",
        f"Data: {data.description}. The validation split chose the checkpoint; the test split never reached training. "
        f"Licence: {data.licence}.",
        "",
    ]
    if base is not None:
        base_config, base_history = base
        lines += [
            f"Stage 1: `{command(base_config, 'runs/default')}` ({_recipe(base_config)})."
            + (f" Trained for {_timing(base_config, base_history)}" if base_history else ""),
            "",
            f"Stage 2, fine-tuning stage 1's best checkpoint: `{command(config | {'init': 'runs/default/best'}, 'runs/finetune')}` "
            f"({_recipe(config | {'init': 'runs/default/best'})}).",
        ]
    else:
        lines += [f"Command: `{command(config, 'runs/default')}` ({_recipe(config)})."]
    if history:
        lines += ["", f"{'Stage 2 trained' if base is not None else 'Trained'} for {_timing(config, history)}"]
    if notes:
        lines += ["", notes]
    for heading, table in (extra or {}).items():
        lines += ["", f"## {heading}", "", table.rstrip()]
    if privacy:
        lines += [
            "",
            "## Privacy: both sharing schemes",
            "",
            privacy.rstrip(),
            "",
            "The keyed scheme's strength is that of "
            "ChaCha20 and of the key file; the paper's scheme publishes the true values and is obfuscation, with the "
            "leaks measured above. `sae.cli.privacy_eval` wrote these tables (privacy.json has every figure).",
        ]
    else:
        lines += ["", "## Privacy", "", NO_PRIVACY]
    data_path = config.get("data", "../shared/data/celeba10k")
    lines += [
        "",
        f"Reproduce the tables: `python -m sae.cli.evaluate --model DIR --data {data_path}` and "
        f"`python -m sae.cli.privacy_eval --model DIR --data {data_path}`.",
    ]
    return "\n".join(lines) + "\n"


def write(model_dir: str | Path, run_dir: str | Path | None = None, notes: str = "", extra: dict[str, str] | None = None) -> Path:
    """Write README.md into `model_dir` from its result files, its data note and the run's config and history (the run
    directory defaults to the model directory, where a bundled model keeps copies of them)."""
    model_dir = Path(model_dir)
    run_dir = Path(run_dir) if run_dir is not None else model_dir
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    config = json.loads((run_dir / files.TRAIN_CONFIG).read_text())
    if (model_dir / files.CONFIG).exists():  # describe the model as shipped (its k_max may be capped below the run's)
        config["model"] = json.loads((model_dir / files.CONFIG).read_text())
    history = _read_history(run_dir / files.HISTORY)
    base = None
    if config.get("init", "pca") not in ("pca", "random"):  # a fine-tuning run: describe the run it started from too
        base = _base_run(model_dir, Path(config["init"]).parent)
    privacy = (model_dir / "privacy.md").read_text() if (model_dir / "privacy.md").is_file() else ""
    path = model_dir / files.CARD
    path.write_text(render(evaluation, config, history, notes, base, DataNote.read(model_dir), privacy, extra))
    return path


SCALED = Path("docs") / "celeba64-on-utkface128"  # `sae.cli.evaluate --size 128` of the CelebA-64 model on UTKFace


def results_page(models: dict[str, Path], scaled: Path | None = SCALED) -> str:
    """docs/results.md: every bundled model's evaluation table and privacy verdicts, and the CelebA-64 model scaled up
    on the UTKFace-128 model's faces, each table read from the file its command wrote."""
    lines = [
        "# Results",
        "",
        "Written by `python -m sae.cli.card --results docs/results.md` from the result files below; each model card has the",
        "full tables and how the model was trained.",
    ]
    for name, directory in models.items():
        evaluation = directory / "evaluation.md"
        if not evaluation.is_file():
            continue
        lines += ["", f"## {name}: [card]({Path('..') / directory / 'README.md'})", "", evaluation.read_text().rstrip()]
        privacy = directory / "privacy.json"
        if privacy.is_file():
            targets = json.loads(privacy.read_text()).get("targets", {})
            met = [goal for goal, ok in targets.items() if ok]
            missed = [goal for goal, ok in targets.items() if not ok]
            lines += [
                "",
                f"Privacy ([table]({Path('..') / directory / 'privacy.md'})): the keyed scheme meets "
                f"{len(met)} of {len(targets)} targets" + (f"; not met: {'; '.join(missed)}." if missed else "."),
            ]
        else:
            lines += ["", f"Privacy: {NO_PRIVACY}"]
    if scaled is not None and (scaled / "evaluation.md").is_file():
        lines += [
            "",
            "## The CelebA-64 model on the same UTKFace faces, scaled up to 128x128",
            "",
            f"`python -m sae.cli.evaluate --model assets/models/celeba64 --data ../shared/data/utkface200 --size 128 --out {scaled}`:",
            "its input is each face at 64x64 and its reconstruction is scaled up (bicubic) to be scored at 128x128, as a projector "
            "shows it; the baselines are fitted at 128x128.",
            "",
            (scaled / "evaluation.md").read_text().rstrip(),
        ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    """Command line: write a model card, or the results page with --results."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m sae.cli.card", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=None, help="model directory holding evaluation.json (and privacy.md, data.json)")
    parser.add_argument("--results", default=None, help="instead, write the page of every bundled model's results here")
    parser.add_argument("--run", default=None, help="training run directory (default: the model directory's own copies)")
    parser.add_argument("--notes", default="", help="a paragraph on how the run went (placed under the training section)")
    parser.add_argument(
        "--extra",
        nargs=2,
        action="append",
        metavar=("HEADING", "TABLE_MD"),
        default=[],
        help="add a table file under a heading (another model's rows on the same faces, say)",
    )
    args = parser.parse_args(argv)
    if args.results:
        models = {files.TITLES.get(name, name): path.relative_to(files.ASSETS.parent) for name, path in files.bundled_models().items()}
        Path(args.results).write_text(results_page(models))
        print(f"wrote {args.results}")
        return
    if args.model is None:
        parser.error("--model or --results is required")
    extra = {heading: Path(table).read_text() for heading, table in args.extra}
    print(f"wrote {write(args.model, args.run, notes=args.notes, extra=extra)}")


def _read_history(path: Path) -> list[dict]:
    import csv

    if not path.exists():
        return []
    with open(path) as handle:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(handle)]


def _base_run(model_dir: Path, init_parent: Path) -> tuple[dict, list[dict]] | None:
    """The config and history of the run a fine-tune started from: the copies shipped beside the weights
    (stage1_*), else that run's own directory; None when neither is there (the card then gives stage 2 alone)."""
    for config_path, history_path in (
        (model_dir / f"{files.STAGE1}{files.TRAIN_CONFIG}", model_dir / f"{files.STAGE1}{files.HISTORY}"),
        (init_parent / files.TRAIN_CONFIG, init_parent / files.HISTORY),
    ):
        if config_path.is_file():
            return json.loads(config_path.read_text()), _read_history(history_path)
    return None


if __name__ == "__main__":
    main()
