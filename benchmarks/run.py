"""Everything side by side, every bundled model, in one run on one machine: one Markdown table (and JSON).

    python -m benchmarks.run [--models DIR ...] [--parts quality throughput app browser training load] [--out docs/benchmarks.md]

Rows: quality on each model's test split against PCA largest n and JPEG at the code's size; encode/decode throughput
at batch 1 and 64 against Pillow's JPEG of the code's size, and the 128x128 speed targets on one torch thread (what
each of the app's handlers gets) and on the targets' two cores; the app's handlers, the server's CPU per slider move
against the floor app and the 40 ms target (and with the handler's work replayed) and the text a move sends, start
time against the floor app's; slider and upload latency in a real browser against the floor app's, and the slider's
with the handler's work replayed (`benchmarks.replay_app`); training images/s per preset; optionally the classroom
load (30 students, 2 minutes, against the floor app and each model served first, each class simulated from a fresh
interpreter). These machines are noisy, so each figure with a baseline also gives the ratio or the difference measured
in the same run, which moves far less between runs than the raw figures. Parts whose data or browser is missing are
skipped and the table says so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

import torch

from benchmarks import bench_app, browser, load
from benchmarks.document import command_line, verdict
from benchmarks.serving import PHOTO, chromium_available, percentile, server_stack
from benchmarks.timing import timings_ms
from sae.app.pipeline import curve_ks, encode_face, quality_curve
from sae.cli.evaluate import evaluate_model, fit_pca_cached
from sae.cli.results import cell
from sae.cli.train import TrainConfig, reconstruction_loss, sample_k
from sae.core.baselines import decode_jpeg, jpeg_at_size, jpeg_bytes, jpeg_fitting
from sae.core.data import load_split, preprocess, to_float
from sae.core.faces import load_photo, locate_face
from sae.core.metrics import score
from sae.core.presets import PRESETS, create_model
from sae.core.rate import code_bytes
from sae.privacy.scheme import default_k
from sae.zoo import files
from sae.zoo.files import DataNote
from sae.zoo.hub import load_model

DATA = {
    "celeba": files.ASSETS.parents[1] / "shared" / "data" / "celeba10k",
    "utkface": files.ASSETS.parents[1] / "shared" / "data" / "utkface200",
}
BUDGETS = (320, 640, 1280, 2560)
PARTS = ("quality", "throughput", "app", "browser", "training", "load")
ROUND_TRIP, APP_CURVE, EVERY_K_CURVE = "encode + decode one face", "the app's quality curve", "the quality curve at every k"
# The 128x128 model's targets. The app draws its curve through `curve_ks`; the curve at every k, which the app never
# computes, is measured beside it for reference and compared with the app's.
SPEED_TARGETS_MS = {ROUND_TRIP: 10.0, APP_CURVE: 300.0}
TARGET_CORES = 2  # the speed targets are for a 2-core machine (a free Space)
SLIDER_RATIO_TARGETS = (1.5, 2.0)  # the slider step's median and p90, as multiples of the floor app's


@dataclass
class Row:
    part: str
    model: str
    measure: str
    ours: str
    reference: str = ""
    comparison: str = ""


def target_threads() -> list[int]:
    """The thread counts the speed targets are measured at: one (what each of the app's handlers gets) and the targets'
    own TARGET_CORES (fewer on a smaller machine, never more on a bigger one); once when they are the same."""
    return sorted({1, min(TARGET_CORES, os.cpu_count() or 1)})


@contextmanager
def torch_threads(threads: int) -> Iterator[None]:
    """torch's intra-op threads set to `threads` inside the block, restored after it."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    status = Path("/proc/cpuinfo")
    if status.is_file():
        cpu = next((line.split(":", 1)[1].strip() for line in status.read_text().splitlines() if line.startswith("model name")), cpu)
    return {
        "date": datetime.now().astimezone().isoformat(timespec="minutes"),
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "server": server_stack(),
    }


def _name(model_dir: str) -> str:
    return Path(model_dir).name


def quality_rows(model_dir: str, data: Path, cache_dir: str, limit: int | None) -> tuple[list[Row], dict]:
    """Ours against PCA largest n (same non-zeros) and JPEG (same bytes) on the model's test split."""
    model = load_model(model_dir, fallback=None).model
    size = model.image_size
    test = to_float(load_split(data, "test", cache_dir, limit, size))
    train = to_float(load_split(data, "train", cache_dir, None, size))
    budgets = [b for b in BUDGETS if 1 <= b // model.num_groups <= model.code_dim]
    ours = evaluate_model(model, test, [b // model.num_groups for b in budgets])
    pca = fit_pca_cached(train, None, cache_dir, f"{DataNote.read(Path(model_dir)).dataset}{size}")
    gap = lambda a, b: f"{a['psnr'] - b['psnr']:+.2f} dB, {a['ssim'] - b['ssim']:+.3f} SSIM"  # noqa: E731
    rows, raw = [], []
    for budget in budgets:
        k = budget // model.num_groups
        largest = score(test, pca.largest_n(test, budget))
        jpeg, sizes = jpeg_at_size(test, code_bytes(model.num_groups, model.code_dim, k))
        jpeg_score = score(test, jpeg) | {"mean_bytes": float(sizes.mean())}
        name = _name(model_dir)
        rows.append(
            Row("quality", name, f"{budget} non-zeros (k={k}) vs PCA largest n", cell(ours[k]), cell(largest), gap(ours[k], largest))
        )
        rows.append(
            Row(
                "quality",
                name,
                f"{budget} non-zeros vs JPEG at the code's size (mean file {sizes.mean():.0f} B)",
                cell(ours[k]),
                cell(jpeg_score),
                gap(ours[k], jpeg_score),
            )
        )
        raw.append({"budget": budget, "k": k, "model": ours[k], "pca_largest_n": largest, "jpeg": jpeg_score})
    return rows, {"test_faces": len(test), "rows": raw}


@torch.inference_mode()
def throughput_rows(model_dir: str, repeats: int) -> tuple[list[Row], dict]:
    """Encode to a k-sparse code and decode, one face and 64 at once, against Pillow encoding and decoding a JPEG of the
    code's size of the same face; and the two speed targets of the 128x128 model."""
    model = load_model(model_dir, fallback=None).model
    name, k = _name(model_dir), default_k(model.k_max)
    photo = load_photo(PHOTO)
    crop = preprocess(photo, locate_face(photo).box, model.image_size)
    face, pixels = to_float(crop)[None], crop.permute(1, 2, 0).numpy()
    data, quality = jpeg_fitting(pixels, code_bytes(model.num_groups, model.code_dim, k))
    jpeg_encode = statistics.median(timings_ms(lambda: jpeg_bytes(pixels, quality), repeats))
    jpeg_decode = statistics.median(timings_ms(lambda: decode_jpeg(data), repeats))
    rows, raw = [], {"k": k, "jpeg_bytes": len(data), "jpeg_encode_ms": jpeg_encode, "jpeg_decode_ms": jpeg_decode}
    per_second = lambda ms: f"{1000 / ms:.0f} ({ms:.2f} ms)"  # noqa: E731
    for batch in (1, 64):
        x = face.expand(batch, -1, -1, -1).contiguous()
        sparse = model.sparsify(model.encode(x), k)
        calls = repeats if batch == 1 else max(3, repeats // 10)
        encode = statistics.median(timings_ms(lambda x=x: model.sparsify(model.encode(x), k), calls)) / batch
        decode = statistics.median(timings_ms(lambda s=sparse: model.decode(s), calls)) / batch
        raw[f"encode_ms_batch{batch}"], raw[f"decode_ms_batch{batch}"] = encode, decode
        for what, ours, jpeg in (("encode", encode, jpeg_encode), ("decode", decode, jpeg_decode)):
            rows.append(
                Row(
                    "throughput",
                    name,
                    f"{what}, batch {batch}, k={k}: images/s (ms per image)",
                    per_second(ours),
                    f"{per_second(jpeg)}, JPEG q{quality} {len(data)} B",
                    f"{ours / jpeg:.2f}x JPEG's time",
                )
            )
    encoded = encode_face(model, crop)
    counts = {ROUND_TRIP: "", APP_CURVE: f" ({len(curve_ks(model.k_max))} k)", EVERY_K_CURVE: f" ({model.k_max} k, reference)"}
    for threads in target_threads():
        with torch_threads(threads):
            round_trip = timings_ms(lambda: model.decode(model.sparsify(model.encode(face), k)), repeats)
            curve = timings_ms(lambda: quality_curve(model, encoded), max(5, repeats // 3))
            every_k = timings_ms(lambda: quality_curve(model, encoded, list(range(1, model.k_max + 1))), max(5, repeats // 3))
        app_curve = statistics.median(curve)
        for measure, times in ((ROUND_TRIP, round_trip), (APP_CURVE, curve), (EVERY_K_CURVE, every_k)):
            median = statistics.median(times)
            raw[f"{measure}, {threads} threads"] = {"median_ms": median, "p90_ms": percentile(times, 90)}
            if measure in SPEED_TARGETS_MS:
                target = SPEED_TARGETS_MS[measure]
                against = (f"{target:.0f} ms target (128x128, {TARGET_CORES} cores)", f"{median / target:.2f}x the target")
            else:
                against = (f"the app's curve {app_curve:.1f} ms", f"{median / app_curve:.2f}x the app's curve")
            threads_text = f"{threads} torch thread{'s' if threads > 1 else ''}"
            rows.append(Row("throughput", name, f"{measure}{counts[measure]}, {threads_text}: median ms", f"{median:.1f}", *against))
    return rows, raw


def app_rows(models: list[str], repeats: int, moves: int, starts: int) -> tuple[list[Row], dict]:
    result = bench_app.run(models, repeats, moves, starts)
    rows = []
    for model, steps in result["handlers"].items():
        rows += [
            Row("app", _name(model), f"handler: {step}", f"{t['median_ms']:.1f} ms (p90 {t['p90_ms']:.1f})") for step, t in steps.items()
        ]
    floor = result["server_cpu"]["floor"]["cpu_ms_per_move"]
    for model, cpu in result["server_cpu"].items():
        if model == "floor":
            continue
        ours, replayed = cpu["cpu_ms_per_move"], result["server_cpu_replayed"][model]["cpu_ms_per_move"]
        rows += [
            Row(
                "app",
                _name(model),
                f"server CPU per slider move ({moves} moves)",
                f"{ours:.1f} ms",
                f"floor app {floor:.1f} ms; target {bench_app.SERVER_CPU_TARGET_MS:.0f} ms",
                f"{ours / floor:.2f}x the floor; {ours / bench_app.SERVER_CPU_TARGET_MS:.2f}x the target",
            ),
            Row(
                "app",
                _name(model),
                f"server CPU per slider move with the handler's work replayed: Gradio carrying our outputs ({moves} moves)",
                f"{replayed:.1f} ms",
                f"floor app {floor:.1f} ms",
                f"{replayed / floor:.2f}x the floor; the handler's work: {ours - replayed:.1f} ms",
            ),
            Row(
                "app",
                _name(model),
                "sent to the browser per slider move: panels (inline images, not the model input), chart, notes",
                f"{cpu['text_kb_per_move']:.0f} kB",
            ),
        ]
    start = result["start"]
    rows.append(
        Row(
            "app",
            "all bundled",
            f"process start to serving (median of {starts})",
            f"{start['ours_s']:.2f} s",
            f"floor app {start['floor_s']:.2f} s",
            f"{start['ratio']:.2f}x the floor (target {bench_app.START_RATIO_TARGET}x: "
            f"{verdict(start['ratio'], bench_app.START_RATIO_TARGET)})",
        )
    )
    for served, cost in result["analytics"].items():
        rows.append(
            Row(
                "app",
                "all bundled",
                f"Gradio's analytics summary, CPU per event after {int(served):,} events (run after every event)",
                f"{cost['ours_ms']:.3f} ms",
                f"Gradio's defaults {cost['gradio_ms']:.2f} ms",
                f"{cost['gradio_ms'] - cost['ours_ms']:.2f} ms saved per event",
            )
        )
    return rows, result


def browser_rows(models: list[str], steps: int, uploads: int) -> tuple[list[Row], dict]:
    summary = browser.summary(browser.run(models, steps, uploads, replay=True))
    median_target, p90_target = SLIDER_RATIO_TARGETS
    rows = []
    for model in models:
        step, upload, replayed = summary[model]["step"], summary[model]["upload"], summary[model + browser.REPLAYED]["step"]
        rows += [
            Row(
                "browser",
                _name(model),
                f"slider step to new numbers, median / p90 ({step['n']} steps)",
                f"{step['median_ms']:.0f} / {step['p90_ms']:.0f} ms",
                f"floor app {step['floor_median_ms']:.0f} / {step['floor_p90_ms']:.0f} ms",
                f"{step['median_ratio']:.2f}x (95% interval {browser.interval(step)}) / {step['p90_ratio']:.2f}x (targets "
                f"{median_target}x / {p90_target:g}x: {verdict(step['median_ratio'], median_target)} / "
                f"{verdict(step['p90_ratio'], p90_target)})",
            ),
            Row(
                "browser",
                _name(model),
                f"slider step with the handler's work replayed: carrying our outputs alone, median / p90 ({replayed['n']} steps)",
                f"{replayed['median_ms']:.0f} / {replayed['p90_ms']:.0f} ms",
                f"floor app {replayed['floor_median_ms']:.0f} / {replayed['floor_p90_ms']:.0f} ms",
                f"{replayed['median_ratio']:.2f}x (95% interval {browser.interval(replayed)}) / {replayed['p90_ratio']:.2f}x "
                "(no target: no faster handler removes it)",
            ),
            Row(
                "browser",
                _name(model),
                f"upload to first panels, median ({upload['n']} uploads)",
                f"{upload['median_ms']:.0f} ms",
                f"floor app {upload['floor_median_ms']:.0f} ms",
                f"{upload['median_excess_ms']:+.0f} ms (target: within 1000 ms)",
            ),
        ]
    return rows, summary


def training_images_per_s(preset: str, batch_size: int, steps: int, device: torch.device) -> float:
    """Images/s of `steps` optimiser steps of `preset` at a log-uniform k (sae.cli.train's loss, clipping and Adam; after
    one untimed step). Random pixels: a step's cost does not depend on the faces."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    model = create_model(preset).to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=TrainConfig.lr)
    images = torch.randint(0, 256, (batch_size, 3, model.image_size, model.image_size), dtype=torch.uint8, generator=generator).to(device)

    def step() -> None:
        loss = reconstruction_loss(model, to_float(images), sample_k(model.k_max, generator))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def training_rows(presets: list[str], batch_size: int, steps: int) -> tuple[list[Row], dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    rows, raw = [], {}
    for preset in presets:
        rate = raw[preset] = training_images_per_s(preset, batch_size, steps, device)
        rows.append(
            Row("training", preset, f"training steps, batch {batch_size}, {steps} steps on {device.type} (images/s)", f"{rate:.1f}")
        )
    return rows, raw


def load_summary(result: load.LoadResult) -> dict:
    """A class's slider-move percentiles, errors, CPU per request and memory verdict (what the table and JSON keep)."""
    p50, p95, p99 = result.percentiles_ms("/update")
    flat, memory = result.memory_flat
    return {
        "errors": len(result.errors),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "p95_by_quarter_ms": result.p95_by_part_ms("/update"),
        "cpu_ms_per_request": result.cpu_ms_per_request,
        "memory": result.memory,
        "memory_flat": flat,
        "memory_verdict": result.memory_verdict,
        "memory_text": memory,
    }


def _errors_and_quarters(summary: dict) -> str:
    """A class's errors and its slider p95 in each quarter of the run (a noisy spell or a slowing class shows where)."""
    return f"{summary['errors']} errors; p95 in each quarter of the run {load.milliseconds(summary['p95_by_quarter_ms'])} ms"


def load_rows_of_each(models: list[str], students: int, duration: float) -> tuple[list[Row], dict]:
    """The same class against the floor app, then against each model served first; each class in a fresh interpreter."""
    measure = f"{students} students x {duration:g} s: slider move p50 / p95 / p99"
    floor = load_summary(load.run_fresh(None, students, duration))
    rows = [
        Row("load", "floor app", measure, _percentiles(floor), "", _errors_and_quarters(floor)),
        Row("load", "floor app", "server CPU per request (students share the cores)", f"{floor['cpu_ms_per_request']:.1f} ms"),
    ]
    raw = {"floor": floor}
    for model in models:
        ours = raw[_name(model)] = load_summary(load.run_fresh(model, students, duration))
        reference = f"floor app {floor['p95_ms']:.0f} / {floor['p99_ms']:.0f} ms; target p95 <= 500 ms, p99 <= 1000 ms"
        rows += [
            Row("load", _name(model), measure, _percentiles(ours), reference, _errors_and_quarters(ours)),
            Row("load", _name(model), "server CPU per request (students share the cores)", f"{ours['cpu_ms_per_request']:.1f} ms"),
            Row(
                "load",
                _name(model),
                "server memory after warm-up",
                ours["memory_verdict"],
                ours["memory_text"],
            ),
        ]
    return rows, raw


def _percentiles(summary: dict) -> str:
    return f"{load.milliseconds((summary['p50_ms'], summary['p95_ms'], summary['p99_ms']))} ms"


def markdown(info: dict, rows: list[Row], skipped: dict[str, str]) -> str:
    lines = [
        f"{info['date']}; {info['cpu']}, {info['cores']} cores, torch {info['torch']} ({info['torch_threads']} threads in this "
        f"process); apps served by {info['server']}",
        "",
        "| part | model | measure | ours | baseline, floor or target | ours vs it |",
        "|---|---|---|---|---|---|",
        *(f"| {r.part} | {r.model} | {r.measure} | {r.ours} | {r.reference} | {r.comparison} |" for r in rows),
    ]
    if skipped:
        lines += ["", "Skipped: " + "; ".join(f"{part} ({why})" for part, why in skipped.items()) + "."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[str(path) for path in files.bundled_models().values()])
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=[p for p in PARTS if p != "load"])
    parser.add_argument("--data", default=None, help="dataset folder for every model's quality rows (default: each model's own)")
    parser.add_argument("--limit", type=int, default=None, help="score only the first N test faces")
    parser.add_argument("--cache-dir", default=".cache")
    parser.add_argument("--threads", type=int, default=1, help="torch threads in this process (the app uses 1 per handler)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--moves", type=int, default=40, help="slider moves for the server's CPU per move")
    parser.add_argument("--starts", type=int, default=bench_app.STARTS)
    parser.add_argument("--steps", type=int, default=browser.STEPS, help="browser slider steps per app")
    parser.add_argument("--uploads", type=int, default=5, help="browser uploads per app")
    parser.add_argument("--train-presets", nargs="+", default=["default", "default128", "tiny"], choices=sorted(PRESETS))
    parser.add_argument("--train-batch", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--train-steps", type=int, default=3)
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--duration", type=float, default=120.0)
    parser.add_argument("--json", default=None, help="also write every figure here")
    parser.add_argument("--out", default=None, help="also write the table here (docs/benchmarks.md)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    info = machine() | {"models": args.models}
    skipped, rows, result = {}, [], {"machine": info}
    measures: dict[str, Callable[[], tuple[list[Row], dict]]] = {
        "app": lambda: app_rows(args.models, args.repeats, args.moves, args.starts),
        "browser": lambda: browser_rows(args.models, args.steps, args.uploads),
        "training": lambda: training_rows(args.train_presets, args.train_batch, args.train_steps),
        "load": lambda: load_rows_of_each(args.models, args.students, args.duration),
    }
    for part in args.parts:
        if part == "browser" and not chromium_available():
            skipped[part] = "no Chromium"
            continue
        if part in ("quality", "throughput"):
            for model in args.models:
                data = Path(args.data) if args.data else DATA.get(DataNote.read(Path(model)).dataset)
                if part == "quality" and (data is None or not data.is_dir()):
                    skipped[f"quality of {_name(model)}"] = f"no data at {data}"
                    continue
                part_rows, result[f"{part} {_name(model)}"] = (
                    quality_rows(model, data, args.cache_dir, args.limit) if part == "quality" else throughput_rows(model, args.repeats)
                )
                rows += part_rows
            continue
        part_rows, result[part] = measures[part]()
        rows += part_rows
    result["rows"] = [asdict(r) for r in rows]
    table = markdown(info, rows, skipped)
    print(table)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    if args.out:
        command = command_line("benchmarks.run", sys.argv[1:] if argv is None else argv)
        Path(args.out).write_text(f"# Benchmarks\n\nWritten by `{command}`.\n\n" + table)
    return result


if __name__ == "__main__":
    main()
