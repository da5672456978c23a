"""Gradio entry point (Hugging Face Spaces runs this file): load the model, build the UI, launch."""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no usage reporting
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from sae.hub import ModelLoadError, load_model
from sae.ui import CSS, build, theme

MAX_UPLOAD = "20mb"  # Gradio refuses bigger uploads before they reach a handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sparse autoencoder face demo")
    parser.add_argument(
        "--model", default=os.environ.get("SAE_MODEL"), help="Hub repo id[@revision] or model directory (default: the bundled assets/model)"
    )
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    args = parser.parse_args(argv)
    try:
        loaded = load_model(args.model)
    except ModelLoadError as error:
        sys.exit(f"sae: {error}")
    print(f"serving {loaded.source}: {loaded.note}")
    demo = build(loaded)
    demo.queue(default_concurrency_limit=2, max_size=64)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        max_file_size=MAX_UPLOAD,
        show_error=True,
        css=CSS,
        theme=theme(),
        footer_links=["gradio"],
    )


if __name__ == "__main__":
    main()
