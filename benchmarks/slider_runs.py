"""The slider's browser ratio over several runs of the same code, each beside the app's handler timed just before it.

    python -m benchmarks.slider_runs [--runs 5] [--steps 150] [--models assets/models/utkface128] [--out docs/slider-runs.md]

One run of `benchmarks.browser` gives each model's median slider step as a multiple of the floor app's and that
ratio's sampling interval; it cannot say how the ratio moves with the machine. Here every run starts fresh servers
(the floor and the models, measured in turns as `benchmarks.browser` does) and is preceded by a probe: the app's
slider handler timed in this process on the app's torch threads. A shared machine's speed changes from one hour to
the next, and the floor's step hardly computes: the table puts each run's probe beside its ratio, to see whether the
ratio follows it. The JSON keeps every step's time of every run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

from app import TORCH_THREADS
from benchmarks import browser
from benchmarks import document as report
from benchmarks.bench_app import SLIDER_MOVE, handler_timings
from benchmarks.run import torch_threads
from benchmarks.serving import chromium_available
from sae.zoo import files

PROBE_REPEATS = 20


def probe_ms(model: str) -> float:
    """The app's slider handler for `model`, median ms in this process on the app's torch threads."""
    with torch_threads(TORCH_THREADS):
        return handler_timings(model, PROBE_REPEATS)[SLIDER_MOVE]["median_ms"]


def run(models: list[str], runs: int, steps: int, uploads: int) -> list[dict]:
    """`runs` runs, each: the probe of every model, then `benchmarks.browser`'s measurement from fresh servers (its
    summary, and every upload's and step's seconds)."""
    results = []
    for _ in range(runs):
        started = time.strftime("%H:%M")
        probes = {model: probe_ms(model) for model in models}
        times = browser.run(models, steps, uploads)
        results.append({"started": started, "probe_ms": probes, "rows": browser.summary(times), "seconds": times})
    return results


def markdown(results: list[dict]) -> str:
    """One row per run and model, then each model's ratios from lowest to highest."""
    lines = [
        "| run | started | model | handler in process (ms) | slider step median (ms) | floor's | ratio | its 95% interval |",
        "|---|---|---|---|---|---|---|---|",
    ]
    ratios: dict[str, list[float]] = {}
    for index, result in enumerate(results, start=1):
        for model, probe in result["probe_ms"].items():
            step = result["rows"][model]["step"]
            ratios.setdefault(model, []).append(step["median_ratio"])
            lines.append(
                f"| {index} | {result['started']} | {Path(model).name} | {probe:.1f} | {step['median_ms']:.0f} | "
                f"{step['floor_median_ms']:.0f} | {step['median_ratio']:.2f}x | {browser.interval(step)} |"
            )
    lines.append("")
    for model, values in ratios.items():
        lines.append(
            f"{Path(model).name}: median ratio over {len(values)} runs {min(values):.2f}x to {max(values):.2f}x "
            f"(median {statistics.median(values):.2f}x)."
        )
    return "\n".join(lines) + "\n"


def document(table: str, argv: list[str]) -> str:
    """The --out file: the command that made it, what it measures (this module's docstring), then the table."""
    return report.document("The slider's ratio to the floor, run after run", "benchmarks.slider_runs", __doc__, table, argv)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.slider_runs", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[str(path) for path in files.bundled_models().values()])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--steps", type=int, default=browser.STEPS, help="slider steps per app and run")
    parser.add_argument("--uploads", type=int, default=3, help="uploads per app and run")
    parser.add_argument("--out", default=None, help="also write the table here")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not chromium_available():
        raise SystemExit("benchmarks.slider_runs: Chromium not found (apt-get install chromium)")
    results = run(args.models, args.runs, args.steps, args.uploads)
    table = markdown(results)
    print(table)
    if args.out:
        Path(args.out).write_text(document(table, sys.argv[1:] if argv is None else argv))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
