"""Attacks on public codes: what an adversary with the public model but no key can decode.

Every attack returns a (B, L, m) code in the public code's coordinates, ready for `model.decode`; with a
secret permutation those are not the model's coordinates, which is the point of the permutation. The
scheme's strength is whatever the best of these achieves, measured, not assumed.

- `decoy_attack`: decode the public code as it is.
- `permutation_attack`: keep k of the k' public non-zeros at random (the report's "50% permutation"
  attack: at k' = 2k half of what it keeps is true); `known_fraction` simulates an attacker who also
  holds that share of the true support (a leaked or lower-fidelity key).
- `magnitude_attack`: keep the k smallest or the k largest magnitudes; breaks the reference decoys.
- `reencode_attack`: decode, re-encode, keep the public entries the encoder finds largest.
- `learned_attack`: a classifier trained on ambiguated codes of the attacker's own faces scores each
  public non-zero; keep the k most likely true ones, or decode the posterior-weighted code.
- `regression_attack`: skip the model's decoder; a ridge regression trained on the attacker's own faces
  maps the public code (and each group's sorted values, which survive the permutation) to pixels.
  It returns images, not a code. `RegressionAttack.compact` keeps its top principal pixel axes (small
  enough to ship beside the model).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from sae.privacy.formats import Key, PublicCode
from sae.privacy.scheme import check_key, kept_count

if TYPE_CHECKING:
    from sae.privacy.learned import CompactRegression, Inversion, LearnedAttack, RegressionAttack


def chance_level(k: int, k_prime: int) -> float:
    """Support recovery of a blind guess: k of k' kept at random are true with probability k/k'."""
    return k / k_prime


def true_mask_dense(public: PublicCode, key: Key) -> torch.Tensor:
    """(B, L, m) boolean: the true entries, in public coordinates."""
    check_key(public, key)
    return torch.zeros(public.dense().shape, dtype=torch.bool).scatter(-1, public.positions, key.true_mask)


def support_recovery(attacked: torch.Tensor, public: PublicCode, key: Key) -> torch.Tensor:
    """(B,) fraction of each attack code's kept entries (its non-zeros) that are true; compare `chance_level`.

    Entries whose stored value is exactly zero (possible with 8-bit values) cannot count as kept.
    """
    kept = attacked != 0
    hits = (kept & true_mask_dense(public, key)).sum((1, 2))
    return hits.float() / kept.sum((1, 2)).clamp_min(1).float()


def keep_by_score(public: PublicCode, scores: torch.Tensor, k: int) -> torch.Tensor:
    """Keep, per group, the k public entries with the highest scores (B, L, k'); ties go to lower positions."""
    if not 0 <= k <= public.k_prime:
        raise ValueError(f"need 0 <= k <= k'={public.k_prime}, got {k}")
    order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :k]
    shape = (public.num_images, public.num_groups, public.code_dim)
    positions = public.positions.gather(-1, order)
    return public.values.new_zeros(shape).scatter(-1, positions, public.values.gather(-1, order))


def decoy_attack(public: PublicCode) -> torch.Tensor:
    """Decode the public code as it is: every decoy included."""
    return public.dense()


def permutation_attack(
    public: PublicCode,
    k: int,
    generator: torch.Generator,
    known_fraction: float = 0.0,
    key: Key | None = None,
    known: str = "random",
) -> torch.Tensor:
    """Keep k of the k' public non-zeros at random, except a known share of the true support.

    With known_fraction f > 0 the attacker holds `kept_count(key.k, f)` true entries per group (chosen at
    random, or the largest with known="largest": a lower-fidelity key holder trying to upgrade) and fills
    the rest at random from the remaining public entries. Simulating that needs the key. The known share
    is of the support only, never of the permutation secret.
    """
    scores = torch.rand(public.positions.shape, generator=generator)
    if known_fraction > 0:
        if key is None:
            raise ValueError("simulating a known share of the key needs the key")
        check_key(public, key)
        count = min(k, kept_count(key.k, known_fraction))
        if known == "random":
            pick = torch.rand(public.positions.shape, generator=generator)
        elif known == "largest":
            pick = public.values.abs()
        else:
            raise ValueError(f"known must be 'random' or 'largest', got {known!r}")
        pick = torch.where(key.true_mask, pick, torch.full_like(pick, -math.inf))
        chosen = torch.sort(pick, dim=-1, descending=True, stable=True).indices[..., :count]
        scores = scores.scatter(-1, chosen, 2.0)  # above every random score
    return keep_by_score(public, scores, k)


def _mean_squared_error(model: nn.Module, code: torch.Tensor, target: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.mse_loss(model.decode(code), target))


def magnitude_attack(
    public: PublicCode,
    k: int,
    mode: str = "smallest",
    model: nn.Module | None = None,
    target: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep the k smallest ("smallest") or largest ("largest") magnitudes per group.

    mode="best" returns whichever of the two decodes closer to `target` over the whole batch (needs
    `model`): an evaluator's choice that an attacker can make as well, by trying both on their own faces.
    """
    if mode == "best":
        if model is None or target is None:
            raise ValueError("mode='best' needs model and target images to compare the two variants")
        variants = [magnitude_attack(public, k, side) for side in ("smallest", "largest")]
        return min(variants, key=lambda code: _mean_squared_error(model, code, target))
    if mode not in ("smallest", "largest"):
        raise ValueError(f"mode must be 'smallest', 'largest' or 'best', got {mode!r}")
    magnitude = public.values.abs()
    return keep_by_score(public, -magnitude if mode == "smallest" else magnitude, k)


def reencode_attack(public: PublicCode, k: int, model: nn.Module, iterations: int = 1) -> torch.Tensor:
    """Decode, re-encode, keep the k public entries with the largest re-encoded magnitude; repeat.

    The consistency idea: the true entries are the ones the encoder would choose for the image they
    describe; decoys are not. Later iterations decode the previous guess instead of the whole public code.
    """
    code = public.dense()
    with torch.no_grad():
        for _ in range(iterations):
            reencoded = model.encode(model.decode(code))
            code = keep_by_score(public, reencoded.gather(-1, public.positions).abs(), k)
    return code


def learned_attack(public: PublicCode, k: int, attacker: LearnedAttack, soft: bool = False) -> torch.Tensor:
    """Keep the k public entries the attacker scores most likely true; with soft=True decode instead the
    posterior-weighted code (each public value times its probability of being true), the attacker's
    estimate of the mean code, which favours PSNR when the guesses are uncertain."""
    with torch.no_grad():
        logits = attacker(public)
    if not soft:
        return keep_by_score(public, logits, k)
    shape = (public.num_images, public.num_groups, public.code_dim)
    weighted = public.values * torch.sigmoid(logits)
    return public.values.new_zeros(shape).scatter(-1, public.positions, weighted)


def regression_attack(
    public: PublicCode, attacker: RegressionAttack | CompactRegression, image_shape: tuple[int, ...] = (3, 64, 64)
) -> torch.Tensor:
    """Images (B, 3, H, W) the attacker's own decoder makes of a public code: no key, no model decode."""
    with torch.no_grad():
        return attacker.predict(public, image_shape)


def inversion_attack(public: PublicCode, attacker: Inversion, other: PublicCode | None = None) -> torch.Tensor:
    """Images (B, 3, H, W) the attacker's own MLP decoder (`sae.privacy.learned.Inversion`) makes of a public code,
    or of two shares of the same faces: no key, no model decode."""
    return attacker.predict(public, other)
