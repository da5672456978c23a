"""The learned attack bundled beside the model: fit, save, load, refuse a stale or broken file, and the app's option."""

from __future__ import annotations

import gradio as gr
import pytest
import torch

from sae import bundled_attack
from sae.attacks import LearnedAttack
from sae.bundled_attack import FILENAME, HIDDEN, fit_scorer, load, save, weights_digest
from sae.hub import LoadedModel
from sae.train import PRESETS
from sae.ui import PANELS, Handlers, build

DEFAULTS = dict(owner_fraction=1.0, decoys=True, ratio=2.0, fill_all=False, permute=False, known=0.5)


def _codes(model, count: int = 32) -> torch.Tensor:
    with torch.inference_mode():
        return model.encode(torch.rand(count, 3, 64, 64, generator=torch.Generator().manual_seed(0)))


@pytest.fixture
def model_dir(tiny_model, tmp_path):
    directory = tmp_path / "model"
    tiny_model.save_pretrained(directory)
    return directory


@pytest.fixture
def fitted(tiny_model, model_dir):
    """Both scorers fitted for the tiny model (a few steps) and saved beside it."""
    generator = torch.Generator().manual_seed(0)
    codes = _codes(tiny_model)
    scorers = {
        name: fit_scorer(codes, tiny_model.k_max, permute, 5, generator, batch_size=8) for name, permute in bundled_attack.SCHEMES.items()
    }
    save(scorers, model_dir / FILENAME, weights_digest(model_dir), {"steps": "5"})
    return scorers


def test_fitting_learns_something(tiny_model):
    losses: list[float] = []
    fit_scorer(
        _codes(tiny_model, 64),
        tiny_model.k_max,
        False,
        80,
        torch.Generator().manual_seed(1),
        batch_size=16,
        log=lambda _, loss: losses.append(loss),
    )
    assert sum(losses[-15:]) / 15 < sum(losses[:15]) / 15


