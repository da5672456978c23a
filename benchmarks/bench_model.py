"""Speed and size of a model on this machine: prints a Markdown table.

    python -m benchmarks.bench_model [--model assets/model] [--threads 2]

Targets (issue 2): weights <= 20 MB; encode+decode of one face <= 10 ms median on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import platform
import statistics
from pathlib import Path

import torch

from benchmarks.timing import timings_ms
from sae.app.pipeline import encode_face, quality_curve
from sae.zoo.hub import load_model


def median_ms(function, repeats: int, warmup: int = 10) -> float:
    return statistics.median(timings_ms(function, repeats, warmup))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model directory (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=200)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model = loaded.model
    weights = Path(args.model or "assets/model") / "model.safetensors"
    x = torch.rand(1, 3, model.image_size, model.image_size)
    k = min(32, model.k_max)

    @torch.inference_mode()
    def round_trip():
        model.decode(model.sparsify(model.encode(x), k))

    face = encode_face(model, x)
    batch = torch.rand(64, 3, model.image_size, model.image_size)

    @torch.inference_mode()
    def batch_round_trip():
        model.decode(model.sparsify(model.encode(batch), k))

    rows = [
        ("parameters", f"{sum(p.numel() for p in model.parameters()) / 1e6:.2f} M", ""),
        ("weights file", f"{weights.stat().st_size / 1e6:.1f} MB", "<= 20 MB"),
        (f"encode+decode, 1 face, k={k}, median", f"{median_ms(round_trip, args.repeats):.2f} ms", "<= 10 ms"),
        ("encode+decode, batch of 64, per face", f"{median_ms(batch_round_trip, 10, 2) / 64:.2f} ms", ""),
        (f"PSNR/SSIM curve, all {model.k_max} k, one face", f"{median_ms(lambda: quality_curve(model, face), 10, 2):.1f} ms", ""),
    ]
    print(f"{platform.processor() or platform.machine()}, {args.threads} threads, torch {torch.__version__}, model {loaded.source}\n")
    print("| measure | value | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
