"""What a visitor waits for, in a real browser: slider step to new numbers, upload to first panels; the app against the
floor app (`benchmarks.floor_app`) in the same run.

    python -m benchmarks.browser [--steps 150] [--uploads 5] [--models assets/models/utkface128 assets/models/celeba64] [--replay]

Headless Debian Chromium driven by Playwright. A slider step is one ArrowRight/ArrowLeft on the focused k slider,
timed until the key holder's caption (the floor: its caption) shows a new text; steps are spaced so that none is
merged into the previous one. An upload is timed from handing the file to the page until the panels show the new
model input (the floor: its image). Every app is served at once and measured in turns (an upload or a step of each in
turn), so that a slow moment of this shared machine weighs on all of them alike instead of on whichever app it fell
in; the servers not being measured are frozen meanwhile. Medians and 90th percentiles, and each as a multiple of the
floor's. `--replay` adds each model's slider steps with the handler's work taken out (`benchmarks.replay_app`): what
carrying our outputs costs on its own, so a step's time splits into the floor, our outputs' share and the handler's.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from benchmarks.serving import FLOOR, OURS, REPLAY, AppProcess, chromium_available, launch_chromium, median_ratio_interval, percentile
from sae.zoo import files

if TYPE_CHECKING:
    from playwright.sync_api import Page

STEPS = 150  # slider steps per app: the median ratio's sampling interval (printed beside it) narrows as 1/sqrt(steps)
STEP_GAP_S = 0.25
SETTLE_MS = 100  # after a server is resumed, before its turn is timed
# The floor's caption is a Markdown block whose status tracker (the "processing | 0.1s" timer) sits inside the block:
# its text changes the moment the request is sent, so only the rendered markdown counts as the new numbers.
FLOOR_CAPTION = "#floor-caption [data-testid=markdown]"
TIMEOUT_MS = 60_000
REPLAYED = " (slider replayed)"  # the key of a model's run against `benchmarks.replay_app`
# The replay app renders each setting once and the steps alternate between two k (the upload goes through /prepare,
# not /update): steps 1 and 2 render, every later step is a replay.
REPLAY_WARM_STEPS = 2


def _faces(count: int, folder: Path) -> list[Path]:
    from benchmarks.load import make_faces

    return make_faces(count, folder, seed=11)


def _wait_change(page, selector: str, before: str | None, attribute: str | None = None) -> None:
    """Block until `selector`'s text (or attribute) exists and differs from `before`."""
    read = f"el.getAttribute('{attribute}')" if attribute else "el.textContent"
    page.wait_for_function(
        f"([s, b]) => {{ const el = document.querySelector(s); return el !== null && {read} !== b; }}",
        arg=[selector, before],
        timeout=TIMEOUT_MS,
    )


def _read(page, selector: str, attribute: str | None = None) -> str | None:
    element = page.query_selector(selector)
    if element is None:
        return None
    return element.get_attribute(attribute) if attribute else element.text_content()


def open_app(browser, url: str):
    """A 1366x768 page on the app (ours or the floor), once its slider is there."""
    page = browser.new_page(viewport={"width": 1366, "height": 768})
    page.goto(url, wait_until="load", timeout=TIMEOUT_MS)
    page.wait_for_selector("#k-slider input[type=range]", timeout=TIMEOUT_MS)
    return page


def upload(page, image: str, photo: Path) -> float:
    """Seconds from handing `photo` to the page until `image`'s src changes."""
    before = _read(page, image, "src")
    started = time.perf_counter()
    page.locator("#photo input[type=file]").set_input_files(str(photo))
    _wait_change(page, image, before, "src")
    return time.perf_counter() - started


def slider_step(page, caption: str, step: int) -> float:
    """Seconds from one arrow key on the focused slider (right on even steps, left on odd) until `caption`'s text
    changes; then a pause of STEP_GAP_S, so that the next step is not merged into this one."""
    before = _read(page, caption)
    started = time.perf_counter()
    page.keyboard.press("ArrowRight" if step % 2 == 0 else "ArrowLeft")
    _wait_change(page, caption, before)
    elapsed = time.perf_counter() - started
    page.wait_for_timeout(int(STEP_GAP_S * 1000))
    return elapsed


class Pausable(Protocol):
    """What `measure` needs of a server: `AppProcess`'s freeze and thaw."""

    def pause(self) -> None: ...

    def resume(self) -> None: ...


@dataclass
class Subject:
    """One app of the run: its key in the results, how to start it, what to watch, its photos and uncounted steps."""

    name: str
    command: list[str]
    args: list[str]
    caption: str
    image: str
    photos: list[Path]
    warm_steps: int = 0


def subjects(models: list[str], photos: list[Path], uploads: int, replay: bool) -> list[Subject]:
    """The floor, then each model (and with `replay` its replayed slider), each model with its own uploads."""
    listed = [Subject("floor", FLOOR, [], FLOOR_CAPTION, "#floor-image img", photos[:uploads])]
    for index, model in enumerate(models, start=1):
        chosen = photos[index * uploads : (index + 1) * uploads]
        listed.append(Subject(model, OURS, ["--model", model], "#caption-1", "#panel-0 img", chosen))
        if replay:
            replayed = Subject(model + REPLAYED, REPLAY, ["--model", model], "#caption-1", "#panel-0 img", chosen[:1], REPLAY_WARM_STEPS)
            listed.append(replayed)
    return listed


