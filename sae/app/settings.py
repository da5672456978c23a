"""What the owner and the attackers choose in the app, as one typed object from the widgets to the pipeline.

`CONTROLS` names the control widgets in the order every event passes them; `ShareSettings.from_widgets` is the only
place their raw values become settings, so handlers, benchmarks and the load test never mirror positions by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from sae.privacy.catalogue import ATTACKS, EXTRA_ATTACKS
from sae.privacy.scheme import DEFAULT_K, DEFAULT_K_PRIME_RATIO, DEFAULT_SCHEME, SCHEMES, k_prime_for

CONTROLS = ("k", "owner_fraction", "scheme", "decoys", "fill_all", "ratio", "permute", "known_fraction", "extra_attack")
NO_EXTRA = "none"


class SettingsError(ValueError):
    """A control value the app cannot use (a hand-made API call); the message is for the user."""


@dataclass(frozen=True)
class ShareSettings:
    """Everything the owner and the attackers choose; defaults are the shipped ones."""

    k: int = DEFAULT_K
    owner_fraction: float = 1.0
    scheme: str = DEFAULT_SCHEME
    decoys: bool = True
    k_prime_ratio: float | None = DEFAULT_K_PRIME_RATIO  # None: decoys at every position (k' = code_dim)
    permute: bool = True
    known_fraction: float = 0.5
    extra_attack: str = "magnitude"
    seed: int = 0

    def k_prime(self, code_dim: int) -> int:
        """Public entries per group: k without decoys, else the ratio's k' (every position when the ratio is None)."""
        return k_prime_for(self.k, code_dim, self.k_prime_ratio if self.decoys else 1.0)

    def options(self) -> dict:
        """`ambiguate` options beyond k and k'."""
        return {"permute": self.permute}

    @property
    def keyed(self) -> bool:
        return SCHEMES[self.scheme].keyed

    def widget_values(self) -> list:
        """The controls' values in `CONTROLS` order (the inverse of `from_widgets`), for API callers and tests."""
        ratio = 2.0 if self.k_prime_ratio is None else self.k_prime_ratio
        return [
            self.k,
            self.owner_fraction,
            self.scheme,
            self.decoys,
            self.k_prime_ratio is None,
            ratio,
            self.permute,
            self.known_fraction,
            self.extra_attack,
        ]

    @classmethod
    def from_widgets(
        cls,
        k: float,
        owner_fraction: float,
        scheme: str,
        decoys: bool,
        fill_all: bool,
        ratio: float,
        permute: bool,
        known_fraction: float,
        extra_attack: str,
    ) -> ShareSettings:
        """The controls' raw values (in `CONTROLS` order) -> settings, refusing what no widget can produce."""
        if scheme not in SCHEMES:
            raise SettingsError(f"unknown scheme {scheme!r}; choose one of {', '.join(SCHEMES)}")
        if extra_attack != NO_EXTRA and (extra_attack not in ATTACKS or extra_attack not in EXTRA_ATTACKS):
            raise SettingsError(f"unknown extra attack {extra_attack!r}; choose one of {', '.join(EXTRA_ATTACKS)}")
        try:
            values = cls(
                int(k),
                float(owner_fraction),
                scheme,
                bool(decoys),
                None if fill_all else float(ratio),
                bool(permute),
                float(known_fraction),
                extra_attack,
            )
        except (TypeError, ValueError) as error:
            raise SettingsError(f"a control has an unusable value ({error})") from None
        if not (0 < values.owner_fraction <= 1 and 0 <= values.known_fraction <= 1) or (values.k_prime_ratio or 1) < 1:
            raise SettingsError("fractions must be in (0, 1] and k'/k at least 1")
        return values
