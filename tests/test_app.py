"""app.py: which models it serves (--model repeated, SAE_MODEL comma-separated, failures listed), its one-line refusals,
what `import app` loads, and the launched app driven over HTTP as a visitor's browser would (gradio_client)."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import uvicorn
from gradio_client import Client, handle_file

from benchmarks.serving import server_stack
from sae.app.pipeline import curve_ks
from sae.app.settings import CONTROLS as CONTROL_NAMES
from sae.app.settings import NO_EXTRA
from sae.privacy.catalogue import ATTACKS
from sae.zoo import files
from tests.conftest import REPO, Page

EXAMPLE = REPO / "assets" / "examples" / "astronaut_face.png"
CONTROLS = [4, 1.0, "keyed", True, True, 2.0, True, 0.5, "magnitude"]  # ShareSettings(k=4).widget_values()


# ---------------------------------------------------------------------------------------------------
# main(): the models to serve and the refusals
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def launches(monkeypatch) -> list[dict]:
    """app.main with the launch replaced by a record of what it would serve, and no bundled model."""
    import app

    for name in ("SAE_MODEL", "SAE_FACE_CACHE", "GRADIO_SERVER_PORT", "GRADIO_SERVER_NAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(files, "BUNDLED", {})
    calls: list[dict] = []

    def serve(models, host, port, face_cache, failures=None, **options):
        calls.append(dict(models=[m.name for m in models], host=host, port=port, face_cache=face_cache, failures=failures))

    monkeypatch.setattr(app, "serve", serve)
    return calls


def test_model_repeated_serves_each_in_order(launches, tiny_model_dirs, capsys):
    import app

    celeba, utkface = str(tiny_model_dirs["celeba"]), str(tiny_model_dirs["utkface"])
    app.main(["--model", utkface, "--model", celeba, "--face-cache", "3", "--port", "7999"])
    assert launches == [dict(models=[utkface, celeba], host="127.0.0.1", port=7999, face_cache=3, failures=[])]
    out = capsys.readouterr()
    assert out.out.strip().splitlines()[-1] == f"serving {utkface} (a local directory), {celeba} (a local directory)"
    assert out.err == ""


def test_sae_model_is_comma_separated_and_the_flag_wins(launches, tiny_model_dirs, monkeypatch):
    import app

    celeba, utkface = str(tiny_model_dirs["celeba"]), str(tiny_model_dirs["utkface"])
    monkeypatch.setenv("SAE_MODEL", f"{celeba}, {utkface},")
    monkeypatch.setenv("SAE_FACE_CACHE", "5")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    app.main([])
    app.main(["--model", utkface])
    assert [call["models"] for call in launches] == [[celeba, utkface], [utkface]]
    assert {(call["face_cache"], call["host"], call["port"]) for call in launches} == {(5, "0.0.0.0", 7860)}


def test_a_source_that_fails_is_listed_not_fatal(launches, tiny_model_dirs, tmp_path, capsys):
    import app

    missing, celeba = tmp_path / "missing", str(tiny_model_dirs["celeba"])
    app.main(["--model", str(missing), "--model", celeba])
    (call,) = launches
    assert call["models"] == [celeba] and len(call["failures"]) == 1 and call["failures"][0].startswith(f"{missing}: ")
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"not serving {missing}: ") and "Traceback" not in err[0]


def test_no_model_at_all_is_a_one_line_exit(launches, tmp_path):
    import app

    with pytest.raises(SystemExit) as exited:
        app.main(["--model", str(tmp_path / "missing"), "--model", "../nowhere"])
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message and message.startswith("sae: no model could be loaded: ")
    assert f"{tmp_path / 'missing'}: " in message and "../nowhere: " in message and launches == []
    with pytest.raises(SystemExit, match="^sae: no model could be loaded"):
        app.main([])  # no source and no bundled model


def test_a_port_in_use_is_a_one_line_exit(tiny_model_dirs, monkeypatch):
    import app

    monkeypatch.setattr(files, "BUNDLED", {})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            app.main(["--model", str(tiny_model_dirs["celeba"]), "--port", str(port)])
    message = exited.value.code
    assert isinstance(message, str) and "\n" not in message and message.startswith(f"sae: cannot serve on 127.0.0.1:{port} (")
    assert message.endswith(f"Try --port {port + 1}") and "launch()" not in message


@pytest.mark.parametrize(
    "env, argv, message",
    [
        ({"SAE_FACE_CACHE": "lots"}, [], "argument --face-cache: expected a whole number of uploads, got 'lots'"),
        ({"SAE_FACE_CACHE": "0"}, [], "argument --face-cache: must be at least 1, got 0"),
        ({}, ["--face-cache", "2.5"], "argument --face-cache: expected a whole number"),
        ({}, ["--face-cache", "-1"], "argument --face-cache: must be at least 1, got -1"),
        ({"GRADIO_SERVER_PORT": "http"}, [], "argument --port: invalid int value: 'http'"),
    ],
)
def test_bad_settings_are_a_one_line_usage_error(launches, monkeypatch, capsys, env, argv, message):
    import app

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        app.main(argv)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and message in error.strip().splitlines()[-1] and "Traceback" not in error and launches == []


# ---------------------------------------------------------------------------------------------------
# What `import app` loads: the serving path, not the trainer or the evaluation
# ---------------------------------------------------------------------------------------------------

_IMPORTS = """
import json, sys
import gradio, huggingface_hub, numpy, PIL.Image, safetensors.torch, torch  # what serving needs anyway
before = set(sys.modules)
import app
print(json.dumps({"before": sorted(before), "after": sorted(sys.modules)}))
"""


@pytest.fixture(scope="module")
def imported() -> tuple[set[str], set[str]]:
    """(modules loaded before `import app`, modules loaded by it) in a fresh interpreter."""
    result = subprocess.run([sys.executable, "-c", _IMPORTS], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    before = set(modules["before"])
    return before, set(modules["after"]) - before


def _named(modules: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


def test_import_app_loads_neither_the_trainer_nor_the_evaluation(imported):
    before, loaded = imported
    assert "app" in loaded and "sae.app.handlers" in loaded
    assert _named(loaded | before, "sae.cli", "plotly") == []
    assert _named(loaded, "tqdm") == []  # (gradio's huggingface_hub loads tqdm itself: in `before`)


def test_import_app_loads_no_more_of_torch_distributed(imported):
    """`import torch` alone loads torch.distributed's core; nothing on the serving path may pull in more of it (the
    FSDP and DTensor modules come with torch._dynamo, which torchvision's package imports)."""
    _, loaded = imported
    assert _named(loaded, "torch.distributed", "torch._dynamo", "torchvision") == []


