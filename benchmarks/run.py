"""Everything side by side, in one run on one machine: prints one Markdown table (and optionally writes JSON).

    python -m benchmarks.run [--model DIR] [--data ../shared/data/celeba10k] [--limit N] [--threads 2] [--json PATH]

Rows: quality on the test split against PCA largest n and JPEG at the code's size (PSNR dB / SSIM, budgets 160-1280
non-zeros), encode/decode throughput at batch 1 and 64 against Pillow's JPEG encode/decode of a file of the code's
size, the app's per-interaction and curve latency, cold start, and training images/s of the default preset. These
machines are noisy, so each row that has a baseline or a target also gives the ratio (times) or the difference
(quality), which moves far less between runs than the raw figures. Without the data folder the quality rows are
skipped and the table says so; everything else needs only the model.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch

from benchmarks import bench_app
from benchmarks.timing import timings_ms
from sae.cli.evaluate import evaluate_model, fit_pca_cached, score
from sae.cli.train import TrainConfig, reconstruction_loss, sample_k
from sae.core.baselines import decode_jpeg, jpeg_at_size, jpeg_bytes, jpeg_fitting
from sae.core.data import load_split, to_float
from sae.core.faces import face_input, load_photo, locate_face
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS
from sae.core.rate import code_bytes
from sae.zoo.hub import load_model

DEFAULT_DATA = bench_app.REPO.parent / "shared" / "data" / "celeba10k"
BUDGETS = (160, 320, 640, 1280)
PARTS = ("quality", "throughput", "latency", "cold-start", "training")


@dataclass
class Row:
    """One line of the table: what was measured, our figure, the baseline's or target's, and how they compare."""

    part: str
    measure: str
    ours: str
    reference: str = ""
    comparison: str = ""


def cpu_model() -> str:
    """The CPU's marketing name (platform.processor() is often empty or just the architecture on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, str | int]:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "date": datetime.now().astimezone().isoformat(timespec="minutes"),
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "gpu": gpu,
    }


def ratio(ours: float, reference: float, what: str) -> str:
    """Our time as a multiple of the reference's: "2.00x JPEG's time per image" means half JPEG's speed."""
    return f"{ours / reference:.2f}x {what}"


def median_ms(function: Callable[[], object], repeats: int, warmup: int = 3) -> float:
    return statistics.median(timings_ms(function, repeats, warmup))


