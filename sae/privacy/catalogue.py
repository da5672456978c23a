"""Every attack in one list: its name, the title of its panel, what it needs, and the function that runs it.

The app's panels and extra-attack choice, the privacy evaluation and the fitting of the attacks shipped beside a
model all read `ATTACKS`, so a new attack is one entry here. An attack gets an `AttackContext` and returns either a
code in the public code's coordinates (the model decodes it) or images (it has a decoder of its own).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from sae.privacy import attacks
from sae.privacy.formats import Key, PublicCode

CODE, IMAGE = "code", "image"
SCORER, REGRESSION, INVERSION = "scorer", "regression", "inversion"  # fitted parts an attack may need


@dataclass
class AttackContext:
    """What an attacker works with: the public code, the k the owner chose (public: the file size tells it), the
    model, fitted parts of their own, randomness, and (only to simulate an attacker who knows part of the key) the key."""

    public: PublicCode
    k: int
    model: nn.Module
    generator: torch.Generator
    fitted: dict[str, object] = field(default_factory=dict)
    key: Key | None = None
    known_fraction: float = 0.0
    target: torch.Tensor | None = None  # the true faces, for attacks that pick a variant the way an attacker would

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (3, self.model.image_size, self.model.image_size)


@dataclass(frozen=True)
class Attack:
    """One attack as every consumer sees it: name, panel title, what it needs, and the function that runs it."""

    name: str
    title: str  # the panel's title
    summary: str  # one line for the app's explanation
    makes: str  # CODE or IMAGE
    run: Callable[[AttackContext], torch.Tensor]
    needs: str | None = None  # a fitted part (SCORER, REGRESSION, INVERSION), if any

    def available(self, fitted: dict[str, object]) -> bool:
        return self.needs is None or fitted.get(self.needs) is not None


def _guess(context: AttackContext) -> torch.Tensor:
    if context.known_fraction > 0 and context.key is None:
        raise ValueError("simulating an attacker who knows part of the key needs the key")
    return attacks.permutation_attack(context.public, context.k, context.generator, context.known_fraction, context.key)


def _magnitude(context: AttackContext) -> torch.Tensor:
    if context.target is None:
        return attacks.magnitude_attack(context.public, context.k, "smallest")
    return attacks.magnitude_attack(context.public, context.k, "best", context.model, context.target)


ATTACKS: dict[str, Attack] = {
    attack.name: attack
    for attack in (
        Attack(
            "decode as is",
            "No key: decoded as is",
            "decodes the public code as it is, decoys and all",
            CODE,
            lambda c: attacks.decoy_attack(c.public),
        ),
        Attack("guess", "Guess k of k'", "keeps the true entries it knows, the rest of k public entries at random", CODE, _guess),
        Attack(
            "magnitude", "Magnitude attack", "keeps the k smallest (or largest) magnitudes: breaks the paper's decoys", CODE, _magnitude
        ),
        Attack(
            "re-encode",
            "Re-encode attack",
            "decodes, re-encodes, keeps the public entries the encoder finds largest",
            CODE,
            lambda c: attacks.reencode_attack(c.public, c.k, c.model),
        ),
        Attack(
            "learned (keep k)",
            "Learned attack (keep k)",
            "a network trained on other faces' public codes keeps the likeliest k",
            CODE,
            lambda c: attacks.learned_attack(c.public, c.k, c.fitted[SCORER]),
            SCORER,
        ),
        Attack(
            "learned (soft)",
            "Learned attack (soft)",
            "the same network weighs every public entry by its guess",
            CODE,
            lambda c: attacks.learned_attack(c.public, c.k, c.fitted[SCORER], soft=True),
            SCORER,
        ),
        Attack(
            "regression",
            "Regression attack",
            "a linear map, fitted on other faces, from the public code straight to pixels",
            IMAGE,
            lambda c: attacks.regression_attack(c.public, c.fitted[REGRESSION], c.image_shape),
            REGRESSION,
        ),
        Attack(
            "inversion",
            "Inversion attack",
            "an MLP, trained on other faces' public codes, from the public code to the face",
            IMAGE,
            lambda c: attacks.inversion_attack(c.public, c.fitted[INVERSION]),
            INVERSION,
        ),
    )
}
EXTRA_ATTACKS = ("magnitude", "re-encode", "learned (keep k)", "learned (soft)", "regression")  # the app's extra panel
