"""A real headless Chromium (Debian's, driven by Playwright) using the launched app as a visitor would.

Uploads a face, moves the slider with the keyboard, sees the PSNR text change, switches the extra attack,
makes a share, downloads the key and public code and decodes them (each upload is read into the session and
deleted on the server at once), and saves a screenshot to the test's temporary
folder. `SAE_UPDATE_SCREENSHOT=1` with a real model (SAE_MODEL, or the bundled assets/model) writes it to
assets/screenshot.png for the README instead, so a plain test run never changes tracked files. Skips when Chromium
or Playwright is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--no-first-run"]
PHOTO = REPO / "assets" / "examples" / "astronaut.png"
SCREENSHOT = REPO / "assets" / "screenshot.png"
TIMEOUT_MS = 90_000  # a shared 2-core machine can be slow

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
    pytest.skip(f"Chromium not found at {CHROMIUM} (apt-get install chromium)", allow_module_level=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _model_dir(tmp_path_factory) -> tuple[str, bool]:
    """(model source, whether it is a real model worth a screenshot for the README)."""
    if os.environ.get("SAE_MODEL"):
        return os.environ["SAE_MODEL"], True
    if (REPO / "assets" / "model" / "model.safetensors").is_file():
        return str(REPO / "assets" / "model"), True
    import torch

    from sae.core.model import SparseAutoencoder
    from tests.conftest import TINY

    torch.manual_seed(0)
    directory = tmp_path_factory.mktemp("model")
    SparseAutoencoder(**TINY).save_pretrained(directory)
    return str(directory), False


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    source, real = _model_dir(tmp_path_factory)
    port = _free_port()
    env = os.environ | {"SAE_MODEL": source, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1"}
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    deadline = time.time() + 120
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if process.poll() is not None or time.time() > deadline:
                process.kill()
                pytest.fail(process.stdout.read().decode())
            time.sleep(0.5)
    yield f"http://127.0.0.1:{port}/", real
    process.terminate()
    process.wait(10)


@pytest.fixture(scope="module")
def page(app):
    with sync_api.sync_playwright() as playwright:
        executable = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1500, "height": 1300}, accept_downloads=True)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app[0])
        yield page
        context.close()
        browser.close()


CHANGED = """([selector, before, needle]) => {
    const element = document.querySelector(selector + " .prose") || document.querySelector(selector);
    const text = element ? element.innerText.trim() : "";
    return text.includes(needle) && text !== before;
}"""


def _text(page, selector: str) -> str:
    """The Markdown's own text, without Gradio's progress overlay."""
    return page.locator(f"{selector} .prose").first.inner_text().strip()


def _wait_for_change(page, selector: str, before: str, needle: str = "PSNR") -> str:
    """Wait until the element shows a new text containing `needle` (progress timers do not count)."""
    page.wait_for_function(
        CHANGED,
        arg=[selector, before, needle],
        timeout=TIMEOUT_MS,
    )
    return _text(page, selector)


def test_explore_share_decode(app, page, tmp_path):
    page.locator("input[type=file]").first.set_input_files(str(PHOTO))
    first = _wait_for_change(page, "#caption-0", "")
    assert first.startswith("key holder") and "PSNR" in first and "dB" in first
    assert "Face found" in _text(page, "#face-note")
    # the server deleted the uploaded file once read; the preview the browser fetched before still shows
    assert page.evaluate("() => [...document.querySelectorAll('#photo img')].some(i => i.complete && i.naturalWidth > 0)")

    slider = page.locator("#k-slider input[type=range]")
    slider.focus()
    for _ in range(20):
        slider.press("ArrowLeft")
    second = _wait_for_change(page, "#caption-0", first)
    assert "PSNR" in second and second != first

    page.locator("#extra-attack label", has_text="re-encode").click()
    assert _wait_for_change(page, "#caption-3", "", "re-encode attack").startswith("re-encode attack")
    page.wait_for_timeout(500)  # let the chart redraw before the picture is taken
    update = app[1] and os.environ.get("SAE_UPDATE_SCREENSHOT") == "1"
    page.screenshot(path=str(SCREENSHOT if update else tmp_path / "screenshot.png"), full_page=True)

    page.get_by_role("tab", name="Share").click()
    page.locator("#share-button").click()
    downloads = {}
    for name in ("public-file", "key-file"):
        link = page.locator(f"#{name} a").first
        link.wait_for()
        with page.expect_download() as download:
            link.click()
        downloads[name] = tmp_path / download.value.suggested_filename
        download.value.save_as(downloads[name])
    assert downloads["public-file"].suffix == ".saep" and downloads["key-file"].suffix == ".saek"

    page.get_by_role("tab", name="Decode").click()
    page.locator("#public-in input[type=file]").set_input_files(str(downloads["public-file"]))
    _wait_for_change(page, "#public-note", "", "received")  # read into the session, deleted on the server
    page.locator("#key-in input[type=file]").set_input_files(str(downloads["key-file"]))
    _wait_for_change(page, "#key-note", "", "received")
    page.locator("#decode-button").click()
    assert "Decoded with" in _wait_for_change(page, "#decode-note", "", "Decoded")
