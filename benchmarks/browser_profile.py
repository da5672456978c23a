"""Where a slider step's time goes inside the browser: a diagnosis beside `benchmarks.browser`, not a target.

    python -m benchmarks.browser_profile [--steps 20] [--models ...] [--replay] [--out FILE]

For the floor app and each model (with `--replay`, also against `benchmarks.replay_app`): one upload, a few uncounted
steps, then two passes of slider steps. The first records a CPU profile (Chrome DevTools Protocol) and reports the main
thread's JavaScript time per step, the part spent under a component's `get_data` (Gradio copying a component's state:
Svelte's `$state.snapshot` clones every primitive leaf with `structuredClone`), the garbage collector's, and the
functions with the most time of their own. The second counts the page's `structuredClone` calls per step, the text
they copy, and which part of Gradio asked: reading the event's inputs and trigger components, status updates (each status message of any
event re-reads every component that has been an input or output so far), or elsewhere. Profiled steps run slower than
`benchmarks.browser`'s; compare apps within one run.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

from benchmarks import document as report
from benchmarks.browser import FLOOR_CAPTION, REPLAY_WARM_STEPS, _faces, open_app, slider_step, upload
from benchmarks.serving import FLOOR, OURS, REPLAY, AppProcess, chromium_available, launch_chromium, percentile
from sae.zoo import files

WARM_STEPS = 4
# Gradio's function names in the frontend bundle (its minifier keeps method names): who asked for a component's state,
# checked in this order. Every update_state that copies a component's state is a status update (a value update does
# not copy): the loading-status rounds and the reset of each input's status when an event's stream starts.
CALLERS = {"event inputs and triggers": ("gather_state", "set_event_args"), "status updates": ("update_state",)}
COUNT_CLONES = r"""() => {
  Error.stackTraceLimit = Infinity;  // a deep state's copy sits many frames below the Gradio function that asked
  const original = window.structuredClone;
  const tally = window.__clones = {calls: 0, chars: 0, callers: {}};
  const callers = CALLERS_JSON;
  window.structuredClone = function (value, options) {
    tally.calls++;
    if (typeof value === "string") tally.chars += value.length;
    const stack = new Error().stack || "";
    const caller = Object.keys(callers).find(name => callers[name].some(fn => stack.includes(fn))) || "elsewhere";
    tally.callers[caller] = (tally.callers[caller] || 0) + 1;
    return original.call(this, value, options);
  };
}"""


def profile_summary(profile: dict, steps: int, top: int = 5) -> dict:
    """A CDP `Profiler.stop` profile -> per-step milliseconds: JavaScript on the main thread (samples that are not idle,
    not '(program)'), under a component's `get_data`, in the garbage collector, and the `top` functions by own time."""
    nodes = {node["id"]: node for node in profile["nodes"]}
    parent = {child: node["id"] for node in profile["nodes"] for child in node.get("children", [])}
    deltas = profile["timeDeltas"][1:] + [0]
    own: collections.Counter[str] = collections.Counter()
    busy = snapshots = 0.0
    for sample, delta in zip(profile["samples"], deltas, strict=True):
        frame = nodes[sample]["callFrame"]
        name = frame["functionName"] or "(anonymous)"
        if name in ("(idle)", "(program)", "(root)"):
            continue
        ms = delta / 1000
        busy += ms
        own[f"{name} ({frame['url'].rsplit('/', 1)[-1] or 'native'})"] += ms
        node = sample
        while node is not None:
            if nodes[node]["callFrame"]["functionName"] == "get_data":
                snapshots += ms
                break
            node = parent.get(node)
    gc = own.pop("(garbage collector) (native)", 0.0)
    return {
        "js_ms": busy / steps,
        "snapshot_ms": snapshots / steps,
        "gc_ms": gc / steps,
        "top": [(name, ms / steps) for name, ms in own.most_common(top)],
    }