_SERVED = """
import gc, json, sys
import app
from sae.app.models import load_served
models, failures = load_served(sys.argv[1:-1])
frozen_before = gc.get_freeze_count()
demo = app.serve(models, "127.0.0.1", int(sys.argv[-1]), block=False, trim_interval_s=None, failures=failures)
print(json.dumps(REPORT))
demo.close()
"""


def _served_report(model_dirs: list[Path], report: str) -> dict:
    """`report` (a Python expression over the script's names, `demo` the served app) evaluated in a fresh interpreter
    that serves `model_dirs` through `app.serve`, as `python app.py` does."""
    env = os.environ | {"GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-c", _SERVED.replace("REPORT", report), *map(str, model_dirs), str(_free_port())]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (reported,) = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    return reported


def test_serving_takes_what_start_up_made_out_of_the_garbage_collectors_reach(tiny_model_dirs):
    """app.serve freezes the start-up objects (torch, Gradio, models, UI), so a full collection while serving scans
    only what requests made: far fewer objects than were frozen."""
    report = '{"before": frozen_before, "frozen": gc.get_freeze_count(), "tracked": len(gc.get_objects())}'
    counts = _served_report([tiny_model_dirs["celeba"], tiny_model_dirs["utkface"]], report)
    assert counts["before"] == 0
    assert counts["frozen"] > 100_000 and counts["tracked"] < counts["frozen"] // 10


