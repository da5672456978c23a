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


def test_named_endpoints(app_url):
    client = Client(app_url, verbose=False)
    assert {"/prepare", "/reconstruct", "/curve"} <= set(client.view_api(return_format="dict")["named_endpoints"])


def test_upload_and_reconstruct(app_url):
    client = Client(app_url, verbose=False)
    shown = client.predict(handle_file(str(EXAMPLE)), api_name="/prepare")
    assert Path(shown).suffix == ".png"
    image, text, budget = client.predict(3, api_name="/reconstruct")
    assert Path(image).suffix == ".png" and text.startswith("PSNR") and "non-zeros" in budget


def test_bad_upload_keeps_serving(app_url, tmp_path):
    client = Client(app_url, verbose=False)
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(Exception, match="not a readable image|cannot identify image file"):
        client.predict(handle_file(str(bad)), api_name="/prepare")
    assert client.predict(handle_file(str(EXAMPLE)), api_name="/prepare")


def test_missing_model_refuses_to_start_with_one_line(tmp_path):
    env = os.environ | {"SAE_MODEL": str(tmp_path / "missing")}
    result = subprocess.run([sys.executable, "app.py"], cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1].startswith("sae: ") and "Traceback" not in result.stderr
