"""The app with the slider handler's work taken out: a move answered again with the outputs it already rendered.

    python -m benchmarks.replay_app --model DIR --port N

The same layout, outputs and queue as `app.py` on the same model; only /update (the handler of the slider and every
other control) remembers each rendered view (the model, the attacks, the scores, the images and the HTML) by face and
settings and returns it when asked again. The browser benchmark's steps go back and forth between two k, so from the
third step on every answer is a replay: what is left of a step is what Gradio, the page and the browser spend to carry
our outputs (the panels, the chart, the notes), which no faster handler removes. A benchmark's tool, never to serve a
class: it keeps every view, failures included.
"""

from __future__ import annotations

import argparse

import app
from sae.app.face_cache import FaceRef
from sae.app.handlers import Handlers
from sae.app.models import load_served


class ReplayHandlers(Handlers):
    """`Handlers` whose `update` renders each (face, model, settings) once and replays it afterwards."""

    def __init__(self, *args: object, **kwargs: object):
        super().__init__(*args, **kwargs)
        self.rendered: dict[tuple, tuple] = {}

    def update(self, ref: FaceRef | None, model_name: str, *controls: object, session: str | None = None) -> tuple:
        ref = self.sessions.latest(session, ref)  # the face the app would draw
        key = (ref, model_name, controls)  # the FaceRef whole: the same upload's crop and whole image differ
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
