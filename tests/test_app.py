"""The launched app, driven over HTTP through gradio_client, as a Space visitor's browser would."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client, handle_file

from tests.conftest import REPO

EXAMPLE = REPO / "assets" / "examples" / "astronaut_face.png"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    import torch

    from sae.core.model import SparseAutoencoder
    from tests.conftest import TINY

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    SparseAutoencoder(**TINY).save_pretrained(directory)
    return directory


@pytest.fixture(scope="module")
def gradio_dir(tmp_path_factory) -> Path:
    """The app's Gradio upload/cache folder (GRADIO_TEMP_DIR), so tests can see what stays on disk."""
    return tmp_path_factory.mktemp("gradio")


@pytest.fixture(scope="module")
def app_url(model_dir, gradio_dir):
    port = _free_port()
    env = os.environ | {
        "SAE_MODEL": str(model_dir),
        "GRADIO_ANALYTICS_ENABLED": "False",
        "HF_HUB_OFFLINE": "1",
        "GRADIO_TEMP_DIR": str(gradio_dir),
    }
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None:
                pytest.fail(process.stdout.read().decode())
            time.sleep(0.5)
    yield url
    process.terminate()
    process.wait(10)


CONTROLS = dict(k=4, owner_fraction=1.0, decoys=True, ratio=2.0, fill_all=True, permute=True, known=0.5, extra="magnitude")


@pytest.fixture(scope="module")
def client(app_url):
    return Client(app_url, verbose=False)


def test_named_endpoints(client):
    named = set(client.view_api(return_format="dict", print_info=False)["named_endpoints"])
    assert {"/prepare", "/curve", "/update", "/share", "/decode"} <= named


