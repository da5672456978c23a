"""Named architectures: the one place that says what "default", "tiny", "default128" or "wide128" builds.

`create_model(name, **overrides)` validates both the name and the overrides before building, so a typo is a clear
error rather than a silently different network. Presets are architecture only; the data a model is trained on is
the training command's business.
"""

from __future__ import annotations

import inspect
from types import MappingProxyType

from sae.core.model import SparseAutoencoder

PRESETS = MappingProxyType(
    {
        # The bundled CelebA-64 model: 20 groups x 128 codes, each group 7 maps of 16x16 (6 shared + 1 own at the PCA
        # start), tied grouped linear layers. k_max is half of code_dim so every k leaves room for decoys.
        "default": MappingProxyType(
            dict(image_size=64, num_groups=20, code_dim=128, k_max=64, channels=[80], blocks=1, group_channels=7, stem=4, tied=True)
        ),
        # A classroom model: trains to a recognisable face on 2 CPU cores in a few minutes.
        "tiny": MappingProxyType(
            dict(image_size=64, num_groups=20, code_dim=64, k_max=32, channels=[48], blocks=1, group_channels=2, stem=4, tied=True)
        ),
        # The bundled UTKFace-128 model: 8x8 patches (stem 8) on a 16x16 grid, 20 groups x 256 codes, each group 6 maps
        # (5 shared + 1 own at the PCA start); k_max 128, so 2,560 non-zeros still leave half of each group for decoys.
        "default128": MappingProxyType(
            dict(image_size=128, num_groups=20, code_dim=256, k_max=128, channels=[128], blocks=1, group_channels=6, stem=8, tied=True)
        ),
        # default128 with 16 wider groups of 320 codes (the same number of grouped weights); k_max 160, so 2,560
        # non-zeros still leave half of each group for decoys. Trained and compared in docs/training.md.
        "wide128": MappingProxyType(
            dict(image_size=128, num_groups=16, code_dim=320, k_max=160, channels=[128], blocks=1, group_channels=6, stem=8, tied=True)
        ),
    }
)
_ARGUMENTS = frozenset(inspect.signature(SparseAutoencoder.__init__).parameters) - {"self"}


def preset(name: str) -> dict:
    """A preset's constructor arguments (a fresh dict: callers may change their copy)."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(sorted(PRESETS))}")
    return {key: list(value) if isinstance(value, list) else value for key, value in PRESETS[name].items()}


def create_model(name: str, **overrides) -> SparseAutoencoder:
    """A fresh model of preset `name`, with `overrides` (constructor arguments) applied after checking their names."""
    unknown = sorted(set(overrides) - _ARGUMENTS)
    if unknown:
        raise ValueError(f"not SparseAutoencoder arguments: {', '.join(unknown)}; expected some of {', '.join(sorted(_ARGUMENTS))}")
    return SparseAutoencoder(**(preset(name) | overrides))