def quality_rows(
    model: SparseAutoencoder, data: Path, limit: int | None, train_limit: int | None, cache_dir: str | None
) -> tuple[list[Row], dict]:
    """Ours against PCA largest n (same non-zeros) and JPEG (same bytes) on the test split, as sae.cli.evaluate scores them."""
    test = to_float(load_split(data, "test", cache_dir, limit))
    train = to_float(load_split(data, "train", cache_dir, train_limit))
    budgets = [b for b in BUDGETS if 1 <= b // model.num_groups <= model.k_max]
    ours = evaluate_model(model, test, [b // model.num_groups for b in budgets])
    pca = fit_pca_cached(train, None, cache_dir)  # cached beside the data cache: the fit takes minutes on a CPU
    cell = lambda s: f"{s['psnr']:.2f} / {s['ssim']:.3f}"  # noqa: E731
    gap = lambda a, b: f"{a['psnr'] - b['psnr']:+.2f} dB, {a['ssim'] - b['ssim']:+.3f} SSIM"  # noqa: E731
    rows, raw = [], []
    for budget in budgets:
        k = budget // model.num_groups
        size = code_bytes(model.num_groups, model.code_dim, k)
        largest = score(test, pca.largest_n(test, budget))
        jpeg, sizes = jpeg_at_size(test, size)
        jpeg_score = score(test, jpeg) | {"mean_bytes": float(sizes.mean())}
        rows.append(Row("quality", f"{budget} non-zeros (k={k}) vs PCA largest n", cell(ours[k]), cell(largest), gap(ours[k], largest)))
        rows.append(
            Row(
                "quality",
                f"{budget} non-zeros vs JPEG at the code's {size} B (mean file {sizes.mean():.0f} B)",
                cell(ours[k]),
                cell(jpeg_score),
                gap(ours[k], jpeg_score),
            )
        )
        raw.append({"budget": budget, "k": k, "code_bytes": size, "model": ours[k], "pca_largest_n": largest, "jpeg": jpeg_score})
    return rows, {"test_faces": len(test), "train_faces": len(train), "rows": raw}


@torch.inference_mode()
def throughput_rows(model: SparseAutoencoder, face: torch.Tensor, k: int, repeats: int) -> tuple[list[Row], dict]:
    """Encode (to a k-sparse code) and decode, one face and 64 at once, against Pillow encoding and decoding a JPEG
    file of the code's size of the same face: the format a photo would otherwise be shared in. JPEG's encode is one
    call at the quality that fits (the search for that quality is not counted) and has no batched form."""
    size = code_bytes(model.num_groups, model.code_dim, k)
    pixels = (face[0].clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    data, quality = jpeg_fitting(pixels, size)
    jpeg_encode = median_ms(lambda: jpeg_bytes(pixels, quality), repeats)
    jpeg_decode = median_ms(lambda: decode_jpeg(data), repeats)
    raw: dict = {"k": k, "jpeg_quality": quality, "jpeg_bytes": len(data), "jpeg_encode_ms": jpeg_encode, "jpeg_decode_ms": jpeg_decode}
    rows = []
    per_second = lambda ms: f"{1000 / ms:.0f} ({ms:.2f} ms)"  # noqa: E731
    jpeg = f"JPEG q{quality}, {len(data)} B"
    for batch in (1, 64):
        x = face.expand(batch, -1, -1, -1).contiguous()
        sparse = model.sparsify(model.encode(x), k)
        calls = repeats if batch == 1 else max(3, repeats // 10)  # a batch of 64 takes tens of times longer
        encode = median_ms(lambda x=x: model.sparsify(model.encode(x), k), calls) / batch
        decode = median_ms(lambda s=sparse: model.decode(s), calls) / batch
        raw[f"encode_ms_per_face_batch{batch}"], raw[f"decode_ms_per_face_batch{batch}"] = encode, decode
        rows += [
            Row(
                "throughput",
                f"encode, batch {batch}, k={k}: images/s (ms per image)",
                per_second(encode),
                f"{per_second(jpeg_encode)}, {jpeg}",
                ratio(encode, jpeg_encode, "JPEG's time per image"),
            ),
            Row(
                "throughput",
                f"decode, batch {batch}: images/s (ms per image)",
                per_second(decode),
                f"{per_second(jpeg_decode)}, {jpeg}",
                ratio(decode, jpeg_decode, "JPEG's time per image"),
            ),
        ]
    return rows, raw


def latency_rows(loaded, k: int, repeats: int) -> tuple[list[Row], dict]:
    """The app's handlers (bench_app), median and p90, against the interaction targets where there is one."""
    rows, raw = [], {}
    for name, times, target in bench_app.interaction_timings(loaded, k, repeats):
        median, p90 = statistics.median(times), sorted(times)[int(0.9 * (len(times) - 1))]
        reference = "" if target is None else f"{target:.0f} ms target"
        comparison = "" if target is None else ratio(median, target, "the target")
        rows.append(Row("latency", name, f"{median:.1f} ms (p90 {p90:.1f})", reference, comparison))
        raw[name] = {"median_ms": median, "p90_ms": p90}
    return rows, raw


def cold_start_rows(model: str | None) -> tuple[list[Row], dict]:
    seconds = bench_app.start_to_serving_s(model)
    target = bench_app.START_TARGET_S
    row = Row("cold start", "process start to serving (offline)", f"{seconds:.2f} s", f"{target:.0f} s target")
    row.comparison = ratio(seconds, target, "the target")
    return [row], {"seconds": seconds}


def training_images_per_s(preset: str, batch_size: int, steps: int, device: torch.device) -> float:
    """Images/s of `steps` optimiser steps of `preset` at a log-uniform k (sae.cli.train's loss, clipping and Adam; after one
    untimed step). Random pixels: the cost of a step does not depend on the faces, so this needs no data."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = SparseAutoencoder(**PRESETS[preset]).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig.lr)
    images = torch.randint(0, 256, (batch_size, 3, model.image_size, model.image_size), dtype=torch.uint8, generator=generator).to(device)
    cuda = device.type == "cuda"

    def step() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            loss = reconstruction_loss(model, to_float(images), sample_k(model.k_max, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def training_rows(preset: str, batch_size: int, steps: int) -> tuple[list[Row], dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rate = training_images_per_s(preset, batch_size, steps, device)
    measure = f"training, {preset} preset, batch {batch_size}, {steps} steps on {device.type} (images/s)"
    return [Row("training", measure, f"{rate:.1f}")], {"preset": preset, "batch_size": batch_size, "steps": steps, "images_per_s": rate}


def markdown(info: dict, rows: list[Row], skipped: dict[str, str]) -> str:
    lines = [
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, torch {info['torch']} with {info['torch_threads']} threads, "
        f"GPU: {info['gpu']}; model {info['model']}",
        "",
        "| part | measure | ours | baseline or target | ours vs it |",
        "|---|---|---|---|---|",
        *(f"| {r.part} | {r.measure} | {r.ours} | {r.reference} | {r.comparison} |" for r in rows),
    ]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{part} ({why})" for part, why in skipped.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="model source (default: bundled)")
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="folder of CelebA aligned crops (quality rows)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test faces (quick runs)")
    parser.add_argument("--train-limit", type=int, default=None, help="fit PCA on the first N training faces (quick runs)")
    parser.add_argument("--cache-dir", default=".cache", help="decoded splits and the PCA fit, shared with sae.cli.evaluate")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per latency and throughput figure")
    parser.add_argument("--k", type=int, default=32, help="k per group for throughput and latency")
    parser.add_argument("--train-preset", choices=sorted(PRESETS), default="default")
    parser.add_argument("--train-batch", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--skip", nargs="*", choices=PARTS, default=[], help="parts not to run")
    parser.add_argument("--json", default=None, help="also write every figure here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    model = loaded.model.eval()
    k = min(args.k, model.k_max)
    info = machine() | {"model": f"{loaded.source} ({loaded.note})"}
    skipped = {part: "--skip" for part in args.skip}
    data = Path(args.data)
    if "quality" not in skipped and not data.is_dir():
        skipped["quality"] = f"no data at {data}"
    photo = load_photo(bench_app.PHOTO)
    face = face_input(photo, locate_face(photo).box)

    parts: dict[str, Callable[[], tuple[list[Row], dict]]] = {
        "quality": lambda: quality_rows(model, data, args.limit, args.train_limit, args.cache_dir),
        "throughput": lambda: throughput_rows(model, face, k, args.repeats),
        "latency": lambda: latency_rows(loaded, k, args.repeats),
        "cold-start": lambda: cold_start_rows(args.model),
        "training": lambda: training_rows(args.train_preset, args.train_batch, args.train_steps),
    }
    rows: list[Row] = []
    result: dict = {"machine": info, "skipped": skipped}
    for part, measure in parts.items():
        if part not in skipped:
            part_rows, result[part] = measure()
            rows += part_rows
    result["rows"] = [asdict(r) for r in rows]
    print(markdown(info, rows, skipped))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
