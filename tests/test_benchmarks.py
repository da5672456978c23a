"""benchmarks/run.py in a quick mode (a tiny model, a few fake faces, two repeats), so the side-by-side table cannot rot.

The parts that start the app in child processes (app, browser, load) have their own checks: tests/test_load.py runs the
load benchmark's short mode, tests/test_browser.py drives the app in Chromium; here, their rows from faked
measurements, and the replay app in process and in a child process.
"""

from __future__ import annotations

import json
import os
import random
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from benchmarks import load, run
from sae.app.pipeline import curve_ks
from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS
from sae.zoo.hub import load_model

QUICK = ["--threads", "1", "--repeats", "2", "--train-presets", "tiny", "--train-batch", "4", "--train-steps", "1"]


@pytest.fixture
def tiny_dir(tmp_path):
    """The tiny preset's 20 groups with k_max 64 and code_dim 128, so every budget of the table (up to 2560) has a row."""
    torch.manual_seed(0)
    SparseAutoencoder(**(PRESETS["tiny"] | {"k_max": 64, "code_dim": 128})).save_pretrained(tmp_path / "model")
    return tmp_path / "model"


def test_quality_throughput_and_training_rows_compare(tiny_dir, fake_celeba, tmp_path, capsys):
    out, table = tmp_path / "bench.json", tmp_path / "bench.md"
    args = ["--models", str(tiny_dir), "--data", str(fake_celeba), "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    result = run.main([*args, "--out", str(table), "--parts", "quality", "throughput", "training", *QUICK])
    printed = capsys.readouterr().out
    parts, threads = [row["part"] for row in result["rows"]], len(run.target_threads())
    assert parts.count("quality") == 2 * len(run.BUDGETS) and parts.count("throughput") == 4 + 3 * threads and parts.count("training") == 1
    assert [row["budget"] for row in result["quality model"]["rows"]] == list(run.BUDGETS)
    assert all(row["comparison"].endswith("SSIM") for row in result["rows"] if row["part"] == "quality")
    assert sum("x JPEG's time" in row["comparison"] for row in result["rows"]) == 4
    assert sum("x the target" in row["comparison"] for row in result["rows"]) == 2 * threads  # the 128x128 speed targets
    assert sum("x the app's curve" in row["comparison"] for row in result["rows"]) == threads  # the every-k curve, a reference
    measured = [row["measure"] for row in result["rows"] if "x the target" in row["comparison"]]
    assert [m for m in measured if m.startswith("encode + decode")][0].startswith("encode + decode one face, 1 torch thread:")
    k_max = load_model(str(tiny_dir), fallback=None).model.k_max  # the app's curve and the every-k one name their k
    assert f"the app's quality curve ({len(curve_ks(k_max))} k), 1 torch thread: median ms" in measured
    every_k = [row["measure"] for row in result["rows"] if "x the app's curve" in row["comparison"]]
    assert f"the quality curve at every k ({k_max} k, reference), 1 torch thread: median ms" in every_k
    assert result["training"]["tiny"] > 0 and "cores, torch" in printed
    assert json.loads(out.read_text())["machine"]["cores"] >= 1 and table.read_text().startswith("# Benchmarks")
    assert f"Written by `python -m benchmarks.run {' '.join(args)} --out {table} --parts quality" in table.read_text()  # its own command


def test_a_model_without_its_data_is_skipped_and_said(tiny_dir, tmp_path, capsys):
    result = run.main(["--models", str(tiny_dir), "--data", str(tmp_path / "nowhere"), "--parts", "quality", *QUICK])
    assert result["rows"] == [] and f"quality of model (no data at {tmp_path / 'nowhere'})" in capsys.readouterr().out


def test_speed_targets_run_on_one_thread_and_every_core_and_threads_are_restored():
    assert run.target_threads() == sorted({1, min(run.TARGET_CORES, os.cpu_count() or 1)})
    before = torch.get_num_threads()
    with run.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_load_rows_put_the_floor_app_beside_each_model(monkeypatch):
    def fake(model, students, duration):
        seconds = 0.1 if model is None else 0.3
        requests = [load.Request("/update", float(i), seconds + i / 1000, None) for i in range(100)]
        return load.LoadResult(students, duration, requests, [], 2.0, [], {})

    monkeypatch.setattr(load, "run_fresh", fake)
    rows, raw = run.load_rows_of_each(["assets/models/utkface128"], 30, 120.0)
    assert [row.model for row in rows] == ["floor app"] * 2 + ["utkface128"] * 3
    assert raw["floor"]["p50_ms"] < raw["utkface128"]["p50_ms"] and raw["utkface128"]["cpu_ms_per_request"] == 20.0
    assert rows[2].reference.startswith(f"floor app {raw['floor']['p95_ms']:.0f} / {raw['floor']['p99_ms']:.0f} ms; target")
    quarters = raw["utkface128"]["p95_by_quarter_ms"]  # moves started in 0-30, 30-60, 60-90 and 90-120 s
    assert len(quarters) == 4 and quarters == sorted(quarters) and 300 < quarters[0] < 330 < quarters[1]
    assert rows[2].comparison == "0 errors; p95 in each quarter of the run " + " / ".join(f"{q:.0f}" for q in quarters) + " ms"


def test_the_replay_app_renders_each_view_once_and_replays_it(served_models, tmp_path):
    from benchmarks.replay_app import ReplayHandlers
    from benchmarks.serving import PHOTO
    from sae.app.settings import ShareSettings
    from sae.app.uploads import Uploads

    handlers = ReplayHandlers(served_models, tmp_path / "outbox", uploads=Uploads(tmp_path / "gradio"))
    name = served_models[0].name
    four, eight = ShareSettings(k=4).widget_values(), ShareSettings(k=8).widget_values()
    face = handlers.prepare(str(PHOTO), False, name, *four)[0]
    explored, explore = [], handlers.explore
    handlers.explore = lambda *args: explored.append(args[2].k) or explore(*args)
    first = handlers.update(face, name, *four)
    assert handlers.update(face, name, *four) is first  # replayed: the same rendered outputs, not rendered again
    other = handlers.update(face, name, *eight)
    assert other[0] != first[0] and handlers.update(face, name, *eight) is other
    assert explored == [4, 8] and len(handlers.rendered) == 2
    whole = handlers.select(face, True, name, *four)[0]  # the same upload, the whole image: another view
    assert whole.whole != face.whole and handlers.update(whole, name, *four)[0] != first[0]
    assert explored == [4, 8, 4, 4]  # select renders its view, and the update renders it again: not the crop's replayed


def test_browser_rows_put_the_replayed_steps_beside_each_model(monkeypatch):
    from benchmarks import browser

    def fake(models, steps, uploads, replay=False):
        assert replay
        times = {"floor": 0.04, models[0]: 0.08, models[0] + browser.REPLAYED: 0.06}
        return {name: {"step": [t] * 10, "upload": [t * 5] * 2} for name, t in times.items()}

    monkeypatch.setattr(browser, "run", fake)
    rows, summary = run.browser_rows(["assets/models/utkface128"], 10, 2)
    assert [row.model for row in rows] == ["utkface128"] * 3
    replayed = rows[1]  # right after the model's own steps
    assert "replayed" in replayed.measure and replayed.ours == "60 / 60 ms"
    assert replayed.comparison.startswith("1.50x (95% interval 1.50x-1.50x) / 1.50x")
    assert rows[0].comparison.startswith("2.00x (95% interval 2.00x-2.00x) / 2.00x") and "not replayed" in browser.markdown(summary)
    assert rows[0].comparison.endswith("(targets 1.5x / 2x: missed / met)")  # p90 exactly at its target: met


def test_a_ratio_a_hair_over_its_target_is_missed_though_it_rounds_to_it():
    from benchmarks.document import verdict

    assert (verdict(1.2, 1.2), verdict(1.2005, 1.2), verdict(0.9, 1.2)) == ("met", "missed", "met")


def test_the_median_ratios_interval_keeps_each_turns_pair_and_narrows_with_more_turns():
    from benchmarks.serving import median_ratio_interval, percentile

    rng = random.Random(3)
    floor = [rng.uniform(30, 90) for _ in range(150)]
    assert median_ratio_interval([1.5 * t for t in floor], floor) == pytest.approx((1.5, 1.5))  # turns drawn apart would spread it
    ours = [1.4 * t + rng.gauss(0, 15) for t in floor]
    low, high = median_ratio_interval(ours, floor)
    assert low < percentile(ours, 50) / percentile(floor, 50) < high and median_ratio_interval(ours, floor) == (low, high)
    short_low, short_high = median_ratio_interval(ours[:30], floor[:30])
    assert short_high - short_low > high - low
    with pytest.raises(ValueError, match="paired"):
        median_ratio_interval(ours, floor[:-1])


def test_the_median_ratios_interval_golden_values():
    """Percentile-method bounds of nearest-rank medians: every bound is a ratio of two measured steps (an even count,
    where an averaged median would not be), and a lower level lies inside."""
    from benchmarks.serving import median_ratio_interval

    floor = [40.0, 52.0, 61.0, 45.0, 55.0, 48.0, 70.0, 50.0]
    ours = [60.0, 80.0, 71.0, 66.0, 90.0, 58.0, 95.0, 64.0]
    assert median_ratio_interval(ours, floor) == pytest.approx((71 / 61, 90 / 55))
    assert median_ratio_interval(ours, floor, level=0.5) == pytest.approx((71 / 55, 90 / 61))


def test_the_slider_probe_times_the_apps_move_on_the_apps_threads_and_restores_them(monkeypatch):
    import torch

    from app import TORCH_THREADS
    from benchmarks import bench_app, slider_runs

    seen = []

    def timings(model, repeats):
        seen.append((model, repeats, torch.get_num_threads()))
        return {"upload work": {"median_ms": 1.0}, bench_app.SLIDER_MOVE: {"median_ms": 12.5}}

    monkeypatch.setattr(slider_runs, "handler_timings", timings)
    before = torch.get_num_threads()
    torch.set_num_threads(2 if TORCH_THREADS != 2 else 1)
    try:
        threads = torch.get_num_threads()
        assert slider_runs.probe_ms("some/model") == 12.5 and torch.get_num_threads() == threads
    finally:
        torch.set_num_threads(before)
    assert seen == [("some/model", slider_runs.PROBE_REPEATS, TORCH_THREADS)]


def test_the_replay_app_serves_like_the_app(tiny_model_dirs):
    from gradio_client import Client, handle_file

    from benchmarks.serving import PHOTO, REPLAY, AppProcess
    from sae.app.settings import ShareSettings

    with AppProcess(REPLAY, ["--model", str(tiny_model_dirs["celeba"])]) as replayed:
        client = Client(replayed.url, verbose=False, download_files=False)
        values = ShareSettings(k=4).widget_values()
        names = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/prepare", "/update", "/share"} <= set(names)
        name = str(tiny_model_dirs["celeba"])
        client.predict(handle_file(str(PHOTO)), False, name, *values, api_name="/prepare")
        panels = client.predict(name, *values, api_name="/update")[0]
        assert 'id="caption-1"' in panels and client.predict(name, *values, api_name="/update")[0] == panels


def test_app_rows_split_the_servers_cpu_into_carrying_outputs_and_the_handler(monkeypatch):
    from benchmarks import bench_app

    model = "assets/models/utkface128"
    handlers = {model: {"slider move": {"median_ms": 20.0, "p90_ms": 22.0}}}
    cpu = {"floor": {"cpu_ms_per_move": 30.0, "text_kb_per_move": 0.01}, model: {"cpu_ms_per_move": 39.0, "text_kb_per_move": 123.4}}
    result = {"handlers": handlers, "server_cpu": cpu, "server_cpu_replayed": {model: {"cpu_ms_per_move": 12.0}}}
    result["start"] = {"ours_s": 4.802, "floor_s": 4.0, "ratio": 1.2005}
    result["analytics"] = {"10000": {"gradio_ms": 7.5, "ours_ms": 0.002}}
    monkeypatch.setattr(bench_app, "run", lambda *args: result)
    rows, _ = run.app_rows([model], 2, 40, 1)
    replayed = rows[2]  # right after the model's own server CPU row
    assert rows[1].measure.startswith("server CPU per slider move (") and "replayed" in replayed.measure
    assert replayed.ours == "12.0 ms" and replayed.comparison == "0.40x the floor; the handler's work: 27.0 ms"
    table = bench_app.markdown(result)
    assert (
        "| assets/models/utkface128 | 39.0 | 30.0 | 40 | 123 |\n| assets/models/utkface128, the handler's work replayed | 12.0 | 30.0 | | |"
        in table
    )
    assert next(row.ours for row in rows if row.measure.startswith("sent to the browser")) == "123 kB"
    start = next(row for row in rows if row.measure.startswith("process start"))
    assert start.comparison == "1.20x the floor (target 1.2x: missed)"  # a miss that rounds to the target says so
    analytics = rows[-1]
    assert "after 10,000 events" in analytics.measure and (analytics.ours, analytics.reference) == ("0.002 ms", "Gradio's defaults 7.50 ms")
    assert "after 10000 events: 7.50 ms with its defaults, 0.002 ms with app.py's." in table
    assert "ratio 1.20x (target 1.2x: missed)." in table


@pytest.mark.filterwarnings("ignore:'future.no_silent_downcasting'", "ignore:The copy keyword is deprecated")  # Gradio's pandas calls
def test_the_apps_analytics_settings_take_the_summary_off_every_event(monkeypatch):
    """The app's queue keeps 1,000 records and rebuilds Gradio's analytics summary once per 1,000 events, where
    Gradio's defaults rebuild a table of up to 10,000 records after every event."""
    import gradio as gr
    from gradio.queueing import Queue

    import app
    from benchmarks.bench_app import GRADIO_ANALYTICS_DEFAULTS, analytics_ms_per_event

    monkeypatch.setattr(os, "environ", {k: v for k, v in os.environ.items() if k not in app.QUEUE_ANALYTICS})
    with gr.Blocks() as demo:
        gr.Markdown()
    queue = app.queue(demo)._queue
    ours = (queue.ANALYTICS_MAX_EVENTS, queue.ANAYLTICS_CACHE_FREQUENCY)
    assert ours == (1000, 1000) and queue.default_concurrency_limit == app.WORKERS
    rebuilt = []
    table = Queue._get_df
    monkeypatch.setattr(Queue, "_get_df", staticmethod(lambda records: rebuilt.append(len(records)) or table(records)))
    analytics_ms_per_event(2000, *GRADIO_ANALYTICS_DEFAULTS, events=20)
    assert rebuilt == [2000] * 20
    rebuilt.clear()
    analytics_ms_per_event(2000, *ours, events=1500)
    assert rebuilt == [1000]  # one rebuild in 1,500 events, of at most 1,000 records


def test_text_bytes_counts_the_text_outputs_in_utf8():
    from benchmarks.bench_app import text_bytes

    assert text_bytes(("<p>é</p>", None, {"path": "/tmp/x.png"}, "ab")) == len("<p>é</p>".encode()) + 2 == 11
    assert text_bytes("abc") == 3 and text_bytes(None) == 0


def test_a_cpu_profile_splits_into_javascript_copies_and_the_collector():
    from benchmarks.browser_profile import markdown, profile_summary

    def node(id_, name, url="", children=()):
        return {"id": id_, "callFrame": {"functionName": name, "url": url}, "children": list(children)}

    profile = {
        "nodes": [
            node(1, "(root)", children=[2, 3, 4, 5]),
            node(2, "(idle)"),
            node(3, "get_data", "http://x/assets/src.js", [6]),
            node(4, "(garbage collector)"),
            node(5, "render", "http://x/assets/HTML.js"),
            node(6, "structuredClone"),
        ],
        "samples": [2, 6, 6, 3, 4, 5, 2],
        "timeDeltas": [0, 1000, 2000, 2000, 1000, 500, 3000],  # microseconds; a sample lasts until the next
    }
    row = profile_summary(profile, steps=2)
    assert row["js_ms"] == 4.25 and row["snapshot_ms"] == 2.5 and row["gc_ms"] == 0.25
    assert row["top"] == [("structuredClone (native)", 2.0), ("render (HTML.js)", 1.5), ("get_data (src.js)", 0.5)]
    callers = {"event inputs and triggers": 100.0, "status updates": 750.0, "elsewhere": 50.0}
    row |= {"step_ms": 70.0, "clones": 900.0, "cloned_kb": 512.0, "callers": callers}
    line = markdown({"ours": row}).splitlines()[2]
    assert line.startswith("| ours | 70 | 4.2 | 2.5 | 0.2 | 900: 100 / 750 / 50 | 512 kB | structuredClone (native) 2.0;")


def test_the_profile_document_names_the_command_that_made_it():
    from benchmarks.browser_profile import document

    text = document("| t |\n", ["--steps", "5", "--out", "docs/x.md"])
    assert "`python -m benchmarks.browser_profile --steps 5 --out docs/x.md`" in text and text.endswith("| t |\n")
    assert "structuredClone" in text  # what the columns mean


def test_the_benchmarks_phone_photo_is_an_upright_portrait_with_its_face(tmp_path):
    """What bench_app times as a phone photo: a 12-megapixel JPEG stored on its side, whose face the app finds."""
    from benchmarks.bench_app import PHONE_SIZE, phone_photo
    from sae.core.faces import detect_faces, load_photo

    path = phone_photo(tmp_path)
    with Image.open(path) as stored:
        assert stored.size == PHONE_SIZE and stored.format == "JPEG" and stored.getexif()[0x0112] == 6
    photo = load_photo(path)
    assert photo.width < photo.height and len(detect_faces(photo)) == 1


def test_the_browser_benchmark_measures_in_turns_with_only_the_measured_server_running(monkeypatch, tmp_path):
    from benchmarks import browser

    running, timed = {}, []

    class Server:
        def __init__(self, name: str) -> None:
            self.name = name

        def pause(self) -> None:
            running[self.name] = False

        def resume(self) -> None:
            running[self.name] = True

    class Page:
        def __init__(self, name: str) -> None:
            self.name = name

        def wait_for_timeout(self, ms: float) -> None:
            pass

        def locator(self, selector: str):
            return self

        def focus(self) -> None:
            pass

    def only_this_one_runs(page: Page) -> None:
        assert running[page.name] and not any(up for name, up in running.items() if name != page.name)

    def upload(page: Page, image: str, photo) -> float:
        only_this_one_runs(page)
        timed.append(("upload", page.name, photo.name))
        return 0.5

    def slider_step(page: Page, caption: str, step: int) -> float:
        only_this_one_runs(page)
        timed.append(("step", page.name, step))
        return 0.1 + step

    monkeypatch.setattr(browser, "upload", upload)
    monkeypatch.setattr(browser, "slider_step", slider_step)
    photos = [tmp_path / f"{i}.png" for i in range(4)]
    listed = browser.subjects(["m"], photos, uploads=2, replay=True)
    names = [subject.name for subject in listed]
    assert names == ["floor", "m", "m" + browser.REPLAYED]
    servers = {name: Server(name) for name in names}
    results = browser.measure(listed, {name: Page(name) for name in names}, servers, steps=2)
    replayed = "m" + browser.REPLAYED
    assert timed[:5] == [
        ("upload", "floor", "0.png"), ("upload", "m", "2.png"), ("upload", replayed, "2.png"),
        ("upload", "floor", "1.png"), ("upload", "m", "3.png"),
    ]  # fmt: skip
    warm = [("step", replayed, step) for step in range(browser.REPLAY_WARM_STEPS)]
    assert timed[5:] == warm + [
        ("step", "floor", 0), ("step", "m", 0), ("step", replayed, 2), ("step", "floor", 1), ("step", "m", 1), ("step", replayed, 3),
    ]  # fmt: skip
    assert results["floor"] == {"upload": [0.5, 0.5], "step": [0.1, 1.1]}
    assert results[replayed] == {"upload": [0.5], "step": [2.1, 3.1]}  # the warm steps are not counted


def test_a_frozen_app_process_takes_no_cpu_and_still_stops(tmp_path):
    import time
    from pathlib import Path

    from benchmarks.serving import AppProcess

    server = "import sys, http.server; port = int(sys.argv[sys.argv.index('--port') + 1]); " + (
        "http.server.HTTPServer(('127.0.0.1', port), http.server.SimpleHTTPRequestHandler).serve_forever()"
    )
    app = AppProcess([sys.executable, "-c", server])

    def reaches(states: str) -> bool:
        """Whether the child's state (from /proc) is one of `states` within 5 s: a signal is delivered asynchronously."""
        deadline = time.perf_counter() + 5
        while time.perf_counter() < deadline:
            if Path(f"/proc/{app.process.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in states:
                return True
            time.sleep(0.01)
        return False

    app.pause()
    assert reaches("T")  # stopped
    app.resume()
    assert reaches("RS")  # running or sleeping
    app.pause()
    started = time.perf_counter()
    app.stop()
    assert app.process.poll() is not None and time.perf_counter() - started < 10  # not left waiting for a thaw


def test_slider_runs_put_each_runs_probe_beside_its_ratio_and_name_the_command(monkeypatch, tmp_path):
    from benchmarks import browser, slider_runs

    probes, steps = iter([20.0, 30.0]), iter([0.06, 0.09])
    monkeypatch.setattr(slider_runs, "probe_ms", lambda model: next(probes))
    monkeypatch.setattr(slider_runs, "chromium_available", lambda: True)

    def fake(models, steps_per_app, uploads, replay=False):
        assert not replay and steps_per_app == 4 and uploads == 1
        ours = next(steps)
        return {"floor": {"step": [0.05] * 4, "upload": [0.1]}, models[0]: {"step": [ours] * 4, "upload": [0.2]}}

    monkeypatch.setattr(browser, "run", fake)
    out = tmp_path / "runs.md"
    argv = ["--runs", "2", "--steps", "4", "--uploads", "1", "--models", "assets/models/utkface128", "--out", str(out)]
    results = slider_runs.main(argv)
    assert [result["probe_ms"]["assets/models/utkface128"] for result in results] == [20.0, 30.0]
    text = out.read_text()
    assert f"`python -m benchmarks.slider_runs {' '.join(argv)}`" in text
    assert "| 1 | " in text and "| utkface128 | 20.0 | 60 | 50 | 1.20x | 1.20x-1.20x |" in text
    assert "| utkface128 | 30.0 | 90 | 50 | 1.80x | 1.80x-1.80x |" in text
    assert "utkface128: median ratio over 2 runs 1.20x to 1.80x (median 1.50x)." in text
    assert results[1]["seconds"]["assets/models/utkface128"]["step"] == [0.09] * 4  # every step kept


def test_a_model_without_its_decoder_blocks_is_the_model_with_every_decoder_branch_removed(tiny_model):
    import copy

    from benchmarks.lighter_decoder import without_decoder_blocks
    from sae.core.model import ResidualBlock

    torch.manual_seed(1)
    for block in (layer for part in (tiny_model.encoder, tiny_model.decoder) for layer in part if isinstance(layer, ResidualBlock)):
        torch.nn.init.normal_(block.conv2.weight, std=0.2)  # a fresh block's branch is zero: make it draw something
    branchless = copy.deepcopy(tiny_model)
    for index, layer in enumerate(branchless.decoder):
        if isinstance(layer, ResidualBlock):
            branchless.decoder[index] = torch.nn.Identity()
    lighter = without_decoder_blocks(tiny_model)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        codes = tiny_model.sparsify(tiny_model.encode(images), 4)
        torch.testing.assert_close(lighter.encode(images), tiny_model.encode(images), rtol=0, atol=0)  # the same codes
        torch.testing.assert_close(lighter.decode_unclamped(codes), branchless.decode_unclamped(codes))
        assert (lighter.decode_unclamped(codes) - tiny_model.decode_unclamped(codes)).abs().max() > 0.01  # the block drew
    assert lighter._hub_mixin_config["decoder_blocks"] == 0 and lighter._hub_mixin_config["blocks"] == 1
    assert not any(isinstance(layer, ResidualBlock) for layer in lighter.decoder)
    assert any(isinstance(layer, ResidualBlock) for layer in lighter.encoder)


@pytest.mark.parametrize("with_data", [True, False])
def test_the_lighter_decoder_benchmark_runs_the_copy_beside_the_model_and_tables_its_loss(
    with_data, monkeypatch, tmp_path, tiny_model_dirs, fake_utkface
):
    from benchmarks import browser, lighter_decoder, slider_runs
    from sae.zoo.files import DataNote

    served = []

    def fake(models, steps_per_app, uploads, replay=False):
        served.append(models)
        copy = load_model(models[1], fallback=None)
        assert copy.model._hub_mixin_config["decoder_blocks"] == 0 and DataNote.read(copy.directory).dataset == "utkface"
        steps = dict(zip(models, (0.08, 0.07), strict=True))
        return {"floor": {"step": [0.05] * 2, "upload": [0.1]}} | {m: {"step": [t] * 2, "upload": [0.2]} for m, t in steps.items()}

    monkeypatch.setattr(browser, "run", fake)
    monkeypatch.setattr(slider_runs, "probe_ms", lambda model: 10.0)
    monkeypatch.setattr(lighter_decoder, "chromium_available", lambda: True)
    monkeypatch.setattr(lighter_decoder, "DATA", {"utkface": fake_utkface if with_data else tmp_path / "absent"})
    out = tmp_path / "lighter.md"
    model = str(tiny_model_dirs["utkface"])
    argv = ["--model", model, "--runs", "1", "--steps", "2", "--uploads", "1", "--faces", "2", "--cache-dir", str(tmp_path)]
    argv += ["--out", str(out)]
    result = lighter_decoder.main(argv)
    assert len(served) == 1 and served[0][0] == model and Path(served[0][1]).name == "utkface-without-decoder-blocks"
    text = out.read_text()
    assert f"`python -m benchmarks.lighter_decoder {' '.join(argv)}`" in text
    assert "| utkface | 10.0 | 80 | 50 | 1.60x |" in text and "| utkface-without-decoder-blocks | 10.0 | 70 | 50 | 1.40x |" in text
    if with_data:
        assert "PSNR (dB) / SSIM on the first 2 test faces:" in text and "No quality table" not in text
        assert sorted(result["quality"][model]) == ["16", "8"]  # the ks up to the tiny model's k_max of 24
    else:
        assert f"No quality table: the model's data ({tmp_path / 'absent'}) is not beside the checkout." in text
        assert "PSNR (dB)" not in text and result["quality"] == {}


def test_the_lighter_decoder_quality_table_gives_what_the_copy_loses():
    from benchmarks.lighter_decoder import quality_table

    scores = {"a/utkface128": {8: {"psnr": 24.0, "ssim": 0.8}}, "b/utkface128-without-decoder-blocks": {8: {"psnr": 22.75, "ssim": 0.71}}}
    table = quality_table(scores, 256)
    assert "| k | utkface128 | utkface128-without-decoder-blocks | lost (dB) |" in table
    assert "| 8 | 24.00 / 0.800 | 22.75 / 0.710 | 1.25 |" in table


def test_the_lighter_copy_is_refused_when_the_default_extra_attack_needs_a_fitted_part(monkeypatch, tmp_path, tiny_model_dirs):
    """The copy ships no fitted attacks: with a default that needs one, its moves would skip work the model's do."""
    from types import SimpleNamespace

    from benchmarks import lighter_decoder
    from sae.privacy import catalogue

    fitted = next(name for name in catalogue.EXTRA_ATTACKS if catalogue.ATTACKS[name].needs is not None)
    monkeypatch.setattr(lighter_decoder, "ShareSettings", lambda: SimpleNamespace(extra_attack=fitted))
    with pytest.raises(RuntimeError, match="fitted part"):
        lighter_decoder.lighter_copy(str(tiny_model_dirs["utkface"]), tmp_path)
    assert not any(tmp_path.iterdir())
