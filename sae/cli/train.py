"""Train a sparse autoencoder on CelebA-64 or UTKFace-128 (the preset sets the size).

    python -m sae.cli.train --data ../shared/data/celeba10k --out runs/NAME [--preset tiny|default|default128]
    torchrun --standalone --nproc_per_node N -m sae.cli.train ...   # data-parallel, see sae.cli.distributed

The whole split lives on the device as uint8, so a batch is an index,
not a file read. Each batch draws its own k (log-uniform between 1 and k_max, so small k gets
as much training as large k): one model then serves every fidelity. `--train-k-max` draws past
the shipped k_max, up to code_dim, so every entry of a group's code is trained, not only those the
app's largest k keeps. An exponential moving average of the weights (`--ema-decay`) is what gets
validated and saved, so the checkpoint is not one noisy step. The checkpoint that scores best on
the validation split is saved with `save_pretrained`; `last.pt` makes a run resumable.

The loss is the batch's MSE by default; `--loss log` averages log(MSE) per image instead (the mean
PSNR that evaluation reports), which gives large-k batches, whose errors are small, as much pull as
small-k ones. `--init DIR` starts from a saved model, so one run can fine-tune another's checkpoint.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import plotly.graph_objects as go
import torch
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from torchvision.utils import save_image
from tqdm import tqdm

from sae.cli import distributed
from sae.core.data import EXTRA_SPLITS, load_split, to_float
from sae.core.inference import decode_batched, encode_batched
from sae.core.init import pca_init
from sae.core.metrics import psnr
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS, create_model, preset
from sae.zoo import files

VAL_BUDGETS = (160, 320, 640, 1280, 2560)  # each model validates the budgets its k_max reaches
INIT_FACES = 10_000  # faces the closed-form PCA start is fitted on (more changes it little and costs memory)


@dataclass
class TrainConfig:
    """Every option of a training run; saved as train_config.json so a model card can print the command back."""

    data: str
    out: str
    preset: str = "default"
    epochs: int = 100
    batch_size: int = 64
    lr: float = 1e-3
    grouped_lr_scale: float = 0.1  # the PCA-started grouped layers' learning rate, relative to the convolutions'
    init: str = "pca"  # "pca", "random", or a save_pretrained directory to fine-tune (see start_weights)
    ema_decay: float = 0.998  # validate and save an exponential moving average of the weights (0: the weights themselves)
    train_k_max: int | None = None  # k is drawn in 1..train_k_max (default: the model's k_max); see sample_k
    loss: str = "mse"  # "mse" or "log" (see reconstruction_loss)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.05
    seed: int = 0
    val_limit: int | None = None
    train_limit: int | None = None
    train_split: str = "train"
    cache_dir: str | None = ".cache"
    device: str = field(default_factory=lambda: "cuda" if torch.cuda.is_available() else "cpu")


def sample_k(k_max: int, generator: torch.Generator) -> int:
    """k drawn log-uniformly in [1, k_max]: each halving of k gets the same share of batches."""
    u = torch.rand((), generator=generator).item()
    return max(1, min(k_max, round(math.exp(u * math.log(k_max + 0.5)))))


def learning_rate(step: int, total_steps: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to `min_lr_ratio` (a pure function of the step, so resuming with a new
    epoch count just continues)."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = min(1.0, (step - config.warmup_steps) / max(1, total_steps - config.warmup_steps))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: SparseAutoencoder, config: TrainConfig) -> torch.optim.Adam:
    """Adam with the grouped linear layers on a smaller step: at the full rate Adam walks them off their PCA start
    (in a short probe at 1e-3), while the residual convolutions need the full rate. A fine-tuned start (`--init DIR`)
    descends from a PCA start, so it keeps the same split."""
    grouped = [model.encoder_weight, model.encoder_bias, model.decoder_bias]
    if model.decoder_weight is not None:
        grouped.append(model.decoder_weight)
    chosen = {id(p) for p in grouped}
    rest = [p for p in model.parameters() if id(p) not in chosen]
    scale = 1.0 if config.init == "random" else config.grouped_lr_scale  # a random start has nothing to protect
    return torch.optim.Adam([{"params": rest, "scale": 1.0}, {"params": grouped, "scale": scale}], lr=config.lr)


# The log loss's gradient is the MSE's divided by the MSE (1e-3 to 1e-2 for faces here), so 1e-3 brings it back to
# about the MSE loss's scale and the clip at norm 1 stays a safety net rather than a limit.
LOG_LOSS_SCALE = 1e-3


@torch.no_grad()
def start_weights(model: SparseAutoencoder, init: str, train_images: torch.Tensor) -> None:
    """Set a new run's first weights: "pca" fits the closed-form start on the training faces, "random" keeps the
    layers' own initialisation, and a directory written by `save_pretrained` is fine-tuned (its weights must fit the
    preset's architecture; k_max may differ, it only caps decoding)."""
    if init == "pca":
        pca_init(model, to_float(train_images[:INIT_FACES]))
    elif init != "random":
        if not Path(init, files.WEIGHTS).is_file():
            raise ValueError(f"--init {init}: expected 'pca', 'random' or a directory holding model.safetensors")
        source = SparseAutoencoder.from_pretrained(init, strict=True).state_dict()
        target = model.state_dict()
        names = source.keys() | target.keys()
        misfits = sorted(n for n in names if n not in source or n not in target or source[n].shape != target[n].shape)
        if misfits:
            raise ValueError(f"--init {init}: its weights do not fit this preset ({', '.join(misfits[:4])} ...)")
        model.load_state_dict(source)


