"""The per-image cache: bounded, least recently used first out, safe under concurrent handlers."""

from __future__ import annotations

import threading

import pytest
import torch

from sae.app.face_cache import FaceCache, Upload, View
from sae.app.pipeline import EncodedFace


def _upload(value: float) -> Upload:
    face = EncodedFace(torch.full((1, 3, 4, 4), value), torch.full((1, 2, 3), value))
    return Upload({False: View(face, "face"), True: View(face, "whole")})


def test_least_recently_used_is_evicted_first():
    cache = FaceCache(2)
    cache.put("a", _upload(0.1))
    cache.put("b", _upload(0.2))
    assert cache.get("a") is not None  # "a" is now the most recent
    cache.put("c", _upload(0.3))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("c") is not None and len(cache) == 2
    assert cache.get(None) is None


def test_a_racing_put_keeps_the_first_entry():
    cache = FaceCache(4)
    first = cache.put("k", _upload(0.1))
    assert cache.put("k", _upload(0.9)) is first and len(cache) == 1


def test_bounded_under_concurrent_use():
    cache = FaceCache(8)

    def worker(offset: int) -> None:
        for i in range(200):
            key = f"{offset}-{i % 20}"
            if cache.get(key) is None:
                cache.put(key, _upload(i / 200))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(cache) == 8


def test_capacity_must_hold_one_upload():
    with pytest.raises(ValueError, match="at least one"):
        FaceCache(0)


def test_entry_size_is_computed_from_the_shapes(tiny_model, tmp_path):
    """The per-upload size the app and README state: the tensors one entry really holds, for the default preset."""
    from pathlib import Path

    from sae.app.face_cache import ENTRY_BYTES, ENTRY_MB, FaceStore, entry_bytes
    from sae.app.uploads import Uploads
    from sae.core.presets import PRESETS
    from tests.conftest import REPO, TINY

    store = FaceStore(tiny_model, Uploads(tmp_path))
    upload = store.get(store.add(Path(REPO / "assets" / "examples" / "astronaut.png")))
    held = sum(tensor.nbytes for view in upload.views.values() for tensor in (view.face.image, view.face.codes))
    assert held == entry_bytes(TINY["num_groups"], TINY["code_dim"], TINY["image_size"])
    default = PRESETS["default"]
    assert ENTRY_BYTES == entry_bytes(default["num_groups"], default["code_dim"]) == 2 * 4 * (3 * 64 * 64 + 20 * 128)
    assert f"about {ENTRY_MB:.2f} MB an upload" in (REPO / "README.md").read_text()