def test_the_server_runs_on_uvloop_and_httptools(tiny_model_dirs):
    """requirements.txt installs uvloop (not on Windows) and httptools for the server Gradio starts (uvicorn's "auto"
    choices): the launched app must run on them, not on Python's own loop and HTTP parser."""
    required = (REPO / "requirements.txt").read_text()
    assert all(f"\n{name}>=" in required for name in ("uvicorn", "uvloop", "httptools"))
    report = '{"http": demo.server.config.http_protocol_class.__name__, "loop": type(demo.server.servers[0].get_loop()).__module__}'
    stack = _served_report([tiny_model_dirs["celeba"]], report)
    assert stack["http"] == "HttpToolsProtocol"
    expected = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    assert stack["loop"].split(".")[0] == expected and (expected == "uvloop" or sys.platform == "win32")
    assert server_stack() == f"uvicorn {uvicorn.__version__}, {expected} loop, HttpToolsProtocol"


def test_the_served_app_computes_on_one_torch_thread(tiny_model_dirs):
    """The README's "one torch thread each": app.serve sets torch's intra-op threads, which every handler shares, to
    TORCH_THREADS, one (two handlers at once already use both cores of a free Space)."""
    report = '{"threads": __import__("torch").get_num_threads(), "constant": app.TORCH_THREADS}'
    assert _served_report([tiny_model_dirs["celeba"]], report) == {"threads": 1, "constant": 1}


# ---------------------------------------------------------------------------------------------------
# The launched app over HTTP
# ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def gradio_dir(tmp_path_factory) -> Path:
    """The app's Gradio upload/cache folder (GRADIO_TEMP_DIR), so tests can see what stays on disk."""
    return tmp_path_factory.mktemp("gradio")


