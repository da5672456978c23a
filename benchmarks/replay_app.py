"""The app with the model's work taken out of the slider: a move answered again from the view it already rendered.

    python -m benchmarks.replay_app --model DIR --port N

The same layout, outputs and queue as `app.py` on the same model; only the slider's /update handler remembers each
rendered view by face and settings and returns it when asked again. The browser benchmark's steps go back and forth
between two k, so from the third step on every answer is a replay: what is left of a step is what Gradio, the page
and the browser spend on our outputs (five panels, the chart, the notes), the part a faster model cannot remove.
"""

from __future__ import annotations

import argparse

import app
from sae.app.handlers import Handlers
from sae.app.models import load_served


class ReplayHandlers(Handlers):
    """`Handlers` whose `update` renders each (face, model, settings) once and replays it afterwards."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.rendered: dict[tuple, tuple] = {}

    def update(self, ref, model_name: str, *controls) -> tuple:
        key = (None if ref is None else ref.key, model_name, controls)
        if key not in self.rendered:
            self.rendered[key] = super().update(ref, model_name, *controls)
        return self.rendered[key]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.replay_app", description=__doc__)
    parser.add_argument("--model", required=True, help="model directory, served first (the bundled ones follow, as in app.py)")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    models, failures = load_served([args.model])
    if failures:
        raise SystemExit("replay_app: " + "; ".join(failures))
    app.serve(models, "127.0.0.1", args.port, failures=failures, handlers=ReplayHandlers(models))


if __name__ == "__main__":
    main()
