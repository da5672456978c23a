"""Run an app (ours, the floor or the replay app) in a child process on loopback, the way a visitor's browser meets
it, and read the child's own CPU time and memory from /proc: what the benchmarks and the browser test share."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
PHOTO = REPO / "assets" / "examples" / "astronaut.png"
OURS = [sys.executable, "app.py"]
FLOOR = [sys.executable, "-m", "benchmarks.floor_app"]
REPLAY = [sys.executable, "-m", "benchmarks.replay_app"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]


def server_stack() -> str:
    """The event loop and HTTP implementation uvicorn (under Gradio) runs the apps with: its "auto" choices, which
    take uvloop and httptools where installed (requirements.txt)."""
    import uvicorn
    from uvicorn.loops.auto import auto_loop_factory
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    loop = auto_loop_factory(use_subprocess=False).__module__.split(".")[0]
    return f"uvicorn {uvicorn.__version__}, {loop} loop, {AutoHTTPProtocol.__name__}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class AppProcess:
    """`command --port N` in a child process (offline, its own Gradio folder), from start until stopped."""

    def __init__(self, command: list[str], extra_args: list[str] | None = None, env: dict | None = None, timeout: float = 180.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        environment = os.environ | {"HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"} | (env or {})
        self.started = time.perf_counter()
        self.process = subprocess.Popen(
            [*command, "--port", str(self.port), *(extra_args or [])],
            cwd=REPO,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.start_seconds = self._wait(timeout)

    def _wait(self, timeout: float) -> float:
        while time.perf_counter() - self.started < timeout:
            try:
                with urllib.request.urlopen(self.url, timeout=1) as response:
                    if response.status == 200:
                        return time.perf_counter() - self.started
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.url} exited before serving: {self.process.stderr.read()[-2000:]}") from None
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"{self.url} did not serve within {timeout:g} s")

    def cpu_seconds(self) -> float:
        """User + system CPU time of the child so far (all its threads), from /proc/PID/stat."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return float("nan")

    def pause(self) -> None:
        """Freeze the child (SIGSTOP): it takes no CPU until `resume`, so an idle server costs a measured one nothing."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        """Thaw a child frozen by `pause` (harmless on one that is running)."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.resume()  # a frozen process would not act on the signal to end
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> AppProcess:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


class PageSession:
    """One visitor's session, calling endpoints the way the page does: a queued event through Gradio's queue
    (gradio_client), an unqueued one (the app's slider) as one POST to /gradio_api/run/predict naming the event by its
    fn_index, which is what the page sends and gradio_client never does (it queues every call). Session state stays on
    the server, as the page leaves it: its inputs go as null. A context manager (closes its connections)."""

    def __init__(self, url: str, timeout: float = 60.0) -> None:
        import httpx
        from gradio_client import Client

        self.client = Client(url, verbose=False, download_files=False)
        self.http = httpx.Client(base_url=url.rstrip("/") + "/", timeout=timeout)
        types = {component["id"]: component["type"] for component in self.client.config["components"]}
        self.unqueued = {
            f"/{dep['api_name']}": (dep["id"], [types[i] == "state" for i in dep["inputs"]], [types[i] == "state" for i in dep["outputs"]])
            for dep in self.client.config["dependencies"]
            if dep.get("api_name") and dep.get("queue") is False
        }

    def call(self, api_name: str, *args: object, timeout: float = 60.0) -> tuple:
        """The endpoint's outputs (the session's state outputs left out, as gradio_client does)."""
        if api_name not in self.unqueued:
            result = self.client.submit(*args, api_name=api_name).result(timeout=timeout)
            return result if isinstance(result, tuple) else (result,)
        fn_index, state_in, state_out = self.unqueued[api_name]
        if len(args) != state_in.count(False):
            raise TypeError(f"{api_name} takes {state_in.count(False)} values, got {len(args)}")
        values = iter(args)
        data = [None if state else next(values) for state in state_in]
        body = {"data": data, "fn_index": fn_index, "session_hash": self.client.session_hash, "event_data": None, "trigger_id": None}
        response = self.http.post("gradio_api/run/predict", json=body, timeout=timeout)
        if response.status_code != 200:
            raise RuntimeError(f"{api_name}: HTTP {response.status_code}: {response.text[:200]}")
        outputs = response.json()["data"]
        return tuple(value for value, state in zip(outputs, state_out, strict=True) if not state)

    def close(self) -> None:
        self.http.close()
        self.client.close()

    def __enter__(self) -> PageSession:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chromium_available() -> bool:
    import shutil

    return Path(CHROMIUM).exists() or shutil.which("chromium") is not None


def launch_chromium(playwright):
    """Debian's Chromium driven by Playwright (`playwright install` cannot download a browser here)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile as the nearest rank (one of the values, never an interpolation): every p90, p95 and p99 of the
    benchmarks, and the browser benchmark's medians (the in-process timings take `statistics.median`)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def median_ratio_interval(values: list[float], reference: list[float], level: float = 0.95, resamples: int = 2000) -> tuple[float, float]:
    """A bootstrap interval (percentile method, `level`) of median(values) / median(reference), the medians as
    `percentile` takes them, where values[i] and reference[i] were measured together (the browser benchmark's step i of
    an app and of the floor, in the same turn one after the other): each resample draws turns, keeping both of a turn.
    It bounds one run's sampling noise, not what changes between runs on a shared machine (for that, runs of the same
    code side by side: `benchmarks.slider_runs`). Seeded: the same timings give the same interval."""
    if len(values) != len(reference) or not values:
        raise ValueError(f"need paired timings, got {len(values)} and {len(reference)}")
    turns = np.random.default_rng(0).integers(0, len(values), size=(resamples, len(values)))
    ours, floor = np.asarray(values), np.asarray(reference)
    ratios = [percentile(ours[drawn].tolist(), 50) / percentile(floor[drawn].tolist(), 50) for drawn in turns]
    tail = (1 - level) / 2 * 100
    return percentile(ratios, tail), percentile(ratios, 100 - tail)
