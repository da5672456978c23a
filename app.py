"""Gradio entry point (Hugging Face Spaces runs this file): load the model, build the UI, launch."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reporting
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import gradio as gr

from sae.app.face_cache import ENTRY_MB, FACE_CACHE_SIZE
from sae.app.memory import TRIM_INTERVAL_S, MemoryTrimmer
from sae.app.ui import CSS, Handlers, build, theme
from sae.zoo.hub import LoadedModel, ModelLoadError, load_model

MAX_UPLOAD = "20mb"  # Gradio refuses bigger uploads before they reach a handler
# Queue. Every event shares one concurrency group (sae.app.ui.CPU), so WORKERS bounds all model work together: 2 handlers
# at once for the 2 cores of a free Space (each handler's torch ops use the cores too; more concurrent handlers on 2
# cores only interleave, raising everyone's latency without adding throughput). QUEUE_SIZE caps the events waiting
# beyond those: a class of 30 has at most about 2 in flight each (an upload's steps run one after another, the slider
# sends only its latest position), so 64 never turns a class away, while a flood beyond it is told "queue full" at
# once instead of waiting minutes. benchmarks/load.py measures throughput and latency at these settings.
WORKERS = 2
QUEUE_SIZE = 64


def serve(
    loaded: LoadedModel,
    host: str,
    port: int,
    face_cache: int = FACE_CACHE_SIZE,
    block: bool = True,
    handlers: Handlers | None = None,
    trim_interval_s: float | None = TRIM_INTERVAL_S,
) -> gr.Blocks:
    """Build the UI around `loaded`, queue it and launch; block=False returns once serving (benchmarks, tests).

    While it serves, a `MemoryTrimmer` (sae.app.memory) hands freed heap memory back every `trim_interval_s` seconds
    (None: never), kept as `demo.memory_trimmer` so a caller can stop it."""
    demo = build(loaded, face_cache, handlers)
    demo.queue(default_concurrency_limit=WORKERS, max_size=QUEUE_SIZE)
    trimmer = MemoryTrimmer(trim_interval_s).start() if trim_interval_s else None  # before a launch that blocks
    demo.memory_trimmer = trimmer
    try:
        demo.launch(
            server_name=host,
            server_port=port,
            max_file_size=MAX_UPLOAD,
            show_error=True,
            css=CSS,
            theme=theme(),
            footer_links=["gradio"],
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
        "--model", default=os.environ.get("SAE_MODEL"), help="Hub repo id[@revision] or model directory (default: the bundled assets/model)"
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=os.environ.get("GRADIO_SERVER_PORT", "7860"))
    parser.add_argument(
        "--face-cache",
        type=_at_least_one,
        default=os.environ.get("SAE_FACE_CACHE", str(FACE_CACHE_SIZE)),
        help=f"uploads kept encoded in memory (env SAE_FACE_CACHE; default {FACE_CACHE_SIZE}, about {ENTRY_MB:.2f} MB each)",
    )
    args = parser.parse_args(argv)
    try:
        loaded = load_model(args.model)
    except ModelLoadError as error:
        sys.exit(f"sae: {error}")
    print(f"serving {loaded.source}: {loaded.note}")
    serve(loaded, args.host, args.port, args.face_cache)


if __name__ == "__main__":
    main()
