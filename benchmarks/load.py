"""Load: a class of visitors at once against the app on loopback, through gradio_client; prints a Markdown table.

    python -m benchmarks.load                          # bundled model, 30 clients x 20 slider moves x 3 rounds
    python -m benchmarks.load --face-cache 32          # a cache smaller than all uploads: RSS must level off
    python -m benchmarks.load --short --model DIR      # 4 clients x 5 moves x 2 rounds (tests/test_load.py)

The server is `app.serve` (the app's own queue settings) in a child process with its own Gradio folder. Each client
is one session: per round it uploads a face of its own (crops, flips and tints of the public-domain astronaut photo,
all different), asks for the k-curve, then moves the k slider through /update. After each round the child reports its
RSS and how many uploads its per-image cache holds, so memory growth across rounds is visible and checked (see
`LoadResult.memory`). Latency is measured at the client from request to result (queue wait included, image downloads
not). Bounded in count (clients x rounds x (interactions + 2) requests) and in time (`--deadline`: requests still
pending then count as errors). Exits non-zero when any request failed, a client could not connect, the cache outgrew
its capacity, memory kept growing once the cache was full, or an upload was left on disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from sae.app.memory import TRIM_INTERVAL_S

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "astronaut.png"
BUNDLED = REPO / "assets" / "model"
CONTROLS = (1.0, True, 2.0, True, True, 0.5, "magnitude")  # owner fraction, decoys, k'/k, fill, permute, known, attack
STATS = "LOADSTATS "
MEMORY_SLACK = 0.10  # RSS may end this much above the round the cache filled (LoadResult.memory explains why)


# ---------------------------------------------------------------------------------------------------
# The server: the app in a child process that reports its memory and cache on request
# ---------------------------------------------------------------------------------------------------


def _memory_kb() -> tuple[int | None, int]:
    """(current RSS, peak RSS) of this process in kB; the current value needs Linux's /proc."""
    status = Path("/proc/self/status")
    if status.is_file():
        fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])
    import resource

    return None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def serve(model: str | None, port: int, face_cache: int, trim_interval_s: float | None) -> None:
    """Child side: serve the app, then answer "stats" lines on stdin until "quit"."""
    import app
    from sae.app.face_cache import entry_bytes
    from sae.app.ui import Handlers
    from sae.zoo.hub import load_model

    loaded = load_model(model)
    handlers = Handlers(loaded, cache_size=face_cache)
    demo = app.serve(loaded, "127.0.0.1", port, face_cache, block=False, handlers=handlers, trim_interval_s=trim_interval_s)
    model = loaded.model
    entry = entry_bytes(model.num_groups, model.code_dim, model.image_size)
    print(STATS + json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() == "quit":
            break
        rss, peak = _memory_kb()
        stats = {"rss_kb": rss, "peak_kb": peak, "cache": len(handlers.faces), "capacity": handlers.faces.capacity, "entry_bytes": entry}
        stats["trimming"] = demo.memory_trimmer is not None and demo.memory_trimmer.running
        print(STATS + json.dumps(stats), flush=True)
    if demo.memory_trimmer is not None:
        demo.memory_trimmer.stop()
    demo.close()


class Server:
    """Parent side: the child process, its URL and its Gradio folder."""

    def __init__(self, model: str | None, face_cache: int, gradio_dir: Path, trim_interval_s: float | None, timeout: float = 180.0):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}/"
        env = os.environ | {"GRADIO_TEMP_DIR": str(gradio_dir), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
        command = [sys.executable, "-m", "benchmarks.load", "--serve", "--port", str(self.port), "--face-cache", str(face_cache)]
        command += ["--trim-interval", str(trim_interval_s or 0)]
        self.process = subprocess.Popen(
            command + (["--model", model] if model else []),
            cwd=REPO,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.log: list[str] = []
        self._read(timeout)

    def _read(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                raise RuntimeError("the server exited:\n" + "".join(self.log[-20:]))
            if line.startswith(STATS):
                return json.loads(line[len(STATS) :])
            self.log.append(line)
        raise RuntimeError("the server did not answer in time")

    def stats(self) -> dict:
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return self._read(60)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.write("quit\n")
            self.process.stdin.flush()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


# ---------------------------------------------------------------------------------------------------
# The visitors
# ---------------------------------------------------------------------------------------------------


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
        path = folder / f"visitor-{index:03d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(path)
    return paths


@dataclass
class Request:
    round: int
    endpoint: str
    seconds: float
    error: str | None = None


@dataclass
class LoadResult:
    clients: int
    interactions: int
    rounds: int
    wall_s: float
    requests: list[Request]
    rounds_stats: list[dict]
    uploads_left: list[str]
    stopped: str | None = None  # why the rounds ended early: "deadline", or "connect" (a client could not connect)
    settings: dict = field(default_factory=dict)

    @property
    def errors(self) -> list[Request]:
        return [r for r in self.requests if r.error is not None]

    @property
    def connect_failures(self) -> list[Request]:
        return [r for r in self.errors if r.endpoint == "connect"]

    @property
    def deadline_hit(self) -> bool:
        return self.stopped == "deadline"

    @property
    def memory(self) -> tuple[bool | None, str]:
        """(whether memory stopped growing once the cache was full, the comparison in words); None: cannot tell.

        The rule: the last round's RSS may exceed the RSS after the first round in which the cache was full by at most
        MEMORY_SLACK (10%). Once the cache is full every upload evicts one, so what the app means to keep is constant
        and RSS should stay level up to allocator noise: it is mostly the interpreter, torch and Gradio, and glibc keeps
        freed blocks in its arenas for reuse, so the same live data shows a few percent of drift between rounds; 10%
        stays above that drift. A leak that grows with traffic crosses it within a round: e.g. holding on to each slider
        move's four 256x256 images (0.8 MB) would add about 480 MB over a default round of 600 moves. When the cache is
        full only in the last round, or never (the default 256 entries outlast 3 rounds of 30), an earlier round is the
        baseline and the entries added since are allowed on top, at their computed size (`sae.app.face_cache.entry_bytes`).
        With three rounds or more the baseline is never round 1: the first round warms Gradio's and the allocator's
        pools (measured here, 30 clients: 1104 -> 1244 MB with the cache far from full, 1113 -> 1241 MB with a
        32-entry cache full from round 2, after which RSS stayed within 1241-1299 MB for three more rounds; later runs
        of that setting grew 35-110 MB a round until the app trimmed glibc's arenas (sae.app.memory) and stopped skipped
        outputs from piling component copies into Gradio's sessions (sae.app.ui.Handlers.update); see the README).
        A leak smaller than 10% of the process over the run (say one upload's 0.12 MB per upload) goes unseen here; the
        cache's own bound is checked by `cache_bounded`.
        """
        rounds = [s for s in self.rounds_stats if s.get("rss_kb")]
        if len(rounds) < 2:
            return None, "not checked (needs the current RSS, from Linux's /proc, after at least two rounds)"
        full = [i for i, s in enumerate(rounds[:-1]) if s["cache"] >= s["capacity"]]
        warmed = 1 if len(rounds) >= 3 else 0  # round 1 is warm-up: measured +68 to +140 MB into round 2
        base_index = max(full[0], warmed) if full else warmed
        base, last = rounds[base_index], rounds[-1]
        added_kb = max(0, last["cache"] - base["cache"]) * last.get("entry_bytes", 0) / 1024
        limit_kb = base["rss_kb"] * (1 + MEMORY_SLACK) + added_kb
        what = "the cache filled" if full and base_index == full[0] else f"round {base_index + 1}, after warm-up"
        entries = f", +{added_kb / 1024:.1f} MB for new cache entries" if added_kb else ""
        text = (
            f"last round {last['rss_kb'] / 1024:.0f} MB vs {base['rss_kb'] / 1024:.0f} MB after {what} (round {base_index + 1}); "
            f"limit {limit_kb / 1024:.0f} MB (+{MEMORY_SLACK:.0%}{entries})"
        )
        return last["rss_kb"] <= limit_kb, text

    @property
    def peak_rss_mb(self) -> float:
        return max(s["peak_kb"] for s in self.rounds_stats) / 1024

    @property
    def cache_bounded(self) -> bool:
        return all(s["cache"] <= s["capacity"] for s in self.rounds_stats)

    def latencies_ms(self, endpoint: str | None = None) -> np.ndarray:
        return np.array([r.seconds * 1000 for r in self.requests if r.error is None and endpoint in (None, r.endpoint)])

    @property
    def ok(self) -> bool:
        return not self.errors and self.cache_bounded and not self.uploads_left and self.stopped is None and self.memory[0] is not False


def _visitor(index, url, faces, interactions, k_max, stop_at, records, barrier, lock) -> None:
    """One session: per round, upload its face, get the curve, move the slider `interactions` times."""
    from gradio_client import Client, handle_file

    def call(round_: int, endpoint: str, *args) -> None:
        started = time.perf_counter()
        error = None
        if time.monotonic() > stop_at:
            error = "deadline"
        else:
            try:
                client.submit(*args, api_name=endpoint).result(timeout=max(1.0, stop_at - time.monotonic()))
            except Exception as failure:  # any failure of one request is what this benchmark counts
                error = _describe(failure)
        with lock:
            records.append(Request(round_, endpoint, time.perf_counter() - started, error))

    try:
        client = Client(url, verbose=False, download_files=False)
    except Exception as failure:  # counted like a failed request; the others stop at the next barrier
        with lock:
            records.append(Request(0, "connect", 0.0, _describe(failure)))
        barrier.abort()
        return
    try:
        for round_, round_faces in enumerate(faces):
            barrier.wait()
            call(round_, "/prepare", handle_file(str(round_faces[index])), False)
            call(round_, "/curve", min(32, k_max))
            for step in range(interactions):
                call(round_, "/update", 1 + (index * 7 + step * 13) % k_max, *CONTROLS)
            barrier.wait()
    except threading.BrokenBarrierError:
        return


def _describe(failure: Exception) -> str:
    text = str(failure).strip()
    return f"{failure.__class__.__name__}: {text.splitlines()[0] if text else ''}"


def run(
    model: str | None = None,
    clients: int = 30,
    interactions: int = 20,
    rounds: int = 3,
    face_cache: int | None = None,
    deadline: float = 900.0,
    log=print,
    trim_interval_s: float | None = TRIM_INTERVAL_S,
) -> LoadResult:
    """Start the server, drive it, stop it; the figures as a LoadResult."""
    from sae.app.face_cache import FACE_CACHE_SIZE

    face_cache = face_cache or FACE_CACHE_SIZE
    model_dir = Path(model) if model else BUNDLED
    k_max = json.loads((model_dir / "config.json").read_text())["k_max"]
    with tempfile.TemporaryDirectory(prefix="sae-load-") as scratch:
        gradio_dir, photos_dir = Path(scratch) / "gradio", Path(scratch) / "photos"
        gradio_dir.mkdir()
        photos_dir.mkdir()
        photos = make_faces(clients * rounds, photos_dir)
        faces = [photos[r * clients : (r + 1) * clients] for r in range(rounds)]
        uploaded = {path.read_bytes() for path in photos}
        server = Server(model, face_cache, gradio_dir, trim_interval_s)
        try:
            log(f"server up at {server.url}; {clients} clients x {rounds} rounds x (upload, curve, {interactions} slider moves)")
            records: list[Request] = []
            lock = threading.Lock()
            started = time.monotonic()
            stop_at = started + deadline
            barrier = threading.Barrier(clients + 1, timeout=deadline)
            shared = (server.url, faces, interactions, k_max, stop_at, records, barrier, lock)
            threads = [threading.Thread(target=_visitor, args=(i, *shared), daemon=True) for i in range(clients)]
            for thread in threads:
                thread.start()
            stats, stopped = [], None
            try:
                for round_ in range(rounds):
                    barrier.wait()
                    barrier.wait()
                    stats.append(server.stats())
                    now = stats[-1]
                    log(f"round {round_ + 1}: RSS {(now['rss_kb'] or 0) / 1024:.0f} MB, face cache {now['cache']}/{now['capacity']}")
            except threading.BrokenBarrierError:
                # A client that cannot connect records "connect" and then breaks the barrier; otherwise it timed out.
                with lock:
                    stopped = "connect" if any(r.endpoint == "connect" for r in records) else "deadline"
                stats.append(server.stats())
            wall = time.monotonic() - started
            for thread in threads:
                thread.join(timeout=5)
            sizes = {len(data) for data in uploaded}
            left = [str(p) for p in gradio_dir.rglob("*") if p.is_file() and p.stat().st_size in sizes and p.read_bytes() in uploaded]
        finally:
            server.close()
    settings = _server_settings() | {"face cache": face_cache, "model": str(model_dir), "memory trim": trim_interval_s}
    return LoadResult(clients, interactions, rounds, wall, records, stats, left, stopped, settings)


def _server_settings() -> dict:
    import app

    return {"workers": app.WORKERS, "queue size": app.QUEUE_SIZE}


def _every(seconds: float | None) -> str:
    return f"every {seconds:g} s" if seconds else "off"


def _percentiles(values: np.ndarray) -> str:
    if not len(values):
        return "-"
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return f"{p50:.0f} / {p95:.0f} / {p99:.0f}"


def table(result: LoadResult) -> str:
    ok = [r for r in result.requests if r.error is None]
    rss = " / ".join(f"{s['rss_kb'] / 1024:.0f}" if s["rss_kb"] else "-" for s in result.rounds_stats)
    cache = " / ".join(f"{s['cache']}" for s in result.rounds_stats)
    capacity = result.rounds_stats[-1]["capacity"] if result.rounds_stats else "?"
    memory_ok, memory_text = result.memory
    verdict = {True: "ok", False: "GREW", None: "-"}[memory_ok]
    lines = [
        f"{result.clients} clients x {result.rounds} rounds x (upload, curve, {result.interactions} slider moves); "
        f"workers {result.settings['workers']}, queue size {result.settings['queue size']}, face cache {result.settings['face cache']}, "
        f"memory trim {_every(result.settings.get('memory trim'))}; "
        f"model {result.settings['model']}; {platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| requests (done / planned) | {len(result.requests)} / {result.clients * result.rounds * (result.interactions + 2)} |",
        f"| errors | {len(result.errors)} |",
        f"| wall time (s) | {result.wall_s:.1f} |",
        f"| requests/s | {len(ok) / result.wall_s:.1f} |",
        f"| latency p50 / p95 / p99, all requests (ms) | {_percentiles(result.latencies_ms())} |",
        f"| slider move /update p50 / p95 / p99 (ms) | {_percentiles(result.latencies_ms('/update'))} |",
        f"| upload /prepare p50 / p95 / p99 (ms) | {_percentiles(result.latencies_ms('/prepare'))} |",
        f"| curve /curve p50 / p95 / p99 (ms) | {_percentiles(result.latencies_ms('/curve'))} |",
        f"| server peak RSS (MB) | {result.peak_rss_mb:.0f} |",
        f"| server RSS after each round (MB) | {rss} |",
        f"| face cache entries after each round (capacity {capacity}) | {cache} |",
        f"| memory once the cache was full | {verdict}: {memory_text} |",
        f"| uploaded files left on disk | {len(result.uploads_left)} |",
    ]
    if result.connect_failures:
        lines.append(f"| clients that could not connect | {len(result.connect_failures)} of {result.clients} |")
    if result.stopped == "connect":
        lines.append("| stopped early: a client could not connect | yes |")
    elif result.stopped == "deadline":
        lines.append("| stopped by the deadline | yes |")
    for request in result.errors[:5]:
        lines.append(f"\nerror: round {request.round + 1} {request.endpoint}: {request.error}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> LoadResult | None:
    """Run and print the table; the result (None for the server role); exit status 1 when the run was not clean."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model directory (default: the bundled assets/model)")
    parser.add_argument("--clients", type=int, default=30)
    parser.add_argument("--interactions", type=int, default=20, help="slider moves per client and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--face-cache", type=int, default=None, help="the server's per-image cache size (default: the app's)")
    parser.add_argument("--deadline", type=float, default=900.0, help="seconds for the whole run")
    parser.add_argument(
        "--trim-interval", type=float, default=TRIM_INTERVAL_S, help="seconds between the server's memory trims (sae.app.memory; 0: off)"
    )
    parser.add_argument("--short", action="store_true", help="4 clients x 5 moves x 2 rounds")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    trim = args.trim_interval or None  # 0: no trimmer
    if args.serve:
        from sae.app.face_cache import FACE_CACHE_SIZE

        serve(args.model, args.port, args.face_cache or FACE_CACHE_SIZE, trim)
        return None
    if args.short:
        args.clients, args.interactions, args.rounds = 4, 5, 2
    result = run(args.model, args.clients, args.interactions, args.rounds, args.face_cache, args.deadline, trim_interval_s=trim)
    print()
    print(table(result))
    if not result.ok:
        sys.exit(1)
    return result


if __name__ == "__main__":
    main()
