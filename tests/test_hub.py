"""Model sources (sae.zoo.hub): the bundled model, local directories, and the Hub, offline against a local stand-in server;
and publishing (sae.cli.push)."""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from sae.zoo import files
from sae.zoo.hub import BUNDLED_MODEL, HubSource, ModelLoadError, load_model, parse_source, push

COMMIT = "a" * 40
OLD_COMMIT = "b" * 40
REPO_ID = "teacher/sae-faces"


class FakeHub:
    """The few Hub routes `model_info` and `hf_hub_download` use, serving two commits of one repo."""

    def __init__(self, files_by_commit: dict[str, dict[str, bytes]]):
        self.files_by_commit = files_by_commit
        self.requests: list[tuple[str, str]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def do_GET(self) -> None:
                hub.requests.append(("GET", self.path))
                hub.answer(self, body=True)

            def do_HEAD(self) -> None:
                hub.requests.append(("HEAD", self.path))
                hub.answer(self, body=False)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _commit(self, revision: str) -> str | None:
        return COMMIT if revision == "main" else revision if revision in self.files_by_commit else None

    def answer(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        parts = handler.path.split("?")[0].strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            repo, revision = "/".join(parts[2:4]), parts[5] if len(parts) > 5 else "main"
            return self._api(handler, repo, revision)
        repo, revision, name = "/".join(parts[:2]), parts[3], "/".join(parts[4:])
        if repo != REPO_ID:
            return self._error(handler, 401, "RepoNotFound")
        commit = self._commit(revision)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound")
        content = self.files_by_commit[commit].get(name)
        if content is None:
            return self._error(handler, 404, "EntryNotFound")
        handler.send_response(200)
        handler.send_header("X-Repo-Commit", commit)
        handler.send_header("ETag", f'"{hashlib.sha256(content).hexdigest()}"')
        handler.send_header("Content-Length", str(len(content)))
        handler.end_headers()
        if body:
            handler.wfile.write(content)

    def _api(self, handler: BaseHTTPRequestHandler, repo: str, revision: str) -> None:
        if repo != REPO_ID:
            return self._error(handler, 401, "RepoNotFound")
        commit = self._commit(revision)
        if commit is None:
            return self._error(handler, 404, "RevisionNotFound")
        data = json.dumps({"id": repo, "sha": commit, "siblings": [{"rfilename": n} for n in self.files_by_commit[commit]]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    @staticmethod
    def _error(handler: BaseHTTPRequestHandler, status: int, code: str) -> None:
        data = json.dumps({"error": code}).encode()
        handler.send_response(status)
        handler.send_header("X-Error-Code", code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def downloads(self) -> list[str]:
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _model_files(model, directory: Path) -> dict[str, bytes]:
    model.save_pretrained(directory)
    return {name: (directory / name).read_bytes() for name in ("config.json", "model.safetensors")}


def _with_card(files: dict[str, bytes]) -> dict[str, bytes]:
    return files | {"README.md": b"---\nlibrary_name: sae\n---\n# Card with the test-set table\n"}


@pytest.fixture
def fallback(tiny_model, tmp_path) -> Path:
    """A stand-in for the bundled model, so fallbacks are testable before assets/models/celeba64 lands."""
    directory = tmp_path / "bundled"
    tiny_model.save_pretrained(directory)
    return directory


@pytest.fixture
def hub(tmp_path):
    import torch

    from sae.core.model import SparseAutoencoder
    from tests.conftest import TINY

    torch.manual_seed(1)
    new = _with_card(_model_files(SparseAutoencoder(**TINY), tmp_path / "new"))
    old = _model_files(SparseAutoencoder(**{**TINY, "k_max": 8}), tmp_path / "old")
    server = FakeHub({COMMIT: new, OLD_COMMIT: old})
    yield server
    server.close()


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)


def test_bundled_model_loads():
    if not (BUNDLED_MODEL / "model.safetensors").is_file():
        pytest.skip("no bundled model in this checkout")
    loaded = load_model()
    assert loaded.source == f"bundled ({BUNDLED_MODEL.name})" and loaded.model.num_groups >= 1 and loaded.directory == BUNDLED_MODEL
    assert (BUNDLED_MODEL / "README.md").is_file() and not loaded.model.training
    assert BUNDLED_MODEL in (files.BUNDLED[files.DEFAULT_BUNDLED], files.BUNDLED["celeba64"])  # the default, else CelebA-64


def test_local_directory(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.model.code_dim == tiny_model.code_dim and loaded.source == str(tmp_path)
    assert load_model(str(tmp_path)).note == "a local directory"


def test_missing_or_broken_directory_is_one_line(tmp_path):
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_model(tmp_path / "nope")
    with pytest.raises(ModelLoadError, match="config.json"):
        load_model(tmp_path)


def test_truncated_weights(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(ModelLoadError) as error:
        load_model(tmp_path)
    assert "\n" not in str(error.value)


def test_parse_source(tmp_path):
    assert parse_source(None) is None and parse_source("") is None
    assert parse_source("owner/name@" + COMMIT) == HubSource("owner/name", COMMIT)
    assert parse_source("owner/name") == HubSource("owner/name")
    assert parse_source(str(tmp_path)) == tmp_path
    assert parse_source("./local/dir") == Path("local/dir")


def test_download_then_cache_reuse(hub, online, fallback, tmp_path):
    cache = tmp_path / "cache"
    first = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache)
    assert first.source == f"hub:{REPO_ID}" and COMMIT[:12] in first.note and first.model.k_max == 16
    assert len(hub.downloads()) == 3 and (first.directory / "README.md").is_file()  # config, weights, model card
    second = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache)
    assert second.model.k_max == 16 and len(hub.downloads()) == 3  # served from the cache: no file downloaded


def test_revision_pinning(hub, online, fallback, tmp_path):
    loaded = load_model(f"{REPO_ID}@{OLD_COMMIT}", fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert loaded.model.k_max == 8 and OLD_COMMIT[:12] in loaded.note


def test_offline_uses_the_cache_then_falls_back(hub, online, fallback, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cached = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=cache)
    assert "cache" in cached.note and cached.model.k_max == 16
    fresh = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "empty")
    assert fresh.source.startswith("bundled") and "fallback" in fresh.note


@pytest.mark.parametrize("source", ["someone/unknown", f"{REPO_ID}@no-such-branch"])
def test_unknown_repo_or_revision_falls_back(hub, online, fallback, tmp_path, source):
    started = time.perf_counter()
    loaded = load_model(source, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert time.perf_counter() - started < 3
    assert loaded.source.startswith("bundled") and source in loaded.note and "fallback" in loaded.note


def test_dead_endpoint_falls_back_within_three_seconds(online, fallback, tmp_path):
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.perf_counter()
    loaded = load_model(REPO_ID, fallback=fallback, endpoint=f"http://127.0.0.1:{port}", cache_dir=tmp_path / "cache")
    assert time.perf_counter() - started < 3
    assert loaded.source.startswith("bundled") and "fallback" in loaded.note


def test_silent_endpoint_falls_back_within_three_seconds(online, fallback, tmp_path):
    import socket

    listener = socket.socket()  # accepts connections, never answers
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        started = time.perf_counter()
        loaded = load_model(REPO_ID, fallback=fallback, endpoint=f"http://127.0.0.1:{listener.getsockname()[1]}", cache_dir=tmp_path)
        assert time.perf_counter() - started < 3 and "fallback" in loaded.note
    finally:
        listener.close()


def test_no_fallback_either_is_one_line(online, tmp_path):
    with pytest.raises(ModelLoadError, match="nor the bundled model"):
        load_model(REPO_ID, fallback=tmp_path / "missing", endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "cache")


class RecordingApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        return type("CommitInfo", (), {"oid": COMMIT})()


def test_push_uploads_weights_config_and_card(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "README.md").unlink(missing_ok=True)  # save_pretrained writes a generic card
    with pytest.raises(ModelLoadError, match="model card"):
        push(REPO_ID, tmp_path, api=RecordingApi())
    (tmp_path / "README.md").write_text("# card")
    api = RecordingApi()
    assert push(REPO_ID, tmp_path, api=api) == COMMIT
    upload = api.calls[1][1]
    assert {"config.json", "model.safetensors", "README.md"} <= set(upload["allow_patterns"])
    assert upload["folder_path"] == str(tmp_path) and upload["repo_id"] == REPO_ID


@pytest.mark.parametrize("failure", ["timeout", "connect", "os"])
def test_optional_file_failing_still_serves_the_hub_weights(hub, online, fallback, tmp_path, monkeypatch, failure):
    """A timeout or dropped connection on the card or the learned attack is skipped: the downloaded weights serve."""
    import httpx2

    import sae.zoo.hub

    errors = {"timeout": httpx2.ReadTimeout("read timed out"), "connect": httpx2.ConnectError("refused"), "os": OSError("disk")}
    real = sae.zoo.hub.hf_hub_download

    def flaky(repo_id, filename, **options):
        if filename in ("README.md", files.SCORERS):
            raise errors[failure]
        return real(repo_id, filename, **options)

    monkeypatch.setattr(sae.zoo.hub, "hf_hub_download", flaky)
    loaded = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
    assert loaded.source == f"hub:{REPO_ID}" and COMMIT[:12] in loaded.note and "fallback" not in loaded.note


def test_hub_threads_have_distinct_names(monkeypatch):
    import threading

    from sae.zoo.hub import with_deadline

    def resolve_commit():
        return threading.current_thread().name

    def download():
        return threading.current_thread().name

    names = {with_deadline("the Hub's answer", 5, resolve_commit), with_deadline("the download", 5, download)}
    assert names == {"hub-resolve_commit", "hub-download"}


# ---------------------------------------------------------------------------------------------------
# What is fetched, no fallback, and what travels with a Hub model
# ---------------------------------------------------------------------------------------------------


def test_exactly_the_required_and_optional_files_are_fetched(tiny_model, online, fallback, tmp_path):
    """Config, weights and every optional file the repo has; never a pickle, never the result files."""
    repo = _model_files(tiny_model, tmp_path / "full") | {name: f"{name} content".encode() for name in files.OPTIONAL}
    repo |= {"pytorch_model.bin": b"a pickle", "evaluation.json": b"{}", "privacy.md": b"table"}
    hub = FakeHub({COMMIT: repo})
    try:
        loaded = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
        fetched = sorted(path.split("/")[-1] for path in hub.downloads())
    finally:
        hub.close()
    assert loaded.source == f"hub:{REPO_ID}"
    assert fetched == sorted((*files.REQUIRED, *files.OPTIONAL))
    assert sorted(path.name for path in loaded.directory.iterdir()) == sorted((*files.REQUIRED, *files.OPTIONAL))


def test_a_repo_without_safetensors_weights_is_not_loaded(tiny_model, online, fallback, tmp_path):
    repo = {"config.json": _model_files(tiny_model, tmp_path / "m")["config.json"], "pytorch_model.bin": b"a pickle"}
    hub = FakeHub({COMMIT: repo})
    try:
        loaded = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
        assert not hub.downloads()  # refused at the preflight, before any file
    finally:
        hub.close()
    assert loaded.source.startswith("bundled") and "no model.safetensors" in loaded.note and "fallback" in loaded.note


def test_hub_snapshot_brings_the_shipped_attacks_and_data_note_along(tiny_model, online, fallback, tmp_path):
    """The app looks for the shipped attacks and the data note in the snapshot directory, as in a local one."""
    from sae.cli.fit_attacks import HIDDEN
    from sae.core.fingerprint import weights_digest
    from sae.privacy.learned import LearnedAttack
    from sae.zoo.files import DataNote
    from sae.zoo.shipped import SCHEMES, load_scorers, save_scorers

    source = tmp_path / "source"
    repo = _model_files(tiny_model, source)
    # unfitted: loading them is the point
    scorers = {name: LearnedAttack(tiny_model.num_groups, tiny_model.code_dim, HIDDEN) for name in SCHEMES}
    save_scorers(scorers, source / files.SCORERS, weights_digest(tiny_model))
    DataNote("utkface", "UTKFace", "non-commercial").write(source)
    repo |= {name: (source / name).read_bytes() for name in (files.SCORERS, files.DATA)}
    hub = FakeHub({COMMIT: repo})
    try:
        loaded = load_model(REPO_ID, fallback=fallback, endpoint=hub.url, cache_dir=tmp_path / "cache")
    finally:
        hub.close()
    assert loaded.source == f"hub:{REPO_ID}" and (loaded.directory / files.SCORERS).is_file()
    scorers, reason = load_scorers(loaded.directory, loaded.model)
    assert reason == "" and scorers is not None
    assert DataNote.read(loaded.directory).dataset == "utkface"


def test_without_a_fallback_a_hub_failure_raises(hub, online, tmp_path):
    for source in ("someone/unknown", f"{REPO_ID}@no-such-branch"):
        with pytest.raises(ModelLoadError, match=r"^cannot load .* from the Hub \(") as error:
            load_model(source, fallback=None, endpoint=hub.url, cache_dir=tmp_path / "cache")
        assert source in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(ModelLoadError, match="from the Hub"):
        load_model(REPO_ID, fallback=None, endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "cache")
    with pytest.raises(ModelLoadError, match="no model source given and no fallback"):
        load_model(None, fallback=None)
    loaded = load_model(REPO_ID, fallback=None, endpoint=hub.url, cache_dir=tmp_path / "cache")  # a Hub that works needs none
    assert loaded.source == f"hub:{REPO_ID}"


def test_without_a_fallback_a_local_directory_still_loads(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    assert load_model(tmp_path, fallback=None).model.code_dim == tiny_model.code_dim
    with pytest.raises(ModelLoadError, match="not a directory"):
        load_model(tmp_path / "nope", fallback=None)


def test_offline_without_a_cached_copy_and_no_fallback_raises(online, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="cannot load"):
        load_model(REPO_ID, fallback=None, endpoint="http://127.0.0.1:9", cache_dir=tmp_path / "empty")


# ---------------------------------------------------------------------------------------------------
# python -m sae.cli.push
# ---------------------------------------------------------------------------------------------------


@pytest.fixture
def recording_api(monkeypatch) -> RecordingApi:
    """A stand-in for huggingface_hub.HfApi wherever push builds one (never the network)."""
    import sae.zoo.hub

    api = RecordingApi()
    monkeypatch.setattr(sae.zoo.hub, "HfApi", lambda *args, **kwargs: api)
    return api


def test_push_main_publishes_and_prints_the_commit_to_pin(tiny_model, tmp_path, recording_api, capsys):
    from sae.cli import push as push_cli

    tiny_model.save_pretrained(tmp_path)
    (tmp_path / "README.md").write_text("# card")
    push_cli.main(["--repo-id", REPO_ID, "--model", str(tmp_path), "--private"])
    assert capsys.readouterr().out.splitlines()[-1] == f"pushed {REPO_ID} at commit {COMMIT}; pin it with SAE_MODEL={REPO_ID}@{COMMIT}"
    (_, repo_id, options), (_, upload) = recording_api.calls
    assert repo_id == REPO_ID and options == {"repo_type": "model", "private": True, "exist_ok": True}
    assert upload["allow_patterns"] == files.PUBLISHED and upload["folder_path"] == str(tmp_path)


def test_push_main_refuses_with_one_line(tiny_model, tmp_path, recording_api):
    from sae.cli import push as push_cli

    tiny_model.save_pretrained(tmp_path / "model")
    (tmp_path / "model" / "README.md").unlink(missing_ok=True)
    with pytest.raises(SystemExit, match=r"^sae.cli.push: .* has no README.md model card"):
        push_cli.main(["--repo-id", REPO_ID, "--model", str(tmp_path / "model")])
    with pytest.raises(SystemExit, match=r"^sae.cli.push: .*not a directory"):
        push_cli.main(["--repo-id", REPO_ID, "--model", str(tmp_path / "missing")])
    assert not recording_api.calls  # nothing reached the Hub
