"""A class at once: simulated students against the app on loopback, calling it as its page does; prints a Markdown table.

    python -m benchmarks.load                      # 30 students, 2 minutes, the default (first bundled) model
    python -m benchmarks.load --model DIR          # the app serving DIR first
    python -m benchmarks.load --floor              # the same class against the floor app (benchmarks.floor_app)
    python -m benchmarks.load --short              # 4 students, 15 seconds (tests/test_load.py)
    python -m benchmarks.load --json result.json   # also the raw result, for `run_fresh` (benchmarks.run)

The app runs with its own queue settings in a child process (`benchmarks.serving.AppProcess`, its own Gradio folder).
Each student is one session (`benchmarks.serving.PageSession`: queued events through gradio_client, the unqueued
slider as the page's own POST): it uploads a photo of its own (crops, flips and tints of the public-domain
astronaut, all different) and redraws once as the page does after a face lands, then moves the k slider to a random k
once every 1-2 s (uniform) until the time is up.
Latency is measured at the student from request to result (any wait included). The students share the machine's
cores with the server, so the server's own CPU time per request (from /proc) is reported too, and the same class
against the floor app (one image and a caption per move, its events set as the app's) shows what the machine, Gradio and the
simulated students cost by themselves. The server's memory is sampled every few seconds: after the warm-up its peaks
must stay within 10% of its peak just after it. Requests are bounded by the duration; any still pending at its end
plus a grace period count as errors. Exit status 1 when the run was not clean.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import floor_app
from benchmarks.document import command_line
from benchmarks.serving import FLOOR, OURS, PHOTO, REPO, AppProcess, PageSession, percentile, server_stack
from sae.app.memory import TRIM_INTERVAL_S
from sae.app.outbox import OUTBOX_MAX_AGE
from sae.app.settings import ShareSettings
from sae.zoo import files

WARM_UP_S = 30.0
MEMORY_SLACK = 0.10
GRACE_S = 30.0


def make_faces(count: int, folder: Path, seed: int = 0) -> list[Path]:
    """`count` different photos of the astronaut: random crop around the face, flip, tint, slight scale (PNG)."""
    rng = np.random.default_rng(seed)
    source = Image.open(PHOTO).convert("RGB")
    paths = []
    for index in range(count):
        side = int(rng.integers(300, 480))
        left, top = int(rng.integers(0, source.width - side + 1)), int(rng.integers(0, min(60, source.height - side) + 1))
        image = source.crop((left, top, left + side, top + side)).resize((int(rng.integers(256, 400)),) * 2)
        if index % 2:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tint = rng.integers(-25, 26, size=3)
        pixels = np.clip(np.asarray(image, dtype=np.int16) + tint, 0, 255).astype(np.uint8)
        pixels[0, 0] = [index % 256, index // 256 % 256, 7]  # distinct bytes even if two draws coincide
        path = folder / f"student-{index:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@dataclass
class Request:
    endpoint: str
    started: float  # seconds since the run began
    seconds: float
    error: str | None = None


@dataclass
class LoadResult:
    students: int
    duration_s: float
    requests: list[Request]
    memory: list[tuple[float, float]]  # (seconds since start, server RSS MB)
    cpu_s: float  # server CPU time over the run
    uploads_left: list[str]
    settings: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Request]:
        return [r for r in self.requests if r.error is not None]

    def latencies_ms(self, endpoint: str | None = None) -> np.ndarray:
        return np.array([1000 * r.seconds for r in self.requests if r.error is None and endpoint in (None, r.endpoint)])

    def percentiles_ms(self, endpoint: str) -> tuple[float, float, float]:
        """p50 / p95 / p99 of an endpoint's answered requests by `serving.percentile`, the one rule of both load tables
        (NaN when none was answered)."""
        values = list(self.latencies_ms(endpoint))
        if not values:
            return float("nan"), float("nan"), float("nan")
        return percentile(values, 50), percentile(values, 95), percentile(values, 99)

    def p95_by_part_ms(self, endpoint: str, parts: int = 4) -> list[float]:
        """p95 of an endpoint's answered requests by the part of the run they started in (`parts` equal spans), by
        `serving.percentile`: whether a class's answers slow down as it goes on (NaN for a part with none)."""
        span = self.duration_s / parts
        values: list[list[float]] = [[] for _ in range(parts)]
        for request in self.requests:
            if request.error is None and request.endpoint == endpoint:
                values[min(parts - 1, max(0, int(request.started // span)))].append(1000 * request.seconds)
        return [percentile(part, 95) if part else float("nan") for part in values]

    @property
    def memory_flat(self) -> tuple[bool | None, str]:
        """Whether the server's RSS, after the warm-up, stayed within MEMORY_SLACK of its level then.

        The level is the highest sample in the first two trim intervals after the warm-up, and it is compared with the
        highest sample after them: peak to peak. Between trims (`sae.app.memory`) RSS climbs and falls back, so a single
        sample could sit at the bottom of that sawtooth or its top; a leak raises the later peaks either way.
        """
        settle = WARM_UP_S + 2 * TRIM_INTERVAL_S
        first = [rss for at, rss in self.memory if WARM_UP_S <= at < settle]
        later = [rss for at, rss in self.memory if at >= settle]
        if not first or not later:
            return None, "not checked (the run is too short to compare)"
        base, peak = max(first), max(later)
        return peak <= base * (1 + MEMORY_SLACK), (
            f"highest {base:.0f} MB in the {settle - WARM_UP_S:.0f} s after a {WARM_UP_S:.0f} s warm-up, "
            f"highest {peak:.0f} MB later (limit +{MEMORY_SLACK:.0%})"
        )

    @property
    def memory_verdict(self) -> str:
        """One word for `memory_flat`: flat, GREW, or - when the run was too short to tell."""
        return {True: "flat", False: "GREW", None: "-"}[self.memory_flat[0]]

    @property
    def cpu_ms_per_request(self) -> float:
        done = [r for r in self.requests if r.error is None]
        return 1000 * self.cpu_s / max(1, len(done))

    @property
    def ok(self) -> bool:
        return not self.errors and not self.uploads_left and self.memory_flat[0] is not False

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> LoadResult:
        raw = json.loads(text)
        requests = [Request(**request) for request in raw.pop("requests")]
        memory = [(at, rss) for at, rss in raw.pop("memory")]
        return cls(requests=requests, memory=memory, **raw)


def _student(index: int, url: str, photo: Path, model: str | None, k_max: int, start: float, stop_at: float, records, lock) -> None:
    """One session: upload a photo, then move the slider once every 1-2 s until `stop_at` (model None: the floor app's
    endpoints, which take the photo and k alone)."""
    from gradio_client import handle_file

    rng = random.Random(index)
    settings = ShareSettings(k=min(ShareSettings.k, k_max))
    values = settings.widget_values()

    def call(endpoint: str, *args) -> None:
        began = time.monotonic()
        error = None
        try:
            session.call(endpoint, *args, timeout=max(1.0, stop_at + GRACE_S - began))
        except Exception as failure:  # any failure of one request is what this benchmark counts
            error = f"{failure.__class__.__name__}: {str(failure).strip().splitlines()[0] if str(failure).strip() else ''}"
        with lock:
            records.append(Request(endpoint, began - start, time.monotonic() - began, error))

    try:
        session = PageSession(url)
    except Exception as failure:
        with lock:
            records.append(Request("connect", time.monotonic() - start, 0.0, f"{failure.__class__.__name__}: {failure}"))
        return
    try:
        if model is None:
            call("/upload", handle_file(str(photo)))
        else:
            call("/prepare", handle_file(str(photo)), False, model, *values)
            call("/redraw", False, model, *values)  # the page redraws once a face has landed (`sae.app.ui`)
        while True:
            time.sleep(rng.uniform(1.0, 2.0))
            if time.monotonic() >= stop_at:
                return
            k = rng.randint(1, k_max)
            if model is None:
                call("/update", k)
            else:
                call("/update", model, k, *values[1:])
    finally:
        session.close()


def run(model: str | None, students: int = 30, duration: float = 120.0, log=print) -> LoadResult:
    """Start the server (the floor app when `model` is None), let the class work for `duration` seconds, stop it; the
    figures as a LoadResult."""
    import app as application

    k_max = floor_app.K_MAX if model is None else json.loads((Path(model) / files.CONFIG).read_text())["k_max"]
    queue = ["--workers", str(application.WORKERS), "--queue-size", str(application.QUEUE_SIZE)]
    with tempfile.TemporaryDirectory(prefix="sae-load-") as scratch:
        gradio_dir, photos_dir = Path(scratch) / "gradio", Path(scratch) / "photos"
        gradio_dir.mkdir()
        photos_dir.mkdir()
        photos = make_faces(students, photos_dir)
        uploaded = {path.read_bytes() for path in photos}
        command, extra = (FLOOR, queue) if model is None else (OURS, ["--model", model])  # the floor queues as the app does
        with AppProcess(command, extra, env={"GRADIO_TEMP_DIR": str(gradio_dir)}) as app:
            from gradio_client import Client

            name = None
            if model is not None:
                api = Client(app.url, verbose=False).view_api(return_format="dict", print_info=False)
                name = next(p for p in api["named_endpoints"]["/update"]["parameters"] if p.get("label") == "Model")["parameter_default"]
            log(f"server up at {app.url} ({name or 'floor app'}); {students} students for {duration:g} s, a slider move every 1-2 s each")
            records: list[Request] = []
            lock = threading.Lock()
            start = time.monotonic()
            stop_at = start + duration
            cpu_before = app.cpu_seconds()
            threads = [
                threading.Thread(target=_student, args=(i, app.url, photos[i], name, k_max, start, stop_at, records, lock), daemon=True)
                for i in range(students)
            ]
            for thread in threads:
                thread.start()
            memory = []
            while time.monotonic() < stop_at:
                memory.append((time.monotonic() - start, app.rss_mb()))
                time.sleep(5.0)
            for thread in threads:
                thread.join(timeout=GRACE_S)
            memory.append((time.monotonic() - start, app.rss_mb()))
            cpu = app.cpu_seconds() - cpu_before
            sizes = {len(data) for data in uploaded}
            left = [str(p) for p in gradio_dir.rglob("*") if p.is_file() and p.stat().st_size in sizes and p.read_bytes() in uploaded]
    settings = {"workers": application.WORKERS, "queue size": application.QUEUE_SIZE, "model": model or "none (the floor app)"}
    return LoadResult(students, duration, records, memory, cpu, left, settings)


def run_fresh(model: str | None, students: int = 30, duration: float = 120.0) -> LoadResult:
    """`run` with the students in a fresh interpreter (`python -m benchmarks.load --json`): a caller that has already
    done other work (benchmarks.run: models, a browser, training) would otherwise time the class with its own threads,
    heap and garbage collector in the way, and each model's figures could depend on what ran before it."""
    with tempfile.TemporaryDirectory(prefix="sae-load-json-") as scratch:
        out = Path(scratch) / "result.json"
        app = ["--floor"] if model is None else ["--model", model]
        command = [sys.executable, "-m", "benchmarks.load", *app, "--students", str(students), "--duration", str(duration)]
        limit = duration + GRACE_S + 300  # start-up and shut-down of both processes, with room to spare
        done = subprocess.run([*command, "--json", str(out)], cwd=REPO, capture_output=True, text=True, timeout=limit)
        if not out.exists():  # exit status 1 alone is a run that was not clean, which the result says
            raise RuntimeError(f"the load benchmark failed (exit status {done.returncode}): {done.stderr.strip()[-2000:]}")
        return LoadResult.from_json(out.read_text())


def milliseconds(values: Iterable[float]) -> str:
    """Latencies in ms as the load tables print them: whole numbers joined by " / ", "-" for none answered (NaN)."""
    return " / ".join("-" if np.isnan(value) else f"{value:.0f}" for value in values)


def _percentiles(result: LoadResult, endpoint: str) -> str:
    return milliseconds(result.percentiles_ms(endpoint))


def table(result: LoadResult) -> str:
    done = [r for r in result.requests if r.error is None]
    memory_text = result.memory_flat[1]
    rss = " / ".join(f"{rss:.0f}" for _, rss in result.memory[:: max(1, len(result.memory) // 6)])
    lines = [
        f"{result.students} students for {result.duration_s:g} s, one slider move every 1-2 s each (after one upload); "
        f"workers {result.settings['workers']}, queue size {result.settings['queue size']}; model {result.settings['model']}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores shared by the server and the students; "
        f"served by {server_stack()}",
        "",
        "| measure | value | target |",
        "|---|---:|---:|",
        f"| requests answered | {len(done)} | |",
        f"| errors | {len(result.errors)} | 0 |",
        f"| slider move /update p50 / p95 / p99 (ms) | {_percentiles(result, '/update')} | p95 <= 500, p99 <= 1000 |",
        *(
            f"| upload {endpoint} p50 / p95 / p99 (ms) | {_percentiles(result, endpoint)} | |"
            for endpoint in ("/prepare", "/upload")
            if len(result.latencies_ms(endpoint))
        ),
        f"| slider move /update p95 in each quarter of the run (ms) | {milliseconds(result.p95_by_part_ms('/update'))} | |",
        f"| moves answered per second | {len(result.latencies_ms('/update')) / result.duration_s:.1f} | |",
        f"| server CPU per request (ms) | {result.cpu_ms_per_request:.1f} | |",
        f"| server RSS over the run (MB) | {rss} | |",
        f"| memory after warm-up | {result.memory_verdict}: {memory_text} | flat |",
        f"| uploaded files left on disk | {len(result.uploads_left)} | 0 |",
    ]
    lines += [f"\nerror: {r.endpoint} at {r.started:.0f} s: {r.error}" for r in result.errors[:5]]
    return "\n".join(lines) + "\n"


def page(result: LoadResult, argv: list[str] | None) -> str:
    """docs/load.md: what was run, the table, and what the app does to keep a class's memory flat."""
    command = command_line("benchmarks.load", argv)
    return (
        "# A class at once\n\n"
        f"Written by `{command}` on {time.strftime('%Y-%m-%d %H:%M %Z')}: the app in a child process with its own queue "
        "settings, simulated students calling it as its page does (`benchmarks.serving.PageSession`) on the same machine "
        "(they share its cores with the server, hence the server's own CPU time per request).\n\n"
        + table(result)
        + "\nWhat keeps a long class's memory flat: every upload is read once and deleted; crops and codes live in one "
        "bounded cache shared by all sessions (`sae/app/face_cache.py`); a session holds only a reference; glibc's arenas "
        f"are trimmed every {TRIM_INTERVAL_S:g} s (`sae/app/memory.py`); share downloads are swept after "
        f"{OUTBOX_MAX_AGE / 60:g} minutes (`sae/app/outbox.py`).\n"
    )


def main(argv: list[str] | None = None) -> LoadResult:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.load", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default=str(files.default_model()), help="model directory")
    parser.add_argument(
        "--floor",
        action="store_true",
        help="the floor app instead of ours (--model is ignored)",
    )
    parser.add_argument("--students", type=int, default=30)
    parser.add_argument("--duration", type=float, default=120.0, help="seconds the class works")
    parser.add_argument("--short", action="store_true", help="4 students for 15 seconds")
    parser.add_argument("--out", default=None, help="also write the table as a page (docs/load.md)")
    parser.add_argument("--json", default=None, help="also write the raw result as JSON")
    args = parser.parse_args(argv)
    if args.short:
        args.students, args.duration = 4, 15.0
    result = run(None if args.floor else args.model, args.students, args.duration)
    print()
    print(table(result))
    if args.out:
        Path(args.out).write_text(page(result, sys.argv[1:] if argv is None else argv))
    if args.json:
        Path(args.json).write_text(result.to_json())
    if not result.ok:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
