"""Where a model comes from: a Hub repo id (optionally `@revision`), a local directory, or the bundled model.

`load_model` returns the model with a sentence saying which model is serving and why, so the UI can show it.
A Hub source that cannot be reached (no network, HF_HUB_OFFLINE without a cached copy, unknown repo, bad
revision, no safetensors weights) falls back to the bundled model once `HUB_TIMEOUT` has passed without an answer (then the
bundled model loads). A Hub that answers but stalls mid-download gives way after `HUB_DOWNLOAD_DEADLINE`; huggingface_hub
writes into `*.incomplete` blobs and links a file into the snapshot only once complete, so a half-written file is never
loaded, then or on a later start (which resumes the download).

Why a preflight: `hf_hub_download` retries a failed metadata request for up to a minute when nothing is
cached (huggingface_hub's `_ETAG_RETRY_TIMEOUT`), which would stall the app's start. So the revision is first
resolved to a commit with one `model_info` call (no retries) bounded by a thread deadline; only a reachable
repo is downloaded, pinned to that commit, so a second load is served from the cache without downloading.
Only `config.json` and `model.safetensors` are fetched (with the model card and the bundled learned and regression
attacks when the repo has them): the mixin's own `from_pretrained(repo_id)` would fall back to a pickled `pytorch_model.bin`, which we
never want to unpickle.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError
from safetensors import SafetensorError

from sae.core.messages import one_line
from sae.core.model import SparseAutoencoder
from sae.zoo import files

BUNDLED_MODEL = files.default_model()
HUB_TIMEOUT = 2.5  # seconds before an unreachable Hub gives way to the bundled model
HUB_DOWNLOAD_DEADLINE = 30.0  # seconds for the files once the Hub answered: enough for a model directory, not a stalled transfer
T = TypeVar("T")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_HUB_ERRORS = (HfHubHTTPError, httpx2.HTTPError, OSError, EntryNotFoundError, ValueError, FutureTimeout)


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message is one line meant for the person starting the app."""


@dataclass
class LoadedModel:
    """A loaded model, where it came from, a sentence for the UI, and its directory (card, data note, attacks)."""

    model: SparseAutoencoder
    source: str
    note: str
    directory: Path | None = None  # where config, weights and model card live (the About panel reads the card)


@dataclass(frozen=True)
class HubSource:
    """A Hub repository id and an optional pinned revision."""

    repo_id: str
    revision: str | None = None

    def __str__(self) -> str:
        return self.repo_id + (f"@{self.revision}" if self.revision else "")


def parse_source(source: str | Path | None) -> Path | HubSource | None:
    """None/'' -> bundled; an existing path -> local directory; 'owner/name[@rev]' -> Hub; else a path (it will fail)."""
    if source is None or str(source) == "":
        return None
    text = str(source)
    if isinstance(source, Path) or Path(text).exists():
        return Path(text)
    repo_id, _, revision = text.partition("@")
    if _REPO_ID.match(repo_id) and not text.startswith((".", "/", "~")):
        return HubSource(repo_id, revision or None)
    return Path(text)


def _from_directory(path: Path) -> SparseAutoencoder:
    if not path.is_dir():
        raise ModelLoadError(f"model source {str(path)!r} is not a directory")
    if not all((path / name).is_file() for name in files.REQUIRED):
        raise ModelLoadError(f"{path} does not hold config.json and model.safetensors")
    try:
        return SparseAutoencoder.from_pretrained(path, strict=True).eval()
    except (OSError, RuntimeError, ValueError, TypeError, KeyError, SafetensorError) as error:
        raise ModelLoadError(f"cannot load the model in {path}: {one_line(error)}") from error


def _offline() -> bool:
    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "ON", "YES", "TRUE")


def resolve_commit(source: HubSource, endpoint: str | None = None, timeout: float = HUB_TIMEOUT) -> str:
    """The commit a Hub revision points to (one API call, no retries), checking safetensors weights are there."""
    info = HfApi(endpoint=endpoint).model_info(source.repo_id, revision=source.revision, timeout=timeout, files_metadata=False)
    names = {sibling.rfilename for sibling in info.siblings or []}
    missing = [name for name in files.REQUIRED if name not in names]
    if missing:
        raise EntryNotFoundError(f"{source} has no {', '.join(missing)} (only safetensors weights are loaded)")
    return info.sha


class HubTimeout(TimeoutError):
    """A Hub step ran past its deadline; the message says which, in one line."""


def with_deadline(what: str, timeout: float, function: Callable[..., T], *args: object) -> T:
    """`function(*args)` bounded by wall time, DNS and stalled transfers included.

    It runs in a daemon thread that is abandoned, not joined, on timeout (so it never delays the app or its exit);
    whatever it was downloading stays an `*.incomplete` blob that a later download resumes.
    """
    future: Future = Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:  # handed to the caller, which decides; nothing is swallowed here
            future.set_exception(error)

    threading.Thread(
        target=run, name=f"hub-{getattr(function, '__name__', 'call')}", daemon=True
    ).start()  # hub-resolve_commit, hub-download
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        raise HubTimeout(f"{what} did not finish within {timeout:g} s") from None


