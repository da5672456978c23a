"""Named architectures (sae.core.presets): the registry, fresh copies, and validated names and overrides."""

from __future__ import annotations

import json

import pytest

from sae.core.model import SparseAutoencoder
from sae.core.presets import PRESETS, create_model, preset
from sae.zoo import files


def test_the_registry_names_the_four_presets():
    assert set(PRESETS) == {"default", "tiny", "default128", "wide128"}
    assert PRESETS["default"]["image_size"] == PRESETS["tiny"]["image_size"] == 64
    assert PRESETS["default128"]["image_size"] == PRESETS["wide128"]["image_size"] == 128


def test_the_wide_128_preset_has_the_grouped_weights_of_default128_in_fewer_wider_groups():
    wide, default = create_model("wide128"), create_model("default128")
    assert (wide.num_groups, wide.code_dim, wide.k_max) == (16, 320, 160)
    assert wide.encoder_weight.numel() == default.encoder_weight.numel()
    assert wide.num_groups * wide.k_max == default.num_groups * default.k_max  # the same largest budget, 2,560


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_leave_room_for_decoys(name):
    model = create_model(name)
    assert isinstance(model, SparseAutoencoder) and model.image_size == PRESETS[name]["image_size"]
    assert model.k_max * 2 <= model.code_dim  # every k leaves at least half of each group for decoys
    assert {key: getattr(model, key) for key in ("num_groups", "code_dim", "k_max")} == {
        key: PRESETS[name][key] for key in ("num_groups", "code_dim", "k_max")
    }


def test_presets_cannot_be_changed_in_place():
    with pytest.raises(TypeError):
        PRESETS["mine"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        PRESETS["tiny"]["k_max"] = 1  # type: ignore[index]


def test_preset_returns_a_fresh_copy():
    first = preset("tiny")
    first["channels"].append(999)
    first["k_max"] = 1
    assert preset("tiny") == dict(PRESETS["tiny"]) and 999 not in PRESETS["tiny"]["channels"]


def test_an_unknown_preset_is_refused_with_the_choices():
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; choose one of default, default128, tiny, wide128"):
        preset("huge")
    with pytest.raises(ValueError, match="unknown preset"):
        create_model("huge")


def test_overrides_apply_after_their_names_are_checked():
    model = create_model("tiny", k_max=8, num_groups=4)
    assert (model.k_max, model.num_groups, model.code_dim) == (8, 4, PRESETS["tiny"]["code_dim"])
    with pytest.raises(ValueError, match="not SparseAutoencoder arguments: code_size, kmax"):
        create_model("tiny", kmax=8, code_size=4)
    with pytest.raises(ValueError, match="k_max must be in"):  # a known name with a bad value: the model refuses it
        create_model("tiny", k_max=PRESETS["tiny"]["code_dim"] + 1)


def test_the_bundled_celeba_model_is_the_default_preset():
    path = files.BUNDLED["celeba64"] / files.CONFIG
    if not path.is_file():
        pytest.skip("the bundled CelebA-64 model is not in this checkout")
    assert json.loads(path.read_text()) == dict(PRESETS["default"])