def reconstruction_loss(model: SparseAutoencoder, x: torch.Tensor, k: int, kind: str = "mse") -> torch.Tensor:
    """The error of the image decoded from a k-sparse code.

    "mse": the batch's mean squared error. Its gradient shrinks as k grows (the error does), so small-k batches
    dominate training. "log": the mean over images of log(MSE), i.e. the mean PSNR up to sign and scale, which is
    what evaluation reports; every k and every image then pulls with the same relative weight.
    """
    recon = model(x, k, clamp=False)
    if kind == "mse":
        return F.mse_loss(recon, x)
    if kind == "log":
        per_image = (recon.float() - x.float()).square().mean(dim=(1, 2, 3))
        return LOG_LOSS_SCALE * per_image.clamp_min(1e-10).log().mean()
    raise ValueError(f"unknown loss {kind!r}: expected 'mse' or 'log'")


@torch.no_grad()
def validate(model: SparseAutoencoder, images: torch.Tensor, batch_size: int = 250) -> dict[int, float]:
    """Mean PSNR on `images` (uint8) at each validation budget of non-zeros."""
    model.eval()
    results = {}
    faces = to_float(images)
    codes = encode_batched(model, faces, batch_size)
    for budget in VAL_BUDGETS:
        k = budget // model.num_groups
        if 1 <= k <= model.k_max:
            recon = decode_batched(model, model.sparsify(codes, k), batch_size)
            results[budget] = float(psnr(faces.cpu(), recon.float().cpu()).mean())
    model.train()
    return results


def _plot_losses(rows: list[dict], path: Path) -> None:
    figure = go.Figure()
    log_scale = all(r["train_loss"] > 0 for r in rows)  # the log loss is negative
    figure.add_trace(go.Scatter(x=[r["epoch"] for r in rows], y=[r["train_loss"] for r in rows], name="train loss"))
    for budget in VAL_BUDGETS:
        key = f"val_psnr_{budget}"
        if key in rows[0]:
            figure.add_trace(go.Scatter(x=[r["epoch"] for r in rows], y=[r[key] for r in rows], name=f"val PSNR @{budget}", yaxis="y2"))
    figure.update_layout(
        xaxis_title="epoch",
        yaxis=dict(title="train loss", type="log" if log_scale else "linear"),
        yaxis2=dict(title="val PSNR (dB)", overlaying="y", side="right"),
    )
    figure.write_html(path, include_plotlyjs="cdn")


