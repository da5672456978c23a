"""The floor every app benchmark is measured against: the least a Gradio app with torch can do per slider move.

    python -m benchmarks.floor_app --port N [--workers N --queue-size N]

It imports torch and gradio like the app, serves one slider, and answers each move with one 256x256 image (a torch
tensor made into a numpy array) and a one-line caption; an uploaded photo comes back resized to 256x256 with a caption.
Its events are set as the app's (the slider's outside the queue, uploads queued, `--workers` handlers at once through a
`WorkGate`; no run history), so that what the app takes beyond this, in the same run on the same machine, is the app's
own cost.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import gradio as gr
import torch

from sae.app.gate import WorkGate

K_MAX = 64  # the slider's largest k


def picture(k: float) -> tuple:
    generator = torch.Generator().manual_seed(int(k))
    image = (torch.rand(256, 256, 3, generator=generator) * 255).byte().numpy()
    return image, f"PSNR {20 + float(k) / 4:.2f} dB"


def shown(path: str | None) -> tuple:
    if path is None:
        return None, ""
    from PIL import Image

    with Image.open(path) as photo:
        return photo.convert("RGB").resize((256, 256)), f"uploaded {photo.width}x{photo.height}"


def build(workers: int = 1) -> gr.Blocks:
    """The floor's page; at most `workers` of its handlers run at once, queued or not (as the app's)."""
    gate = WorkGate(workers)
    with gr.Blocks(analytics_enabled=False) as demo:
        photo = gr.Image(type="filepath", label="Photo", elem_id="photo")
        k = gr.Slider(1, K_MAX, value=K_MAX // 2, step=1, label="k", elem_id="k-slider")
        image = gr.Image(format="png", interactive=False, elem_id="floor-image")
        caption = gr.Markdown(elem_id="floor-caption")
        # As the app's slider: no overlay per step, only the last of quick steps, and not through the queue.
        moves = dict(trigger_mode="always_last", show_progress="hidden", queue=False)
        k.input(gate(picture), k, [image, caption], api_name="update", **moves)
        k.release(gate(picture), k, [image, caption], api_name="release", **moves)
        photo.change(gate(shown), photo, [image, caption], api_name="upload")
        demo.load(picture, k, [image, caption])
    return demo


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=7861)
    parser.add_argument("--workers", type=int, default=1, help="handlers run at once, queued or not (Gradio's default: 1)")
    parser.add_argument("--queue-size", type=int, default=None, help="events waiting beyond those (Gradio's default: no cap)")
    args = parser.parse_args(argv)
    # Without run history, like the app: the floor is the fastest such an app can be, not Gradio's default.
    demo = build(args.workers).queue(default_concurrency_limit=args.workers, max_size=args.queue_size)
    demo.launch(server_name="127.0.0.1", server_port=args.port, quiet=True, run_history=False)


if __name__ == "__main__":
    main()