@pytest.fixture(scope="module")
def app_url(tiny_model_dirs, gradio_dir):
    port = _free_port()
    env = os.environ | {
        "SAE_MODEL": f"{tiny_model_dirs['celeba']},{tiny_model_dirs['utkface']}",
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(gradio_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stdout.read().decode())
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/"
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def models(tiny_model_dirs) -> tuple[str, str]:
    return str(tiny_model_dirs["celeba"]), str(tiny_model_dirs["utkface"])


def test_named_endpoints(app_url):
    named = set(Client(app_url, verbose=False).view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert named == {"/prepare", "/update", "/switch", "/share", "/decode", "/comparison"}
    assert not {"/select", "/share_preview", "/decode_received"} & named
    with urllib.request.urlopen(app_url + "config", timeout=10) as response:
        assert json.load(response)["run_history"] is False  # browsers keep no record of visitors' runs (their faces)
    for path in ("monitoring/summary", "gradio_api/monitoring"):  # Gradio serves both unless monitoring is off
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(app_url + path, timeout=10)
        assert refused.value.code in (403, 404), path


def test_every_endpoint_in_a_session(app_url, models):
    celeba, utkface = models
    client = Client(app_url, verbose=False)
    page = Page()  # what one browser page shows: the model input arrives with a new face or model, not with a move
    prepared = client.predict(handle_file(str(EXAMPLE)), False, celeba, *CONTROLS, api_name="/prepare")
    note, panels, chart, linkage, budget, table = page.show(prepared)
    assert "Face found" in note and panels.count("<figure") == 5 and panels.count("<img") == 5 and "<svg" in chart
    assert "Linkage" in linkage and "16 non-zeros" in budget
    assert [row[0] for row in table["data"]] == curve_ks(16)
    panels, chart, linkage, budget = page.show(client.predict(celeba, 8, *CONTROLS[1:], api_name="/update"))
    assert "key holder at k = 8" in chart and "32 non-zeros" in budget and panels.count("<img") == 5
    assert page.props["reference"] not in client.predict(celeba, 8, *CONTROLS[1:], api_name="/update")[0]  # not resent
    by_name = dict(zip(CONTROL_NAMES, [8, *CONTROLS[1:]], strict=True)) | dict(scheme="paper", extra_attack=NO_EXTRA)
    named = client.predict(model_name=celeba, **by_name, api_name="/update")  # the API names every input
    assert named[1:] == client.predict(celeba, 8, 1.0, "paper", *CONTROLS[3:-1], NO_EXTRA, api_name="/update")[1:]
    assert "points to this photo" in named[2] and "does not point" in linkage  # the scheme arrived by name
    assert ATTACKS["magnitude"].title in panels and ATTACKS["magnitude"].title not in named[0]  # and the extra attack
    k, note, panels, *_ = page.show(client.predict(utkface, 16, *CONTROLS[1:], api_name="/switch"))
    assert (k["maximum"], k["value"]) == (24, 16) and "UTKFace" in note and "Model input (128x128)" in panels and "16 per group" in _[2]
    assert "20 per group" in client.predict(utkface, 20, *CONTROLS[1:], api_name="/update")[3]  # the slider reaches 24 now
    k, note, panels, *_ = page.show(client.predict(celeba, 20, *CONTROLS[1:], api_name="/switch"))
    assert (k["maximum"], k["value"]) == (16, 16) and "CelebA" in note and "Model input (64x64)" in panels
    comparison = client.predict(celeba, *CONTROLS, api_name="/comparison")
    assert Path(comparison).suffix == ".png" and Path(comparison).name.startswith("comparison-k4-")
    public, key, note = client.predict(celeba, "pass", 8, *CONTROLS[1:], api_name="/share")
    assert public.endswith(".saep") and key.endswith(".saek") and "passphrase-protected" in note
    image, text = client.predict(handle_file(public), handle_file(key), celeba, "pass", 1.0, api_name="/decode")
    assert Path(image).suffix == ".png" and text.startswith("Decoded with 32 entries")
    image, text = client.predict(handle_file(public), handle_file(key), celeba, "nope", 1.0, api_name="/decode")
    assert image is None and "Passphrase" in text
    image, text = client.predict(handle_file(public), handle_file(key), utkface, "pass", 1.0, api_name="/decode")
    assert image is None and f"This public code was made with {celeba}: choose it in the Model menu" in text


def _write_bad(tmp_path: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "corrupt.png").write_bytes(EXAMPLE.read_bytes()[:100])
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "rgba.png")
    Image.new("CMYK", (64, 64), (0, 50, 50, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (200, 100), (90, 140, 200)).save(tmp_path / "sky.png")
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    return {path.name: path for path in tmp_path.iterdir()}


def test_bad_uploads_keep_serving_and_say_why(app_url, models, gradio_dir, tmp_path):
    client = Client(app_url, verbose=False)
    files_ = _write_bad(tmp_path)
    for name, words in {"notes.png": "Not a readable image", "corrupt.png": "Not a readable image", "one.png": "at least"}.items():
        note, panels, chart, linkage, budget, table = Page().show(
            client.predict(handle_file(str(files_[name])), False, models[0], *CONTROLS, api_name="/prepare")
        )
        assert "failure" in note and words in note and words not in panels and (chart, linkage, table["data"]) == ("", "", [])
        assert str(gradio_dir) not in note + panels and "Traceback" not in note + panels
    for name in ("rgba.png", "cmyk.jpg", "deep.png", "sky.png"):
        note, panels, *_ = Page().show(client.predict(handle_file(str(files_[name])), False, models[0], *CONTROLS, api_name="/prepare"))
        assert "failure" not in note and panels.count("<img") == 5
    assert "No face found" in client.predict(handle_file(str(files_["sky.png"])), False, models[0], *CONTROLS, api_name="/prepare")[0]


def test_upload_size_limit(app_url, models, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 21_000_000)
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(big)), False, models[0], *CONTROLS, api_name="/prepare")
    assert "Face found" in client.predict(handle_file(str(EXAMPLE)), False, models[0], *CONTROLS, api_name="/prepare")[0]


