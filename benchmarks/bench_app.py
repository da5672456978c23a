"""Latency of the app's interactions on this machine (server time, no browser): prints a Markdown table.

    python -m benchmarks.bench_app [--model assets/model] [--threads 2] [--repeats 30]

Targets (issue 4): one slider interaction (decode at k, attacks, metrics) <= 100 ms median on 2 CPU cores;
the whole PSNR/SSIM-vs-k curve <= 300 ms; process start to serving <= 10 s with no network.
"""

from __future__ import annotations

import argparse
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import torch

from benchmarks.timing import timings_ms
from sae.hub import load_model
from sae.pipeline import ShareSettings, privacy_panels
from sae.ui import Handlers

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "astronaut.png"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_to_serving_s(model: str | None, timeout: float = 120.0) -> float:
    """Seconds from spawning `python app.py` (offline) until its page answers HTTP 200."""
    port = _free_port()
    env = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"} | ({"SAE_MODEL": model} if model else {})
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while time.perf_counter() - start < timeout:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - start
            except OSError:
                if process.poll() is not None:
                    raise RuntimeError("the app exited before serving") from None
                time.sleep(0.1)
        raise RuntimeError("the app did not serve in time")
    finally:
        process.terminate()
        process.wait(10)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", default=None, help="model source (default: bundled)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--k", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    loaded = load_model(args.model)
    handlers = Handlers(loaded)
    face = handlers.prepare(str(PHOTO))[0]
    curve = handlers.curve(face, args.k)[0]
    controls = (1.0, True, 2.0, True, True, 0.5)
    rows = [
        ("prepare: detect, crop, encode (per upload)", timings_ms(lambda: handlers.prepare(str(PHOTO)), args.repeats)),
        ("privacy panels: ambiguate, reveal, 3 attacks, 1 batched decode, PSNR/SSIM", None),
        ("slider interaction, magnitude attack (handler, incl. images and chart)", None),
        ("slider interaction, re-encode attack (handler)", None),
        (
            "whole curve: all k in one decode + metrics (handler)",
            timings_ms(lambda: handlers.curve(face, args.k), max(5, args.repeats // 3)),
        ),
    ]
    rows[1] = (rows[1][0], timings_ms(lambda: privacy_panels(loaded.model, face, ShareSettings(k=args.k)), args.repeats))
    rows[2] = (rows[2][0], timings_ms(lambda: handlers.update(face, curve, args.k, *controls, "magnitude"), args.repeats))
    rows[3] = (rows[3][0], timings_ms(lambda: handlers.update(face, curve, args.k, *controls, "re-encode"), args.repeats))
    start = start_to_serving_s(args.model)

    print(
        f"Model: {loaded.source} ({loaded.note}); k={args.k}; torch threads {args.threads}; {platform.processor() or platform.machine()}\n"
    )
    print("| step | median ms | p90 ms |")
    print("|---|---:|---:|")
    for name, times in rows:
        ordered = sorted(times)
        print(f"| {name} | {statistics.median(times):.1f} | {ordered[int(0.9 * (len(ordered) - 1))]:.1f} |")
    print(f"| process start to serving (offline) | {start * 1000:.0f} | |")


if __name__ == "__main__":
    main()
