"""Gradio entry point (Hugging Face Spaces runs this file): load the model, build the UI, launch."""

from __future__ import annotations

import argparse
import os
import sys

from sae.hub import ModelLoadError, load_model
from sae.ui import build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Sparse autoencoder face demo")
    parser.add_argument("--model", default=os.environ.get("SAE_MODEL"), help="model directory (default: the bundled assets/model)")
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
    demo.launch(server_name=args.host, server_port=args.port, max_file_size="20mb", show_error=True)


if __name__ == "__main__":
    main()
