"""The app's settings (sae.app.settings): the controls' values in CONTROLS order <-> ShareSettings, and what is refused."""

from __future__ import annotations

import inspect

import pytest

from sae.app.settings import CONTROLS, NO_EXTRA, SettingsError, ShareSettings
from sae.privacy.catalogue import ATTACKS, EXTRA_ATTACKS
from sae.privacy.scheme import DEFAULT_K, DEFAULT_K_PRIME_RATIO, DEFAULT_SCHEME, SCHEMES


def test_controls_are_from_widgets_parameters_in_order():
    assert tuple(inspect.signature(ShareSettings.from_widgets).parameters) == CONTROLS
    assert len(ShareSettings().widget_values()) == len(CONTROLS)


def test_defaults_are_the_shipped_ones():
    settings = ShareSettings()
    assert (settings.k, settings.scheme, settings.k_prime_ratio) == (DEFAULT_K, DEFAULT_SCHEME, DEFAULT_K_PRIME_RATIO)
    assert settings.owner_fraction == 1.0 and settings.decoys and settings.permute and settings.keyed
    assert settings.options() == {"permute": True}


@pytest.mark.parametrize(
    "settings",
    [
        ShareSettings(),
        ShareSettings(k=3, owner_fraction=0.25, scheme="paper", decoys=False, k_prime_ratio=4.0, permute=False),
        ShareSettings(k=7, known_fraction=0.0, extra_attack=NO_EXTRA, k_prime_ratio=None),
        *(ShareSettings(extra_attack=name) for name in EXTRA_ATTACKS),
        *(ShareSettings(scheme=name) for name in SCHEMES),
    ],
)
def test_widget_values_round_trip(settings):
    assert ShareSettings.from_widgets(*settings.widget_values()) == settings


def test_widget_values_in_controls_order():
    values = dict(zip(CONTROLS, ShareSettings(k=5, k_prime_ratio=3.0, known_fraction=0.2).widget_values(), strict=True))
    assert values == {
        "k": 5,
        "owner_fraction": 1.0,
        "scheme": DEFAULT_SCHEME,
        "decoys": True,
        "fill_all": False,
        "ratio": 3.0,
        "permute": True,
        "known_fraction": 0.2,
        "extra_attack": "magnitude",
    }
    every = dict(zip(CONTROLS, ShareSettings(k_prime_ratio=None).widget_values(), strict=True))
    assert every["fill_all"] is True and every["ratio"] == 2.0  # the slider keeps a usable value while unused


def test_from_widgets_converts_raw_values():
    """Gradio sends sliders as floats (and an API caller may send strings): converted once, here."""
    settings = ShareSettings.from_widgets(4.0, "0.5", "paper", 1, False, "2.5", 0, 0.25, "none")
    assert settings == ShareSettings(4, 0.5, "paper", True, 2.5, False, 0.25, NO_EXTRA)
    assert ShareSettings.from_widgets(4, 1.0, "keyed", True, True, 99.0, True, 0.5, "magnitude").k_prime_ratio is None


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"scheme": "rot13"}, "unknown scheme 'rot13'; choose one of keyed, paper"),
        ({"extra_attack": "telepathy"}, "unknown extra attack 'telepathy'"),
        ({"extra_attack": "inversion"}, "unknown extra attack 'inversion'"),  # in the catalogue, not offered by the app
        ({"extra_attack": "guess"}, "unknown extra attack 'guess'"),  # always shown, never the extra one
        ({"k": "many"}, "a control has an unusable value"),
        ({"ratio": None}, "a control has an unusable value"),
        ({"owner_fraction": 0.0}, "fractions must be in (0, 1]"),
        ({"owner_fraction": 1.5}, "fractions must be in (0, 1]"),
        ({"known_fraction": -0.1}, "fractions must be in (0, 1]"),
        ({"known_fraction": 1.01}, "fractions must be in (0, 1]"),
        ({"ratio": 0.5}, "k'/k at least 1"),
    ],
)
def test_from_widgets_refuses_what_no_widget_makes(changes, message):
    values = dict(zip(CONTROLS, ShareSettings().widget_values(), strict=True)) | {"fill_all": False} | changes
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
        ShareSettings.from_widgets(*values.values())
    assert isinstance(refused.value, ValueError) and "Traceback" not in str(refused.value)


def test_every_extra_attack_is_in_the_catalogue():
    assert set(EXTRA_ATTACKS) <= set(ATTACKS) and NO_EXTRA not in ATTACKS


def test_k_prime_follows_the_settings():
    assert ShareSettings(k=8, k_prime_ratio=None).k_prime(32) == 32
    assert ShareSettings(k=8, k_prime_ratio=2.0).k_prime(32) == 16
    assert ShareSettings(k=8, k_prime_ratio=8.0).k_prime(32) == 32  # capped at the group size
    assert ShareSettings(k=8, decoys=False).k_prime(32) == 8
    assert ShareSettings(k=8, decoys=False, k_prime_ratio=None).k_prime(32) == 8  # no decoys wins over "every position"
    assert ShareSettings(k=8, k_prime_ratio=1.0).k_prime(32) == 8


def test_keyed_follows_the_scheme():
    assert ShareSettings(scheme="keyed").keyed and not ShareSettings(scheme="paper").keyed
    assert ShareSettings(permute=False).options() == {"permute": False}