def train(config: TrainConfig) -> Path:
    """Run (or resume) training; returns the directory of the best checkpoint.

    Inside a process group (`distributed.process_group`) each rank trains on its shard with DDP and rank 0 alone
    validates and writes; `batch_size` is per rank.
    """
    out = Path(config.out)
    if config.init not in ("pca", "random"):
        if Path(config.init).resolve().is_relative_to(out.resolve()):
            raise ValueError(f"--init {config.init} lies inside --out {out}: that resumes the run, it does not fine-tune it")
        config = replace(config, init=str(Path(config.init).resolve()))  # train_config.json then names it from anywhere
    out.mkdir(parents=True, exist_ok=True)
    current = distributed.context()
    device = distributed.device_for(config.device, current)
    cuda = device.type == "cuda"
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)

    with distributed.main_first(current):
        size = preset(config.preset)["image_size"]
        train_images = load_split(config.data, config.train_split, config.cache_dir, config.train_limit, size).to(device)
        val_images = load_split(config.data, "val", config.cache_dir, config.val_limit, size).to(device)
    model = create_model(config.preset).to(device)
    if config.train_k_max is not None and not 1 <= config.train_k_max <= model.code_dim:
        raise ValueError(f"train_k_max must be in [1, code_dim={model.code_dim}], got {config.train_k_max}")
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    if not (out / "last.pt").exists():
        start_weights(model, config.init, train_images)  # the same on every rank, and DDP broadcasts rank 0's anyway
    optimizer = make_optimizer(model, config)
    ema = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True) if config.ema_decay else None

    steps_per_epoch = len(train_images) // (config.batch_size * current.world_size)
    total_steps = steps_per_epoch * config.epochs
    state = {"epoch": 0, "step": 0, "best": -math.inf, "history": []}
    last = out / "last.pt"
    if last.exists():
        checkpoint = torch.load(last, map_location=device, weights_only=False)
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        generator.set_state(checkpoint["generator"])
        state = checkpoint["state"]
        if ema is not None and "ema" in checkpoint:
            ema.load_state_dict(checkpoint["ema"])
        if current.is_main:
            print(f"resuming {last} at epoch {state['epoch']}")
    net = distributed.wrap(model, current, device)
    if current.is_main:
        (out / files.TRAIN_CONFIG).write_text(json.dumps(asdict(config) | {"model": preset(config.preset)}, indent=2))
        params = sum(p.numel() for p in model.parameters())
        print(
            f"{params / 1e6:.2f}M parameters, {len(train_images)} train / {len(val_images)} val faces on {device}"
            + (f", {current.world_size} processes" if current.active else "")
        )

    preview = to_float(val_images[:8])
    for epoch in range(state["epoch"], config.epochs):
        distributed.sync_generator(generator, current)
        order = distributed.shard(torch.randperm(len(train_images), generator=generator), current).to(device)
        start, total_loss = time.perf_counter(), 0.0
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=not current.is_main)
        for i in bar:
            x = to_float(train_images[order[i * config.batch_size : (i + 1) * config.batch_size]])
            if torch.rand((), generator=generator) < 0.5:
                x = x.flip(-1)
            if cuda:
                x = x.contiguous(memory_format=torch.channels_last)
            k = sample_k(config.train_k_max or model.k_max, generator)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(state["step"], total_steps, config) * group["scale"]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
                loss = reconstruction_loss(net, x, k, config.loss)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            if ema is not None:
                ema.update_parameters(model)
            state["step"] += 1
            total_loss += loss.item()
            bar.set_postfix(loss=f"{loss.item():.4f}", k=k)
        seconds = time.perf_counter() - start
        total_loss = distributed.mean(total_loss, current, device)
        if not current.is_main:  # rank 0 validates and writes; the others go on with the next epoch
            continue
        evaluated = model if ema is None else ema.module  # what gets validated, saved and previewed
        val = validate(evaluated, val_images)
        row = {
            "epoch": epoch + 1,
            "step": state["step"],
            "train_loss": total_loss / steps_per_epoch,
            "images_per_s": steps_per_epoch * config.batch_size * current.world_size / seconds,
            "seconds": seconds,
        } | {f"val_psnr_{b}": v for b, v in val.items()}
        state["history"].append(row)
        state["epoch"] = epoch + 1
        score = sum(val.values()) / len(val)
        print(
            f"epoch {epoch + 1}: loss {row['train_loss']:.5f}, {row['images_per_s']:.0f} images/s, "
            + ", ".join(f"val@{b} {v:.2f} dB" for b, v in val.items())
        )
        if score > state["best"]:
            state["best"] = score
            evaluated.save_pretrained(out / "best")
        with torch.no_grad():
            evaluated.eval()
            samples = [evaluated(preview, k=b // model.num_groups) for b in VAL_BUDGETS if b // model.num_groups <= model.k_max]
            evaluated.train()
        save_image(torch.cat([preview, *samples]).float(), out / f"samples_epoch{epoch + 1:03d}.png", nrow=len(preview))
        with open(out / files.HISTORY, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(state["history"][-1]))
            writer.writeheader()
            writer.writerows(state["history"])
        _plot_losses(state["history"], out / "history.html")
        torch.save(
            {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "generator": generator.get_state(), "state": state}
            | ({} if ema is None else {"ema": ema.state_dict()}),
            last,
        )
    return out / "best"


def main(argv: list[str] | None = None) -> None:
    """Command line: parse the options into a TrainConfig and train."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(prog="python -m sae.cli.train", description=__doc__, formatter_class=formatter)
    parser.add_argument(
        "--data", required=True, help="CelebA aligned crops (000001.jpg ...) or UTKFace (with train.txt, val.txt, test.txt)"
    )
    parser.add_argument("--out", required=True, help="run directory (resumes if it holds last.pt)")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--epochs", type=int, default=TrainConfig.epochs)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument(
        "--init",
        default=TrainConfig.init,
        help="pca: start from the closed-form PCA solution (sae.core.init); random; or a save_pretrained directory to fine-tune",
    )
    parser.add_argument(
        "--train-k-max",
        type=int,
        default=None,
        help="draw k in 1..N during training (default: the model's k_max; up to code_dim trains every entry of the code)",
    )
    parser.add_argument(
        "--loss", choices=["mse", "log"], default=TrainConfig.loss, help="log: mean log-MSE per image (the mean PSNR evaluation reports)"
    )
    parser.add_argument("--ema-decay", type=float, default=TrainConfig.ema_decay, help="validate and keep an EMA of the weights (0: off)")
    parser.add_argument("--grouped-lr-scale", type=float, default=TrainConfig.grouped_lr_scale)
    parser.add_argument("--train-limit", type=int, default=None, help="use only the first N training faces")
    parser.add_argument(
        "--train-split", choices=["train", *EXTRA_SPLITS], default=TrainConfig.train_split, help="train-full: every CelebA id but val/test"
    )
    parser.add_argument("--val-limit", type=int, default=None, help="use only the first N validation faces")
    parser.add_argument("--cache-dir", default=TrainConfig.cache_dir, help="where decoded uint8 splits are cached")
    parser.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch (1 keeps a shared machine responsive)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = {k: v for k, v in vars(args).items() if k != "threads"}
    config = TrainConfig(**{k: v for k, v in options.items() if v is not None or k in ("train_limit", "val_limit")})
    with distributed.process_group(config.device) as current:
        best = train(config)
    if current.is_main:
        print(f"best checkpoint: {best}")


if __name__ == "__main__":
    main()
