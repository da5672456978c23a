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
def app_url(tmp_path_factory):
    import torch

    from sae.model import SparseAutoencoder
    from tests.conftest import TINY

    torch.manual_seed(0)
    model_dir = tmp_path_factory.mktemp("model")
    SparseAutoencoder(**TINY).save_pretrained(model_dir)
    port = _free_port()
    env = os.environ | {"SAE_MODEL": str(model_dir), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
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