def measure(url: str, caption: str, image: str, photo: Path, steps: int, browser, warm_steps: int) -> dict:
    """One upload, `warm_steps` uncounted steps, then the CPU profile and the clone count over `steps` steps each."""
    page = open_app(browser, url)
    try:
        upload(page, image, photo)
        page.locator("#k-slider input[type=range]").focus()
        for step in range(warm_steps):
            slider_step(page, caption, step)
        cdp = page.context.new_cdp_session(page)
        cdp.send("Profiler.enable")
        cdp.send("Profiler.setSamplingInterval", {"interval": 100})
        cdp.send("Profiler.start")
        times = [slider_step(page, caption, step) for step in range(steps)]
        profiled = profile_summary(cdp.send("Profiler.stop")["profile"], steps)
        page.evaluate(COUNT_CLONES.replace("CALLERS_JSON", json.dumps({name: list(fns) for name, fns in CALLERS.items()})))
        for step in range(steps):
            slider_step(page, caption, step)
        clones = page.evaluate("() => window.__clones")
    finally:
        page.close()
    return {
        "step_ms": percentile([1000 * t for t in times], 50),
        **profiled,
        "clones": clones["calls"] / steps,
        "cloned_kb": clones["chars"] / steps / 1000,
        "callers": {name: count / steps for name, count in clones["callers"].items()},
    }


def run(models: list[str], steps: int, replay: bool) -> dict[str, dict]:
    from playwright.sync_api import sync_playwright

    results = {}
    with tempfile.TemporaryDirectory(prefix="sae-profile-") as scratch, sync_playwright() as playwright:
        photo = _faces(1, Path(scratch))[0]
        browser = launch_chromium(playwright)
        try:
            with AppProcess(FLOOR) as floor:
                results["floor"] = measure(floor.url, FLOOR_CAPTION, "#floor-image img", photo, steps, browser, WARM_STEPS)
            for model in models:
                apps = [(Path(model).name, OURS, WARM_STEPS)]
                apps += [(f"{Path(model).name} (slider replayed)", REPLAY, max(WARM_STEPS, REPLAY_WARM_STEPS))] if replay else []
                for name, command, warm in apps:
                    with AppProcess(command, ["--model", model]) as app:
                        results[name] = measure(app.url, "#caption-1", "#panel-0 img", photo, steps, browser, warm)
        finally:
            browser.close()
    return results


def markdown(results: dict[str, dict]) -> str:
    lines = [
        "| app | step median, profiled (ms) | main-thread JS per step (ms) | of it copying component state | of it the garbage "
        "collector | structuredClone calls per step: event inputs and triggers / status updates / elsewhere | text copied "
        "per step | most own time (ms per step) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, row in results.items():
        callers = row["callers"]
        split = " / ".join(f"{callers.get(caller, 0):.0f}" for caller in (*CALLERS, "elsewhere"))
        top = "; ".join(f"{function} {ms:.1f}" for function, ms in row["top"][:3])
        lines.append(
            f"| {name} | {row['step_ms']:.0f} | {row['js_ms']:.1f} | {row['snapshot_ms']:.1f} | {row['gc_ms']:.1f} | "
            f"{row['clones']:.0f}: {split} | {row['cloned_kb']:.0f} kB | {top} |"
        )
    return "\n".join(lines) + "\n"


def document(table: str, argv: list[str]) -> str:
    """The --out file: the command that made it, what the columns mean (this module's docstring), then the table."""
    return report.document("Where a slider step's browser time goes", "benchmarks.browser_profile", __doc__, table, argv)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.browser_profile", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=[str(path) for path in files.bundled_models().values()])
    parser.add_argument("--steps", type=int, default=20, help="slider steps per pass")
    parser.add_argument("--replay", action="store_true", help="also each model with its slider moves replayed (benchmarks.replay_app)")
    parser.add_argument("--out", default=None, help="also write the table here")
    args = parser.parse_args(argv)
    if not chromium_available():
        raise SystemExit("benchmarks.browser_profile: Chromium not found (apt-get install chromium)")
    results = run(args.models, args.steps, args.replay)
    table = markdown(results)
    print(table)
    if args.out:
        Path(args.out).write_text(document(table, sys.argv[1:] if argv is None else argv))
    return results


if __name__ == "__main__":
    main()