def test_save_then_load_round_trip(tiny_model, model_dir, fitted):
    scorers, reason = load(model_dir, tiny_model)
    assert reason == "" and scorers.info["steps"] == "5" and scorers.info["model_sha256"] == weights_digest(model_dir)
    from sae import privacy

    codes = tiny_model.sparsify(_codes(tiny_model, 4), 4)
    public, _ = privacy.ambiguate(codes, 8, torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert torch.allclose(scorers.for_scheme(False)(public), fitted["plain"](public), atol=2e-2)  # float16 storage
        assert torch.allclose(scorers.for_scheme(True)(public), fitted["permuted"](public), atol=2e-2)
    assert not list(model_dir.glob("*.partial"))


def test_bundled_size_for_the_real_code_shape(tmp_path):
    """The default preset's code shape (the bundled model's): both scorers stay under the 2 MB budget for bundled artifacts."""
    shape = PRESETS["default"]
    scorers = {name: LearnedAttack(shape["num_groups"], shape["code_dim"], HIDDEN) for name in bundled_attack.SCHEMES}
    path = tmp_path / FILENAME
    save(scorers, path, "0" * 64)
    assert path.stat().st_size < 2_000_000


def test_missing_stale_or_broken_file_hides_the_option(tiny_model, model_dir, fitted):
    assert load(None, tiny_model)[0] is None
    other = model_dir.parent / "other"
    tiny_model.save_pretrained(other)
    assert "no learned_attack.safetensors" in load(other, tiny_model)[1]
    (other / FILENAME).write_bytes((model_dir / FILENAME).read_bytes())
    with torch.no_grad():
        next(tiny_model.parameters()).add_(1.0)  # "retrained": the weights, hence the digest, differ
    tiny_model.save_pretrained(other)
    scorers, reason = load(other, tiny_model)
    assert scorers is None and "fitted for other model weights" in reason and "python -m sae.bundled_attack" in reason
    path = model_dir / FILENAME
    path.write_bytes(path.read_bytes()[:200])
    scorers, reason = load(model_dir, tiny_model)
    assert scorers is None and "unreadable" in reason and "\n" not in reason


def test_app_offers_the_learned_attack_when_bundled(tiny_model, model_dir, fitted, tmp_path):
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", model_dir), outbox=tmp_path / "outbox")
    assert {"learned (keep k)", "learned (soft)"} <= set(handlers.attacks)
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    for extra, name in (("learned (keep k)", "learned attack (keep k)"), ("learned (soft)", "learned attack (soft)")):
        for permute in (False, True):
            outputs = handlers.update(ref, None, 4, *(DEFAULTS | {"permute": permute}).values(), extra)
            assert outputs[2 * PANELS - 1].startswith(f"**{name}**") and outputs[PANELS - 1].shape == (256, 256, 3)


def test_app_hides_the_learned_attack_with_a_reason(tiny_model, tmp_path):
    loaded = LoadedModel(tiny_model, "test", "tiny", tmp_path)
    handlers = Handlers(loaded, outbox=tmp_path / "outbox")
    assert "learned (keep k)" not in handlers.attacks and "magnitude" in handlers.attacks
    ref = handlers.prepare(torch.rand(64, 64, 3).numpy())[0]
    with pytest.raises(gr.Error, match="not available: no learned_attack"):
        handlers.update(ref, None, 4, *DEFAULTS.values(), "learned (keep k)")
    radio = next(block for block in build(loaded).blocks.values() if getattr(block, "elem_id", None) == "extra-attack")
    assert [choice[1] for choice in radio.choices] == handlers.attacks and "Learned attack not offered" in radio.info


def test_one_command_fits_and_writes_beside_the_model(tiny_model, model_dir, fake_celeba, capsys):
    bundled_attack.main(["--model", str(model_dir), "--data", str(fake_celeba), "--steps", "3", "--batch", "4", "--threads", "1"])
    out = capsys.readouterr().out
    assert f"wrote {model_dir / FILENAME}" in out and "chance" in out
    scorers, reason = load(model_dir, tiny_model)
    assert reason == "" and scorers.info["train_faces"] == "24"


def test_hub_snapshot_brings_the_scorers_along(tiny_model, model_dir, fitted, tmp_path, monkeypatch):
    from sae.hub import load_model
    from tests.test_hub import COMMIT, REPO_ID, FakeHub

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    files = {name: (model_dir / name).read_bytes() for name in ("config.json", "model.safetensors", FILENAME)}
    hub = FakeHub({COMMIT: files})
    try:
        loaded = load_model(REPO_ID, fallback=model_dir, endpoint=hub.url, cache_dir=tmp_path / "cache")
    finally:
        hub.close()
    assert loaded.source == f"hub:{REPO_ID}" and (loaded.directory / FILENAME).is_file()
    scorers, reason = load(loaded.directory, loaded.model)
    assert reason == "" and scorers is not None


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"num_groups": "four"}, "malformed metadata (invalid literal"),
        ({"hidden": "16.5"}, "malformed metadata (invalid literal"),
        ({"hidden": None}, "malformed metadata (no 'hidden' entry)"),
        ({"code_dim": None}, "malformed metadata (no 'code_dim' entry)"),
        ({"hidden": "0"}, "malformed metadata (hidden = 0)"),
    ],
)
def test_malformed_metadata_hides_the_option_instead_of_crashing(tiny_model, model_dir, fitted, tmp_path, change, reason):
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = model_dir / FILENAME
    with safe_open(str(path), framework="pt") as file:
        metadata, tensors = file.metadata(), {name: file.get_tensor(name) for name in file.keys()}
    save_file(tensors, path, metadata={key: value for key, value in (metadata | change).items() if value is not None})
    scorers, text = load(model_dir, tiny_model)
    assert scorers is None and reason in text and "\n" not in text
    handlers = Handlers(LoadedModel(tiny_model, "test", "tiny", model_dir), outbox=tmp_path / "outbox")  # the app still starts
    assert "learned (keep k)" not in handlers.attacks and reason in handlers.scorer_note