def measure(listed: list[Subject], pages: dict[str, Page], servers: dict[str, Pausable], steps: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of each upload (until the subject's image src changes) and each slider step (until its caption's text
    changes), taken in turns: upload i of every subject, then step i of every subject, so that whatever else the
    machine does at a moment weighs on every app alike; while one subject is measured the other servers are frozen
    (an idle Gradio server still wakes many times a second), and each turn starts after SETTLE_MS, so that what a
    server had left to do when it was frozen is not timed as the next step. A subject's first `warm_steps` steps are
    not counted."""
    results = {subject.name: {"upload": [], "step": []} for subject in listed}

    def turn_to(subject: Subject) -> Page:
        for name, server in servers.items():
            if name != subject.name:
                server.pause()
        servers[subject.name].resume()
        page = pages[subject.name]
        page.wait_for_timeout(SETTLE_MS)
        return page

    for turn in range(max(len(subject.photos) for subject in listed)):
        for subject in listed:
            if turn < len(subject.photos):
                page = turn_to(subject)
                results[subject.name]["upload"].append(upload(page, subject.image, subject.photos[turn]))
                page.wait_for_timeout(300)
    for subject in listed:
        page = turn_to(subject)
        page.locator("#k-slider input[type=range]").focus()
        for step in range(subject.warm_steps):
            slider_step(page, subject.caption, step)
    for step in range(steps):
        for subject in listed:
            page = turn_to(subject)
            results[subject.name]["step"].append(slider_step(page, subject.caption, subject.warm_steps + step))
    return results


def run(models: list[str], steps: int, uploads: int, replay: bool = False) -> dict:
    """The floor's and each model's steps and uploads, every app served at once and measured in turns (`measure`); with
    `replay`, also each model's steps against `benchmarks.replay_app` (key: the model + REPLAYED; one upload,
    REPLAY_WARM_STEPS uncounted steps so that every counted one is a replay)."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="sae-browser-") as scratch, sync_playwright() as playwright, ExitStack() as apps:
        listed = subjects(models, _faces(uploads * (len(models) + 1), Path(scratch)), uploads, replay)
        browser = launch_chromium(playwright)
        apps.callback(browser.close)
        pages, servers = {}, {}
        for subject in listed:
            servers[subject.name] = apps.enter_context(AppProcess(subject.command, subject.args))
            pages[subject.name] = open_app(browser, servers[subject.name].url)
        return measure(listed, pages, servers, steps)


def summary(results: dict) -> dict:
    floor = results["floor"]
    rows = {}
    for name, times in results.items():
        row = {}
        for what in ("step", "upload"):
            values = [1000 * t for t in times[what]]
            median, p90 = percentile(values, 50), percentile(values, 90)
            reference = [1000 * t for t in floor[what]]
            row[what] = {"median_ms": median, "p90_ms": p90, "floor_median_ms": percentile(reference, 50),
                         "floor_p90_ms": percentile(reference, 90), "n": len(values)}  # fmt: skip
            row[what]["median_ratio"] = median / row[what]["floor_median_ms"]
            row[what]["p90_ratio"] = p90 / row[what]["floor_p90_ms"]
            row[what]["median_excess_ms"] = median - row[what]["floor_median_ms"]
        row["step"]["median_ratio_ci"] = median_ratio_interval(times["step"], floor["step"])
        rows[name] = row
    return rows


def interval(step: dict) -> str:
    """The bootstrap interval of a step's median ratio (`median_ratio_interval`), as the tables print it."""
    low, high = step["median_ratio_ci"]
    return f"{low:.2f}x-{high:.2f}x"


def markdown(rows: dict) -> str:
    lines = [
        "| app | slider step median / p90 (ms) | floor's | ratio median / p90 | the median's 95% interval "
        "| upload to panels median (ms) | floor's | beyond it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in rows.items():
        step, upload = row["step"], row["upload"]
        uploaded = (
            "not replayed | | |"
            if name.endswith(REPLAYED)
            else f"{upload['median_ms']:.0f} | {upload['floor_median_ms']:.0f} | {upload['median_excess_ms']:+.0f} ms |"
        )
        lines.append(
            f"| {name} | {step['median_ms']:.0f} / {step['p90_ms']:.0f} | {step['floor_median_ms']:.0f} / {step['floor_p90_ms']:.0f} | "
            f"{step['median_ratio']:.2f}x / {step['p90_ratio']:.2f}x | {interval(step)} | {uploaded}"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.browser", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[str(path) for path in files.bundled_models().values()])
    parser.add_argument("--steps", type=int, default=STEPS, help="slider steps per app")
    parser.add_argument("--uploads", type=int, default=5, help="uploads per app")
    parser.add_argument("--replay", action="store_true", help="also each model with its slider moves replayed (benchmarks.replay_app)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if not chromium_available():
        raise SystemExit("benchmarks.browser: Chromium not found (apt-get install chromium)")
    rows = summary(run(args.models, args.steps, args.uploads, args.replay))
    print(markdown(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return rows


if __name__ == "__main__":
    main()
