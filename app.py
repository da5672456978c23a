"""Gradio entry point (Hugging Face Spaces runs this file): load the models, build the UI, launch.

python app.py [--model HUB_ID_OR_DIR ...] [--host 0.0.0.0] [--port 7860] [--face-cache N]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reporting
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr
import torch

from sae.app.face_cache import FACE_CACHE_SIZE
from sae.app.gate import WORKERS
from sae.app.handlers import Handlers
from sae.app.memory import TRIM_INTERVAL_S, MemoryTrimmer
from sae.app.models import ServedModel, load_served
from sae.app.ui import CSS, PAGE_JS, build, theme

MAX_UPLOAD = "20mb"  # Gradio refuses bigger uploads before they reach a handler
# WORKERS (sae.app.gate) bounds all model work together, the queued events' and the slider's. QUEUE_SIZE caps the queued
# events waiting beyond those, so a flood of uploads is told "queue full" at once instead of waiting minutes
# (docs/benchmarks.md: a class of 30 at these settings).
QUEUE_SIZE = 64
TORCH_THREADS = 1  # per handler: WORKERS handlers already use the cores, and a second thread on tiny tensors only spins
# After every event Gradio's queue rebuilds a pandas summary of its recorded events (up to GRADIO_ANALYTICS_MAX_EVENTS)
# for its monitoring page, even when the page is off (as `serve` sets it), so each event costs more the longer a class
# runs: keep few records and rebuild the summary once per thousand events. The queue reads these when it is made; an
# operator's values win.
QUEUE_ANALYTICS = {"GRADIO_ANALYTICS_MAX_EVENTS": "1000", "GRADIO_ANALYTICS_CACHE_FREQUENCY": "1000"}


def queue(demo: gr.Blocks) -> gr.Blocks:
    """The app's queue on `demo`: WORKERS handlers at a time, QUEUE_SIZE waiting, QUEUE_ANALYTICS (set in this
    process's environment unless already set)."""
    for name, value in QUEUE_ANALYTICS.items():
        os.environ.setdefault(name, value)
    return demo.queue(default_concurrency_limit=WORKERS, max_size=QUEUE_SIZE)


def serve(
    models: list[ServedModel],
    host: str,
    port: int,
    face_cache: int = FACE_CACHE_SIZE,
    block: bool = True,
    handlers: Handlers | None = None,
    trim_interval_s: float | None = TRIM_INTERVAL_S,
    failures: list[str] | None = None,
) -> gr.Blocks:
    """Build the UI around the served models, queue it and launch; block=False returns once serving (benchmarks, tests).

    While it serves, a `MemoryTrimmer` (sae.app.memory) hands freed heap memory back every `trim_interval_s` seconds
    (None: never), kept as `demo.memory_trimmer` so a caller can stop it."""
    torch.set_num_threads(TORCH_THREADS)
    demo = build(models, failures, face_cache, handlers)
    queue(demo)
    trimmer = MemoryTrimmer(trim_interval_s).start() if trim_interval_s else None  # before a launch that blocks
    # What start-up made (torch, Gradio, the models, the UI) lives as long as the process: take it out of the garbage
    # collector's reach, so a full collection while serving scans only what requests made instead of stalling every
    # handler for a scan of the whole interpreter. No collection first: it costs more start time than it frees.
    gc.freeze()
    demo.memory_trimmer = trimmer
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            max_file_size=MAX_UPLOAD,
            show_error=True,
            css=CSS,
            js=PAGE_JS,
            theme=theme(),
            footer_links=["gradio"],
            enable_monitoring=False,  # Gradio's default serves a summary of every event at /monitoring/summary
            # No run history: Gradio would keep every visitor's inputs and outputs (faces) in the browser's storage
            # and rewrite that growing record on each event, so each slider move would take longer than the last.
            run_history=False,
            prevent_thread_lock=not block,
            quiet=not block,
        )
    except BaseException:  # a failed launch (port taken) or Ctrl-C on a blocking one: leave no thread behind
        if trimmer is not None:
            trimmer.stop()
        raise
    return demo


def _at_least_one(text: str) -> int:
    """argparse type for --face-cache (and its SAE_FACE_CACHE default, which argparse parses the same way)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of uploads, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> None:
    # Environment defaults are passed as strings: argparse converts a string default with `type` like a command-line
    # value, so a malformed GRADIO_SERVER_PORT or SAE_FACE_CACHE is a one-line usage error, not a traceback.
    parser = argparse.ArgumentParser(description="Sparse autoencoder face demo")
    parser.add_argument(
        "--model",
        action="append",
        default=None,
        help="Hub repo id[@revision] or model directory, served first (repeat for several; env SAE_MODEL, "
        "comma-separated); the bundled models are always offered too",
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="0.0.0.0 serves a classroom LAN")
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    parser.add_argument(
        "--face-cache",
        type=_at_least_one,
        default=os.environ.get("SAE_FACE_CACHE", str(FACE_CACHE_SIZE)),
        help=f"uploads kept cropped and encoded in memory (env SAE_FACE_CACHE; default {FACE_CACHE_SIZE})",
    )
    args = parser.parse_args(argv)
    sources = args.model if args.model is not None else [s for s in os.environ.get("SAE_MODEL", "").split(",") if s.strip()]
    models, failures = load_served([s.strip() for s in sources])
    if not models:
        sys.exit("sae: no model could be loaded: " + ("; ".join(failures) or "no --model or SAE_MODEL given and no bundled model"))
    for line in failures:
        print(f"not serving {line}", file=sys.stderr)
    print("serving " + ", ".join(f"{served.name} ({served.loaded.note})" for served in models))
    try:
        serve(models, args.host, args.port, args.face_cache, failures=failures)
    except OSError as error:  # Gradio's launch: the port is in use or the address not this machine's; its hint names launch()
        if "Cannot find empty port" not in str(error):
            raise
        reason = str(error).split(". ")[0]
        sys.exit(
            f"sae: cannot serve on {args.host}:{args.port} ({reason}): the port is in use or the address is not this machine's. "
            f"Try --port {args.port + 1}"
        )


if __name__ == "__main__":
    main()