def test_every_endpoint_in_a_session(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    shown, message = client.predict(handle_file(str(EXAMPLE)), False, api_name="/prepare")
    assert Path(shown).suffix == ".png" and "Face found" in message
    plot, table = client.predict(4, api_name="/curve")
    assert plot is not None and len(table["data"]) == 16
    outputs = client.predict(*CONTROLS.values(), api_name="/update")
    assert all(Path(image).suffix == ".png" for image in outputs[:4])
    assert [text.split("**")[1] for text in outputs[4:8]] == ["key holder", "no key (decoys)", "permutation attack", "magnitude attack"]
    assert "non-zeros" in outputs[8]
    public, key, note = client.predict(8, 1.0, True, 2.0, False, True, "pass", api_name="/share")
    assert public.endswith(".saep") and key.endswith(".saek") and "passphrase-protected" in note
    image, text = client.predict(handle_file(public), handle_file(key), "pass", 1.0, api_name="/decode")
    assert Path(image).suffix == ".png" and "8 of 8" in text
    with pytest.raises(Exception, match="Passphrase"):
        client.predict(handle_file(public), handle_file(key), "nope", 1.0, api_name="/decode")


BAD = {
    "notes.png": "not a readable image",
    "corrupt.png": "not a readable image",
    "one.png": "at least",
    "bomb.png": "megapixels",
}


def _write_bad(tmp_path: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "corrupt.png").write_bytes(EXAMPLE.read_bytes()[:100])
    Image.new("RGB", (1, 1)).save(tmp_path / "one.png")
    Image.new("1", (12000, 12000)).save(tmp_path / "bomb.png")
    Image.new("RGBA", (64, 64), (0, 0, 0, 0)).save(tmp_path / "rgba.png")
    Image.new("L", (64, 64), 100).save(tmp_path / "gray.png")
    Image.new("CMYK", (64, 64), (0, 50, 50, 0)).save(tmp_path / "cmyk.jpg")
    Image.new("RGB", (200, 100), (90, 140, 200)).save(tmp_path / "sky.png")
    Image.fromarray(np.full((64, 64), 40000, dtype=np.uint16)).save(tmp_path / "deep.png")
    rotated = Image.new("RGB", (80, 40), (200, 10, 10))
    exif = rotated.getexif()
    exif[0x0112] = 6  # shown rotated by 90 degrees
    rotated.save(tmp_path / "rotated.jpg", exif=exif)
    return {path.name: path for path in tmp_path.iterdir()}


def test_bad_uploads_keep_serving(client, tmp_path):
    files = _write_bad(tmp_path)
    for name, message in BAD.items():
        with pytest.raises(Exception, match=message):
            client.predict(handle_file(str(files[name])), False, api_name="/prepare")
    for name in ("rgba.png", "gray.png", "cmyk.jpg", "deep.png", "rotated.jpg"):
        shown, _ = client.predict(handle_file(str(files[name])), False, api_name="/prepare")
        assert Path(shown).suffix == ".png"
    shown, message = client.predict(handle_file(str(files["sky.png"])), False, api_name="/prepare")
    assert "No face found" in message
    assert client.predict(handle_file(str(EXAMPLE)), False, api_name="/prepare")


def test_upload_size_limit(app_url, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + b"\0" * 21_000_000)
    client = Client(app_url, verbose=False)
    with pytest.raises(Exception, match="(?i)size|large|413"):
        client.predict(handle_file(str(big)), False, api_name="/prepare")
    assert client.predict(handle_file(str(EXAMPLE)), False, api_name="/prepare")


def test_missing_model_refuses_to_start_with_one_line(tmp_path):
    env = os.environ | {"SAE_MODEL": str(tmp_path / "missing")}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("sae: ") and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    "env, argv, message",
    [
        ({"SAE_FACE_CACHE": "lots"}, [], "argument --face-cache: expected a whole number of uploads, got 'lots'"),
        ({"SAE_FACE_CACHE": "0"}, [], "argument --face-cache: must be at least 1, got 0"),
        ({}, ["--face-cache", "2.5"], "argument --face-cache: expected a whole number"),
        ({"GRADIO_SERVER_PORT": "http"}, [], "argument --port: invalid int value: 'http'"),
    ],
)
def test_bad_settings_are_a_one_line_usage_error(monkeypatch, capsys, env, argv, message):
    import app

    for name in ("SAE_FACE_CACHE", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        app.main(argv)
    error = capsys.readouterr().err
    assert exited.value.code == 2 and message in error.strip().splitlines()[-1] and "Traceback" not in error


# ---------------------------------------------------------------------------------------------------
# Uploads leave no file behind; racing uploads and clients that leave mid-request
# ---------------------------------------------------------------------------------------------------


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
    return [path for path in folder.rglob("*") if path.is_file() and path.stat().st_size == len(data) and path.read_bytes() == data]


def test_uploads_are_deleted_when_the_request_returns(app_url, gradio_dir, tmp_path):
    import httpx

    photo = _photo(tmp_path, "mirror.png", transpose=0)
    data = photo.read_bytes()
    with httpx.Client(base_url=app_url, timeout=30) as http:  # an upload alone lands in the folder we are watching
        stored = http.post("gradio_api/upload", files={"files": ("mirror.png", data, "image/png")}).json()[0]
    assert Path(stored).is_relative_to(gradio_dir) and _files_with_content(gradio_dir, data)
    client = Client(app_url, verbose=False)
    shown, _ = client.predict(handle_file(str(photo)), False, api_name="/prepare")
    assert Path(shown).suffix == ".png" and not _files_with_content(gradio_dir, data)

    public, key, _ = client.predict(8, 1.0, True, 2.0, False, True, "", api_name="/share")
    copies = [tmp_path / "mine.saep", tmp_path / "mine.saek"]
    for copy, share in zip(copies, (public, key), strict=True):
        copy.write_bytes(Path(share).read_bytes())
    _, text = client.predict(handle_file(str(copies[0])), handle_file(str(copies[1])), "", 1.0, api_name="/decode")
    assert "8 of 8" in text
    assert list(gradio_dir.rglob("mine.sae*")) == []  # (Gradio's cached copies of the share's outputs, face-k8.*, stay)


def test_two_uploads_racing_on_one_session(app_url, model_dir, tmp_path):
    import numpy as np
    from PIL import Image

    from sae.app.ui import Handlers
    from sae.zoo.hub import load_model

    photos = [_photo(tmp_path, "left.png", transpose=0), _photo(tmp_path, "tinted.png", tint=(60, -40, 0))]
    local = Handlers(load_model(str(model_dir)), outbox=tmp_path / "outbox")
    expected_inputs, expected_holders = [], []
    for photo in photos:
        ref, shown, _ = local.prepare(str(photo))
        expected_inputs.append(shown)
        expected_holders.append(local.update(ref, None, *CONTROLS.values())[0].astype(int))
    client = Client(app_url, verbose=False)  # one client: one session
    jobs = [client.submit(handle_file(str(photo)), False, api_name="/prepare") for photo in photos]
    for job, expected in zip(jobs, expected_inputs, strict=True):
        assert np.array_equal(np.asarray(Image.open(job.result()[0]).convert("RGB")), expected)  # each upload got its own face
    holder = np.asarray(Image.open(client.predict(*CONTROLS.values(), api_name="/update")[0]).convert("RGB")).astype(int)
    distances = [np.abs(holder - expected).max() for expected in expected_holders]
    assert min(distances) <= 2 < max(distances)  # the session shows one of its own two uploads, whole


def _join(http, api_name: str, data: list, session: str) -> None:
    """Queue one event the way the browser does (POST queue/join), without a client library in between."""
    fn_index = next(d["id"] for d in http.get("config").json()["dependencies"] if d.get("api_name") == api_name)
    join = {"data": data, "fn_index": fn_index, "session_hash": session, "event_data": None, "trigger_id": None}
    http.post("gradio_api/queue/join", json=join).raise_for_status()


def _upload(http, data: bytes, name: str) -> dict:
    stored = http.post("gradio_api/upload", files={"files": (name, data, "image/png")}).json()[0]
    return {"path": stored, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


def _completed(http, session: str) -> dict:
    import json

    with http.stream("GET", "gradio_api/queue/data", params={"session_hash": session}) as stream:
        for line in stream.iter_lines():
            if line.startswith("data:") and (message := json.loads(line[5:]))["msg"] == "process_completed":
                return message
    raise AssertionError("the stream ended without a result")


def test_identical_uploads_racing_across_sessions(app_url, gradio_dir, tmp_path):
    """Two visitors upload the same bytes: Gradio stores both at one path, and the first request deletes it."""
    import httpx

    data = _photo(tmp_path, "twin.png", tint=(20, 20, -20)).read_bytes()
    with httpx.Client(base_url=app_url, timeout=60) as http:
        files = [_upload(http, data, "twin.png") for _ in range(2)]
        assert files[0]["path"] == files[1]["path"]
        _join(http, "prepare", [files[0], False], "visitor-a")
        first = _completed(http, "visitor-a")
        assert first["success"] and not Path(files[0]["path"]).exists()
        _join(http, "prepare", [files[1], False], "visitor-b")
        second = _completed(http, "visitor-b")
    assert second["success"], second
    shown, note = second["output"]["data"][1:]  # (the first output is the session state, never sent)
    assert [shown, note] == first["output"]["data"][1:] and shown["path"].endswith(".png") and "Face found" in note


def test_client_leaving_mid_request(app_url, gradio_dir, tmp_path):
    import secrets

    import httpx
    from PIL import Image

    big = tmp_path / "big.png"
    Image.open(_photo(tmp_path, "face.png", tint=(0, 30, 30))).resize((3000, 3000)).save(big)
    data = big.read_bytes()
    session = secrets.token_hex(8)
    with httpx.Client(base_url=app_url, timeout=60) as http:
        _join(http, "prepare", [_upload(http, data, "big.png"), False], session)
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
    _, message = client.predict(handle_file(str(EXAMPLE)), False, api_name="/prepare")
    outputs = client.predict(*CONTROLS.values(), api_name="/update")
    assert "Face found" in message and outputs[4].startswith("**key holder**")
