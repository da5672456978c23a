from __future__ import annotations

import pytest

from sae.hub import BUNDLED_MODEL, ModelLoadError, load_model


def test_bundled_model_loads():
    loaded = load_model()
    assert loaded.source.startswith("bundled") and loaded.model.num_groups >= 1
    assert (BUNDLED_MODEL / "README.md").is_file()


def test_local_directory(tiny_model, tmp_path):
    tiny_model.save_pretrained(tmp_path)
    loaded = load_model(tmp_path)
    assert loaded.model.code_dim == tiny_model.code_dim and loaded.source == str(tmp_path)


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