def _photo(tmp_path: Path, name: str, transpose=None, tint=(0, 0, 0)) -> Path:
    """A face that is not one of the bundled examples (Gradio keeps those), as a PNG file."""
    import numpy as np
    from PIL import Image

    image = Image.open(EXAMPLE).convert("RGB")
    if transpose is not None:
        image = image.transpose(transpose)
    pixels = np.clip(np.asarray(image, dtype=np.int16) + np.array(tint, dtype=np.int16), 0, 255).astype(np.uint8)
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    return path


def _files_with_content(folder: Path, data: bytes) -> list[Path]:
    """The files under `folder` holding `data`, while the server may be deleting them (os.walk skips a folder that
    vanishes as it is listed; Path.rglob raises)."""
    found = []
    for root, _, names in os.walk(folder):
        for path in (Path(root) / name for name in names):
            try:
                if path.stat().st_size == len(data) and path.read_bytes() == data:
                    found.append(path)
            except FileNotFoundError:
                continue
    return found


def test_uploads_are_deleted_when_the_request_returns(app_url, models, gradio_dir, tmp_path):
    import httpx

    photo = _photo(tmp_path, "mirror.png", transpose=0)
    data = photo.read_bytes()
    with httpx.Client(base_url=app_url, timeout=30) as http:  # an upload alone lands in the folder we are watching
        stored = http.post("gradio_api/upload", files={"files": ("mirror.png", data, "image/png")}).json()[0]
    assert Path(stored).is_relative_to(gradio_dir) and _files_with_content(gradio_dir, data)
    client = Client(app_url, verbose=False)
    note, *_ = client.predict(handle_file(str(photo)), False, models[0], *CONTROLS, api_name="/prepare")
    assert "failure" not in note and not _files_with_content(gradio_dir, data)

    public, key, _ = client.predict(models[0], "", 8, *CONTROLS[1:], api_name="/share")
    copies = [tmp_path / "mine.saep", tmp_path / "mine.saek"]
    for copy, share in zip(copies, (public, key), strict=True):
        copy.write_bytes(Path(share).read_bytes())
    _, text = client.predict(handle_file(str(copies[0])), handle_file(str(copies[1])), models[0], "", 1.0, api_name="/decode")
    assert text.startswith("Decoded with 32 entries")
    assert list(gradio_dir.rglob("mine.sae*")) == []  # (Gradio's cached copies of the share's outputs stay)


def _holder(panels) -> str:
    """The key holder's image in a panels output (a string, or the update dict or gr.HTML of a new face)."""
    raw = panels["value"] if isinstance(panels, dict) else getattr(panels, "value", panels)
    return raw.split('<img src="', 2)[1].split('"', 1)[0]


def test_two_uploads_racing_on_one_session(app_url, models, served_models, tmp_path):
    from sae.app.handlers import Handlers

    photos = [_photo(tmp_path, "left.png", transpose=0), _photo(tmp_path, "tinted.png", tint=(60, -40, 0))]
    local = Handlers(served_models, outbox=tmp_path / "outbox")
    expected = [local.prepare(str(photo), False, models[0], *CONTROLS)[2] for photo in photos]
    client = Client(app_url, verbose=False)  # one client: one session
    jobs = [client.submit(handle_file(str(photo)), False, models[0], *CONTROLS, api_name="/prepare") for photo in photos]
    for job, panels in zip(jobs, expected, strict=True):
        assert _holder(job.result()[1]) == _holder(panels)  # each upload got its own face
    shown = _holder(client.predict(models[0], *CONTROLS, api_name="/update")[0])
    assert shown in [_holder(panels) for panels in expected]  # the session shows one of its own two uploads


