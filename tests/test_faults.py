"""Faults: broken bundled models, a Hub that is dead or stalls mid-download. A model that cannot be loaded is listed
and the others are served; only when none loads does the app refuse to start, in one line. (Uploads racing, clients
leaving mid-request and evicted cache entries are in test_app.py, test_uploads.py and test_handlers.py.)"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest
import torch

from sae.app.models import TITLES
from sae.core.model import SparseAutoencoder
from sae.zoo import files
from sae.zoo.hub import load_model
from tests.conftest import REPO, TINY
from tests.test_hub import COMMIT, REPO_ID, FakeHub, _model_files, _with_card

FAULTS = ["missing", "truncated", "wrong shape"]


def _break(model_dir: Path, fault: str) -> None:
    weights = model_dir / files.WEIGHTS
    if fault == "missing":
        weights.unlink()
    elif fault == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
    elif fault == "wrong shape":
        SparseAutoencoder(**{**TINY, "num_groups": 8}).save_pretrained(model_dir / "other")
        shutil.copy(model_dir / "other" / files.WEIGHTS, weights)
    else:
        raise ValueError(fault)


@pytest.fixture
def launched(monkeypatch) -> list[tuple[list[str], list[str]]]:
    """app.main records what it would serve instead of launching."""
    import app

    calls = []
    monkeypatch.setattr(app, "serve", lambda models, *args, failures=None, **options: calls.append(([m.name for m in models], failures)))
    return calls


@pytest.fixture
def bundled(tiny_model_dirs, tmp_path, monkeypatch, launched) -> dict[str, Path]:
    """Bundled models that are copies of the tiny ones, ours to break."""
    paths = {"celeba64": tmp_path / "bundled" / "celeba64", "utkface128": tmp_path / "bundled" / "utkface128"}
    shutil.copytree(tiny_model_dirs["celeba"], paths["celeba64"])
    shutil.copytree(tiny_model_dirs["utkface"], paths["utkface128"])
    monkeypatch.setattr(files, "BUNDLED", paths)
    monkeypatch.delenv("SAE_MODEL", raising=False)
    return paths


@pytest.mark.parametrize("fault", FAULTS)
def test_one_broken_bundled_model_is_listed_and_the_other_served(bundled, launched, capsys, fault):
    import app

    _break(bundled["celeba64"], fault)
    app.main([])
    ((served, failures),) = launched
    assert served == [TITLES["utkface128"]]
    if fault == "missing":  # a checkout without the weights simply does not offer that model
        assert failures == [] and capsys.readouterr().err == ""
    else:
        (failure,) = failures
        assert failure.startswith(f"{TITLES['celeba64']}: cannot load the model in {bundled['celeba64']}")
        assert capsys.readouterr().err.strip() == f"not serving {failure}"


@pytest.mark.parametrize("fault", FAULTS)
def test_every_model_broken_refuses_to_start_with_one_line(bundled, launched, tmp_path, fault):
    import app

    for name in ("celeba64", "utkface128"):
        _break(bundled[name], fault)
    with pytest.raises(SystemExit) as exited:
        app.main(["--model", str(tmp_path / "missing")])
    line = exited.value.code
    assert isinstance(line, str) and "\n" not in line and line.startswith(f"sae: no model could be loaded: {tmp_path / 'missing'}: ")
    if fault != "missing":
        assert str(bundled["celeba64"]) in line and str(bundled["utkface128"]) in line
    with pytest.raises(SystemExit, match="^sae: no model could be loaded: .+"):  # never an empty reason
        app.main([])
    assert launched == []


def _app_copy(tmp_path: Path) -> Path:
    """app.py and sae/ copied into a fresh tree whose only bundled model (assets/models/celeba64) is ours to break."""
    root = tmp_path / "repo"
    root.mkdir()
    shutil.copy(REPO / "app.py", root / "app.py")
    shutil.copytree(REPO / "sae", root / "sae", ignore=shutil.ignore_patterns("__pycache__"))
    torch.manual_seed(0)
    SparseAutoencoder(**TINY).save_pretrained(root / "assets" / "models" / "celeba64")
    return root


def _env(**changes: str | None) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in ("SAE_MODEL", "HF_HUB_OFFLINE", "HF_ENDPOINT")}
    env |= {"GRADIO_ANALYTICS_ENABLED": "False"}
    return env | {key: value for key, value in changes.items() if value is not None}


def _one_line_refusal(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines and lines[-1].startswith("sae: ")
    return lines[-1]


def test_broken_bundled_model_refuses_to_start_with_one_line(tmp_path):
    """The real process: exit status, stderr, no traceback."""
    root = _app_copy(tmp_path)
    _break(root / "assets" / "models" / "celeba64", "truncated")
    result = subprocess.run([sys.executable, "app.py"], cwd=root, env=_env(HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=180)
    line = _one_line_refusal(result)
    assert line.startswith(f"sae: no model could be loaded: {TITLES['celeba64']}: cannot load the model in ")
    assert str(root / "assets" / "models" / "celeba64") in line


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def hub(tmp_path):
    torch.manual_seed(1)
    server = FakeHub({COMMIT: _with_card(_model_files(SparseAutoencoder(**TINY), tmp_path / "hub-model"))})
    yield server
    server.close()


def test_broken_bundled_model_with_a_hub_source_serves_the_hub(tmp_path, hub):
    root = _app_copy(tmp_path)
    _break(root / "assets" / "models" / "celeba64", "truncated")
    port = _free_port()
    env = _env(SAE_MODEL=REPO_ID, HF_ENDPOINT=hub.url, HF_HUB_CACHE=str(tmp_path / "cache"), GRADIO_TEMP_DIR=str(tmp_path / "gradio"))
    process = subprocess.Popen(
        [sys.executable, "app.py", "--port", str(port)], cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        seen = []
        for line in process.stdout:  # "serving ..." once the models are loaded; EOF if the app exits instead
            seen.append(line)
            if line.startswith("serving"):
                break
        assert seen[-1].startswith(f"serving hub:{REPO_ID} (from the Hub at commit {COMMIT[:12]})"), seen
        assert any(line.startswith(f"not serving {TITLES['celeba64']}: cannot load the model in ") for line in seen), seen
    finally:
        process.terminate()
        process.wait(30)
    dead = _env(SAE_MODEL=REPO_ID, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_CACHE=str(tmp_path / "empty"))
    result = subprocess.run([sys.executable, "app.py"], cwd=root, env=dead, capture_output=True, text=True, timeout=180)
    line = _one_line_refusal(result)
    assert f"{REPO_ID}: cannot load {REPO_ID} from the Hub" in line and f"{TITLES['celeba64']}: cannot load the model" in line


class StallingHub(FakeHub):
    """Sends the headers and half the weights, then hangs until released; afterwards it serves normally."""

    def __init__(self, files_by_commit: dict[str, dict[str, bytes]]):
        super().__init__(files_by_commit)
        self.stalling = True
        self.stalled = threading.Event()
        self.release = threading.Event()

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?")[0]
        if not (body and self.stalling and "/resolve/" in path and path.endswith("/model.safetensors")):
            return super().answer(handler, body)
        content = self.files_by_commit[COMMIT]["model.safetensors"]
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        handler.wfile.write(content[: len(content) // 2])
        handler.wfile.flush()
        self.stalled.set()
        self.release.wait(60)


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_hub_stalling_mid_download_falls_back_and_never_loads_half_a_file(tmp_path, online, monkeypatch):
    torch.manual_seed(2)
    served = SparseAutoencoder(**TINY)
    hub = StallingHub({COMMIT: _model_files(served, tmp_path / "served")})
    fallback = tmp_path / "bundled"
    SparseAutoencoder(**TINY).save_pretrained(fallback)
    cache = tmp_path / "cache"
    try:
        started = time.perf_counter()
        stalled = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache, deadline=1.5)
        assert time.perf_counter() - started < 3 and hub.stalled.is_set()
        assert stalled.source.startswith("bundled") and "did not finish within 1.5 s" in stalled.note
        assert not list(cache.glob("**/snapshots/*/model.safetensors"))  # the half is only ever an *.incomplete blob
        assert list(cache.glob("**/blobs/*.incomplete"))

        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # next start, offline: the cache has no complete weights
        assert load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache).source.startswith("bundled")
        monkeypatch.delenv("HF_HUB_OFFLINE")

        hub.stalling = False
        hub.release.set()  # the stalled transfer ends; the next start completes the download
        loaded = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache)
        assert loaded.source == f"hub:{REPO_ID}"
        for name, value in served.state_dict().items():
            assert torch.equal(loaded.model.state_dict()[name], value), name
    finally:
        hub.release.set()
        hub.close()