def download(source: HubSource, commit: str | None, endpoint: str | None = None, cache_dir: str | Path | None = None) -> Path:
    """Fetch (or find in the cache) config and weights at `commit`; None means offline: cache only."""
    paths = [_fetch(source, name, commit, endpoint, cache_dir) for name in files.REQUIRED]
    snapshot = Path(paths[0]).parent
    for name in files.OPTIONAL:
        _fetch_optional(source, name, commit, endpoint, cache_dir)
    return snapshot


def _fetch(source: HubSource, name: str, commit: str | None, endpoint: str | None, cache_dir: str | Path | None) -> str:
    """One file of the repo at `commit` (None: offline, from the cache only); its local path."""
    return hf_hub_download(
        source.repo_id,
        name,
        revision=commit or source.revision,
        endpoint=endpoint,
        cache_dir=cache_dir,
        local_files_only=commit is None,
        etag_timeout=HUB_TIMEOUT,
    )


def _fetch_optional(source: HubSource, name: str, commit: str | None, endpoint: str | None, cache_dir: str | Path | None) -> None:
    """A file that lands in the same snapshot when the repo has it (the card, the learned attack); a repo without it still loads.

    Any failure to fetch it is skipped, not only its absence: huggingface_hub 2.x talks through httpx2, so a timeout or a
    dropped connection is an `httpx2.HTTPError` (`TimeoutException`, `ConnectError`, ...) or, from its own wrappers, an
    `OSError`; either would otherwise abort the download and serve the bundled model although the weights arrived.
    """
    try:
        _fetch(source, name, commit, endpoint, cache_dir)
    except (EntryNotFoundError, HfHubHTTPError, httpx2.HTTPError, OSError):
        pass


def _from_hub(
    source: HubSource, endpoint: str | None, cache_dir: str | Path | None, timeout: float, deadline: float
) -> tuple[SparseAutoencoder, str, Path]:
    """(model, note, snapshot directory) from the Hub, or from the Hub cache when offline."""
    if _offline():
        snapshot = download(source, None, endpoint, cache_dir)
        return _from_directory(snapshot), f"from the local Hub cache (offline), snapshot {snapshot.name[:12]}", snapshot
    commit = with_deadline("the Hub's answer", timeout, resolve_commit, source, endpoint, timeout * 0.8)
    snapshot = with_deadline("the download", deadline, download, source, commit, endpoint, cache_dir)
    return _from_directory(snapshot), f"from the Hub at commit {commit[:12]}", snapshot


def load_model(
    source: str | Path | None = None,
    *,
    fallback: Path | None = BUNDLED_MODEL,
    endpoint: str | None = None,
    cache_dir: str | Path | None = None,
    timeout: float = HUB_TIMEOUT,
    deadline: float = HUB_DOWNLOAD_DEADLINE,
) -> LoadedModel:
    """Load `source` (Hub 'owner/name[@revision]', a save_pretrained directory, or None for the bundled model).

    A Hub source that fails for any network or repository reason falls back to `fallback` with a note saying
    why (fallback None: raises ModelLoadError with the reason); a local directory that fails raises ModelLoadError
    (the person asked for that exact directory).
    """
    parsed = parse_source(source)
    if parsed is None:
        if fallback is None:
            raise ModelLoadError("no model source given and no fallback")
        return LoadedModel(_from_directory(fallback), f"bundled ({fallback.name})", "the model shipped with the app", fallback)
    if isinstance(parsed, Path):
        return LoadedModel(_from_directory(parsed), str(parsed), "a local directory", parsed)
    try:
        model, note, snapshot = _from_hub(parsed, endpoint, cache_dir, timeout, deadline)
        return LoadedModel(model, f"hub:{parsed}", note, snapshot)
    except (*_HUB_ERRORS, ModelLoadError) as error:
        reason = one_line(error)
        if fallback is None:
            raise ModelLoadError(f"cannot load {parsed} from the Hub ({reason})") from error
        try:
            model = _from_directory(fallback)
        except ModelLoadError as fallback_error:
            raise ModelLoadError(f"cannot load {parsed} ({reason}) nor the bundled model ({fallback_error})") from error
        return LoadedModel(
            model, f"bundled ({fallback.name})", directory=fallback, note=f"fallback: could not load {parsed} from the Hub ({reason})"
        )


def push(repo_id: str, model_dir: Path = BUNDLED_MODEL, private: bool = False, api: HfApi | None = None) -> str:
    """Publish weights, config and model card (README.md with the evaluation table); returns the commit id to pin."""
    _from_directory(model_dir)  # refuse to publish what we could not load ourselves
    if not (model_dir / files.CARD).is_file():
        raise ModelLoadError(f"{model_dir} has no README.md model card (write it with sae.cli.card)")
    api = api or HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        repo_id=repo_id, folder_path=str(model_dir), allow_patterns=files.PUBLISHED, commit_message="Upload sparse autoencoder"
    )
    return info.oid