def test_the_page_s_slider_call_skips_the_queue_and_sees_its_session(app_url, models):
    """The slider's event is not queued: the page POSTs it to /run/predict with its fn_index and its session's hash, as
    `benchmarks.serving.PageSession` does; the answer comes from the face that session uploaded, the same as a queued
    call's."""
    from benchmarks.serving import PageSession

    session = PageSession(app_url)
    try:
        assert "/update" in session.unqueued and "/prepare" not in session.unqueued
        session.call("/prepare", handle_file(str(EXAMPLE)), False, models[0], *CONTROLS)
        direct = session.call("/update", models[0], *CONTROLS)
        queued = session.client.predict(models[0], *CONTROLS, api_name="/update")
        with pytest.raises(TypeError, match="takes 10 values"):
            session.call("/update", *CONTROLS)
    finally:
        session.close()
    assert direct == tuple(queued) and direct[0].count("<img") == 4 and "Key holder (all of the key)" in direct[0]


def _join(http, api_name: str, data: list, session: str) -> None:
    """Queue one event the way the browser does (POST queue/join), without a client library in between."""
    fn_index = next(d["id"] for d in http.get("config").json()["dependencies"] if d.get("api_name") == api_name)
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    http.post("gradio_api/queue/join", json=join).raise_for_status()


def _upload(http, data: bytes, name: str) -> dict:
    stored = http.post("gradio_api/upload", files={"files": (name, data, "image/png")}).json()[0]
    return {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _completed(http, session: str) -> dict:
    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return message
    raise AssertionError("the stream ended without a result")


def test_identical_uploads_racing_across_sessions(app_url, models, tmp_path):
    """Two visitors upload the same bytes: Gradio stores both at one path, and the first request deletes it."""
    import httpx

    data = _photo(tmp_path, "twin.png", tint=(20, 20, -20)).read_bytes()
    with httpx.Client(base_url=app_url, timeout=60) as http:
        uploads = [_upload(http, data, "twin.png") for _ in range(2)]
        assert uploads[0]["path"] == uploads[1]["path"]
        _join(http, "prepare", [uploads[0], False, models[0], *CONTROLS], "visitor-a")
        first = _completed(http, "visitor-a")
        assert first["success"] and not Path(uploads[0]["path"]).exists()
        _join(http, "prepare", [uploads[1], False, models[0], *CONTROLS], "visitor-b")
        second = _completed(http, "visitor-b")
    assert second["success"], second
    note, panels = second["output"]["data"][1:3]  # (the first output is the session state, never sent)
    assert second["output"]["data"][1:] == first["output"]["data"][1:] and "Face found" in note
    assert panels["value"].count("<img") == 4 and panels["props"]["reference"].startswith("<img")  # the input apart


def test_client_leaving_mid_request(app_url, models, gradio_dir, tmp_path):
    import secrets

    import httpx
    from PIL import Image

    big = tmp_path / "big.png"
    Image.open(_photo(tmp_path, "face.png", tint=(0, 30, 30))).resize((3000, 3000)).save(big)
    data = big.read_bytes()
    session = secrets.token_hex(8)
    with httpx.Client(base_url=app_url, timeout=60) as http:
        _join(http, "prepare", [_upload(http, data, "big.png"), False, models[0], *CONTROLS], session)
        left = False
        with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
            for line in stream.iter_lines():
                assert "process_completed" not in line, "the request finished before the client could leave"
                if "process_starts" in line:
                    left = True
                    break  # leave while the handler runs
    assert left
    deadline = time.time() + 60
    while _files_with_content(gradio_dir, data) and time.time() < deadline:
        time.sleep(0.2)
    assert not _files_with_content(gradio_dir, data)  # the handler finished without its client and removed the upload
    client = Client(app_url, verbose=False)
    note, *_ = client.predict(handle_file(str(EXAMPLE)), False, models[0], *CONTROLS, api_name="/prepare")
    panels = client.predict(models[0], *CONTROLS, api_name="/update")[0]
    assert "Face found" in note and "Key holder (all of the key)" in panels
