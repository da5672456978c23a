"""The app's own costs on this machine, for every bundled model: its handlers, the server's CPU per slider move, and
its start, each beside the floor app (`benchmarks.floor_app`) or a target, measured in the same run.

    python -m benchmarks.bench_app [--models DIR ...] [--moves 40] [--starts 9] [--threads 1]

- handlers: called in this process on the astronaut photo (median and p90 of `--repeats` calls), and the upload work
  on a phone photo (`phone_photo`: her portrait as a 12-megapixel JPEG stored on its side) beside its full-size decode
  alone;
- server CPU per slider move: the app in a child process, one session calling it as its page does
  (`benchmarks.serving.PageSession`) uploads the photo and then makes `--moves` sequential /update calls; the child's
  own CPU time (/proc) over those moves, divided by their number, and the floor app's for the same number of its
  moves; and the same for `benchmarks.replay_app` (the handler's work replayed), which leaves what Gradio costs the
  server to carry our outputs;
- start: process start until the page answers HTTP 200, `--starts` times alternating with the floor app; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from unittest import mock

import torch
from PIL import Image

from benchmarks.document import verdict
from benchmarks.serving import FLOOR, OURS, PHOTO, REPLAY, AppProcess, PageSession, percentile
from benchmarks.timing import timings_ms
from sae.app.handlers import Handlers
from sae.app.models import serve
from sae.app.pipeline import privacy_view, quality_curve
from sae.app.settings import ShareSettings
from sae.core.faces import load_photo
from sae.zoo import files
from sae.zoo.hub import load_model

SERVER_CPU_TARGET_MS = 40.0
COUNTED_KS = range(8, 24)  # the k the counted slider moves cycle through (the replay app is warmed on each)
START_RATIO_TARGET = 1.2
STARTS = 9  # an odd count has a middle start; one start varies widely on a shared machine, so few make a loose median


PHONE_SIZE = (4032, 3024)  # a 12-megapixel phone camera's frame


def phone_photo(folder: Path) -> Path:
    """The astronaut as a phone saves a portrait: an upright 3024x4032 picture (the photo's 3:4 centre, scaled up)
    stored on its side as 4032x3024 JPEG (quality 90) with EXIF orientation 6, which the app turns upright again."""
    path = folder / "phone.jpg"
    photo = Image.open(PHOTO).convert("RGB")
    width = photo.height * PHONE_SIZE[1] // PHONE_SIZE[0]
    left = (photo.width - width) // 2
    upright = photo.crop((left, 0, left + width, photo.height)).resize(PHONE_SIZE[::-1], Image.Resampling.BICUBIC)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    upright.transpose(Image.Transpose.ROTATE_90).save(path, quality=90, exif=exif)
    return path


SLIDER_MOVE = "slider move (handler: panels, chart, linkage, budget)"  # handler_timings' row of a move's work


def _full_decode(path: Path) -> None:
    """Decode a photo at full size and nothing else: what any reader of the file pays at least, the reference row."""
    with Image.open(path) as opened:
        opened.load()


def handler_timings(model_dir: str, repeats: int) -> dict[str, dict[str, float]]:
    """Median and p90 milliseconds of each step of the app, handlers called directly."""
    served = serve(load_model(model_dir, fallback=None))
    with tempfile.TemporaryDirectory(prefix="sae-bench-") as outbox:
        handlers = Handlers([served], Path(outbox))
        phone = phone_photo(Path(outbox))
        settings = ShareSettings(k=min(ShareSettings.k, served.model.k_max))
        values = settings.widget_values()
        ref = handlers.prepare(str(PHOTO), False, served.name, *values)[0]
        face = handlers.faces.view(ref, served).face
        steps = {
            "upload work: decode, detect, crop for every model, encode": lambda: handlers.faces.crops(load_photo(PHOTO)),
            "the same, a 12-megapixel phone photo (JPEG, rotated)": lambda: handlers.faces.crops(load_photo(phone)),
            "that photo's full-size decode alone (reference)": lambda: _full_decode(phone),
            "one share, 3 attacks, one batched decode, PSNR/SSIM (pipeline)": lambda: privacy_view(served, face, settings),
            SLIDER_MOVE: lambda: handlers.update(ref, served.name, *values),
            "quality curve (its sampled k, one decode)": lambda: quality_curve(served.model, face),
        }
        result = {}
        for name, step in steps.items():
            times = timings_ms(step, repeats)
            result[name] = {"median_ms": statistics.median(times), "p90_ms": percentile(times, 90)}
        return result


def text_bytes(outputs: object) -> int:
    """UTF-8 bytes of the text among an endpoint's outputs (one output or a tuple): what the page receives inline,
    before JSON escaping and the stream's framing."""
    texts = outputs if isinstance(outputs, tuple) else (outputs,)
    return sum(len(text.encode()) for text in texts if isinstance(text, str))


def server_cpu_per_move(
    command: list[str], extra: list[str], moves: int, ours: bool, warm: Iterable[int] = range(2, 7)
) -> dict[str, float | int]:
    """CPU milliseconds the server process spends per slider move over `moves` sequential moves of one session (k
    cycling through COUNTED_KS), after uncounted moves to each k of `warm`; and the kilobytes of text outputs each move
    sends (ours: every panel inline but the model input, sent with the face; the floor's image is a file fetched
    apart, so its figure is the caption's alone)."""
    from gradio_client import handle_file

    with AppProcess(command, extra) as app, PageSession(app.url) as session:
        client = session.client
        if ours:
            config = client.view_api(return_format="dict", print_info=False)
            model = json.loads(Path(extra[1], files.CONFIG).read_text()) if extra else None
            settings = ShareSettings(k=min(ShareSettings.k, model["k_max"]) if model else ShareSettings.k)
            name = _default_model(config)
            client.predict(handle_file(str(PHOTO)), False, name, *settings.widget_values(), api_name="/prepare")
            call = lambda k: session.call("/update", name, k, *settings.widget_values()[1:])  # noqa: E731
        else:
            call = lambda k: session.call("/update", k)  # noqa: E731
        for k in warm:
            call(k)
        before, sent = app.cpu_seconds(), []
        for step in range(moves):
            sent.append(text_bytes(call(COUNTED_KS[step % len(COUNTED_KS)])))
        spent = app.cpu_seconds() - before
    return {"cpu_ms_per_move": 1000 * spent / moves, "moves": moves, "text_kb_per_move": statistics.mean(sent) / 1000}


def _default_model(api: dict) -> str:
    """The model selector's default choice, as the /update endpoint's parameter declares it."""
    for parameter in api["named_endpoints"]["/update"]["parameters"]:
        if parameter.get("label") == "Model":
            return parameter["parameter_default"] if parameter.get("parameter_has_default") else parameter["type"]["enum"][0]
    raise RuntimeError("the /update endpoint has no Model parameter")


def start_seconds(models: list[str], starts: int) -> dict[str, float]:
    """Median seconds from process start to serving, ours (with `models`) and the floor's, alternating."""
    ours, floor = [], []
    extra = [argument for model in models[:1] for argument in ("--model", model)]
    for _ in range(starts):
        with AppProcess(FLOOR) as app:
            floor.append(app.start_seconds)
        with AppProcess(OURS, extra) as app:
            ours.append(app.start_seconds)
    ours_s, floor_s = statistics.median(ours), statistics.median(floor)
    return {"ours_s": ours_s, "floor_s": floor_s, "ratio": ours_s / floor_s, "ours_all": ours, "floor_all": floor}


APP_EVENTS = ("prepare", "update", "switch", "select", "comparison", "share", "decode")  # the app's events' names


def analytics_ms_per_event(recorded: int, max_events: int, every: int, events: int | None = None) -> float:
    """Milliseconds per event that Gradio's queue spends on its analytics summary (`Queue.compute_analytics_summary`,
    called after every event) over `events` events (default: enough for two rebuilds, at least 200), once `recorded`
    events were served, keeping at most `max_events` records and rebuilding the summary every `every` events: Gradio's
    defaults against app.py's settings. Not counted: the hop to a worker thread Gradio makes for each call."""
    events = max(200, 2 * every) if events is None else events
    from gradio.queueing import Queue

    settings = {"GRADIO_ANALYTICS_MAX_EVENTS": str(max_events), "GRADIO_ANALYTICS_CACHE_FREQUENCY": str(every)}
    with mock.patch.dict(os.environ, settings):  # read by the queue when it is made
        queue = Queue(live_updates=False, concurrency_count=1, update_intervals=1, max_size=None, blocks=None)
    records = [
        {
            "time": float(i),
            "status": "success",
            "process_time": 0.03,
            "function": APP_EVENTS[i % len(APP_EVENTS)],
            "session_hash": str(i % 30),
        }
        for i in range(min(recorded, queue.ANALYTICS_MAX_EVENTS))
    ]
    queue.events_recorded = queue.event_count_at_last_cache = recorded
    started = time.perf_counter()
    for _ in range(events):
        queue.events_recorded += 1
        queue.compute_analytics_summary(list(records))
    return 1000 * (time.perf_counter() - started) / events


GRADIO_ANALYTICS_DEFAULTS = (10_000, 1)  # gradio.queueing: records kept, events between rebuilds of the summary
ANALYTICS_SERVED = (2_500, 10_000)  # events served: about one 2-minute class of 30 (benchmarks.load), then the cap


def analytics_costs() -> dict[str, dict[str, float]]:
    """`analytics_ms_per_event` after each of ANALYTICS_SERVED events, with Gradio's defaults and with app.py's."""
    from app import QUEUE_ANALYTICS

    ours = tuple(int(os.environ.get(name, value)) for name, value in QUEUE_ANALYTICS.items())  # as app.queue sets them
    costs = {}
    for served in ANALYTICS_SERVED:
        gradio_ms = analytics_ms_per_event(served, *GRADIO_ANALYTICS_DEFAULTS)
        costs[str(served)] = {"gradio_ms": gradio_ms, "ours_ms": analytics_ms_per_event(served, *ours)}
    return costs


def run(models: list[str], repeats: int, moves: int, starts: int) -> dict:
    result: dict = {"handlers": {}, "server_cpu": {}}
    for model in models:
        result["handlers"][model] = handler_timings(model, repeats)
    result["server_cpu"]["floor"] = server_cpu_per_move(FLOOR, [], moves, ours=False)
    for model in models:
        result["server_cpu"][model] = server_cpu_per_move(OURS, ["--model", model], moves, ours=True)
    # The replay app renders each k once: warming every k that is counted makes each counted move a replay.
    result["server_cpu_replayed"] = {
        model: server_cpu_per_move(REPLAY, ["--model", model], moves, ours=True, warm=COUNTED_KS) for model in models
    }
    result["start"] = start_seconds(models, starts)
    result["analytics"] = analytics_costs()
    return result


def markdown(result: dict) -> str:
    lines = ["| model | step | median ms | p90 ms |", "|---|---|---:|---:|"]
    for model, steps in result["handlers"].items():
        lines += [f"| {model} | {step} | {t['median_ms']:.1f} | {t['p90_ms']:.1f} |" for step, t in steps.items()]
    floor = result["server_cpu"]["floor"]["cpu_ms_per_move"]
    lines += ["", "| server | CPU per slider move (ms) | floor app's | target | text sent per move (kB) |", "|---|---:|---:|---:|---:|"]
    for model, cpu in result["server_cpu"].items():
        target = "" if model == "floor" else f"{SERVER_CPU_TARGET_MS:.0f}"
        lines.append(f"| {model} | {cpu['cpu_ms_per_move']:.1f} | {floor:.1f} | {target} | {cpu['text_kb_per_move']:.0f} |")
        if model in result["server_cpu_replayed"]:
            replayed = result["server_cpu_replayed"][model]["cpu_ms_per_move"]
            lines.append(f"| {model}, the handler's work replayed | {replayed:.1f} | {floor:.1f} | | |")
    start = result["start"]
    lines += ["", f"Start to serving: ours {start['ours_s']:.2f} s, floor {start['floor_s']:.2f} s, ratio {start['ratio']:.2f}x "
              f"(target {START_RATIO_TARGET}x: {verdict(start['ratio'], START_RATIO_TARGET)})."]  # fmt: skip
    for served, cost in result.get("analytics", {}).items():
        lines.append(f"Gradio's analytics summary per event after {served} events: {cost['gradio_ms']:.2f} ms with its defaults, "
                     f"{cost['ours_ms']:.3f} ms with app.py's.")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_app", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[str(path) for path in files.bundled_models().values()])
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the in-process handler timings (the app's)")
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--moves", type=int, default=40)
    parser.add_argument("--starts", type=int, default=STARTS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = run(args.models, args.repeats, args.moves, args.starts)
    print(markdown(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
