"""The model card (assets/model/README.md): what the model is, how it was made, how well it does.

Every number in it comes from `sae.cli.evaluate` output and the training run's history; nothing is typed by hand.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, fields
from pathlib import Path

from sae.cli.evaluate import markdown

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
    return "python -m sae.cli.train --data ../shared/data/celeba10k " + " ".join(flags)


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
    seconds = sum(row["seconds"] if "seconds" in row else 8000 / row["images_per_s"] for row in history)  # older runs: 8000 faces
    best = max(history, key=lambda r: sum(v for key, v in r.items() if key.startswith("val_psnr")))
    return (
        f"{len(history)} epochs on {config.get('device', 'cpu')}: about {seconds / 60:.0f} minutes of training steps "
        f"at {min(r['images_per_s'] for r in history):.0f}-{max(r['images_per_s'] for r in history):.0f} images/s "
        f"(the machine was shared with other work). Best validation epoch: {int(best['epoch'])}."
    )


def render(
    evaluation: dict, config: dict, history: list[dict] | None = None, notes: str = "", base: tuple[dict, list[dict]] | None = None
) -> str:
    """Model card Markdown with Hub front matter. `base` is the config and history of the run a fine-tuning run
    started from (its `--init` directory), so the card gives both commands."""
    model = config.get("model", {})
    lines = [
        "---",
        "library_name: sae",
        "license: other",
        "license_name: celeba-research-only",
        "tags: [sparse-autoencoder, privacy, image-reconstruction, pytorch_model_hub_mixin]",
        "datasets: [CelebA]",
        "---",
        "",
        "# Sparse autoencoder on convolutional groups, CelebA 64x64",
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
        "Data: CelebA aligned crops 000001-008000 (train) and 008001-009000 (validation, checkpoint choice); "
        "test ids 009001-010000 never reach training. Square crop (0, 10, 89, 99) of the 89x109 crops, "
        "bicubic antialiased resize to 64x64. CelebA is licensed for non-commercial research only, and so are "
        "these weights.",
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
    lines += ["", "Reproduce the table: `python -m sae.cli.evaluate --model assets/model --data ../shared/data/celeba10k`."]
    return "\n".join(lines) + "\n"


def write(model_dir: str | Path, run_dir: str | Path, notes: str = "") -> Path:
    """Write README.md into `model_dir` from its evaluation.json and the run's config and history."""
    model_dir, run_dir = Path(model_dir), Path(run_dir)
    evaluation = json.loads((model_dir / "evaluation.json").read_text())
    config = json.loads((run_dir / "train_config.json").read_text())
    if (model_dir / "config.json").exists():  # describe the model as shipped (its k_max may be capped below the run's)
        config["model"] = json.loads((model_dir / "config.json").read_text())
    history = _read_history(run_dir / "history.csv")
    base = None
    if config.get("init", "pca") not in ("pca", "random"):  # a fine-tuning run: describe the run it started from too
        base = _base_run(model_dir, Path(config["init"]).parent)
    path = model_dir / "README.md"
    path.write_text(render(evaluation, config, history, notes, base))
    return path


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
        (model_dir / "stage1_train_config.json", model_dir / "stage1_history.csv"),
        (init_parent / "train_config.json", init_parent / "history.csv"),
    ):
        if config_path.is_file():
            return json.loads(config_path.read_text()), _read_history(history_path)
    return None
