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
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sae.privacy.scheme import Key, PublicCode, ambiguate, check_key, kept_count

LOCAL_FEATURES = 8


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


# ---------------------------------------------------------------------------------------------------
# The learned attack
# ---------------------------------------------------------------------------------------------------


def _local_features(public: PublicCode, value_scale: torch.Tensor) -> torch.Tensor:
    """(B, L, k', LOCAL_FEATURES): each entry's place among its group's magnitudes.

    Group-normalised log-magnitude, sign, rank, gaps to its neighbours in magnitude (clusters betray
    resampled decoys), whether it is the group's extreme, and its absolute log-scale.
    """
    logs = public.values.abs().clamp_min(1e-12).log()
    mean = logs.mean(-1, keepdim=True)
    std = logs.std(-1, keepdim=True, unbiased=False).clamp_min(1e-6)
    normalised = (logs - mean) / std
    ordered, order = torch.sort(normalised, dim=-1)
    rank = torch.empty_like(order).scatter(-1, order, torch.arange(order.shape[-1]).expand_as(order))
    width = max(order.shape[-1] - 1, 1)
    gaps = ordered.diff(dim=-1)
    edge = torch.full((*gaps.shape[:-1], 1), 3.0)  # the extremes have no neighbour on one side
    below = torch.cat([edge, gaps], -1).gather(-1, rank)
    above = torch.cat([gaps, edge], -1).gather(-1, rank)
    features = [
        normalised,
        public.values.sign(),
        rank.float() / width,
        below.clamp(max=3.0),
        above.clamp(max=3.0),
        (rank == 0).float(),
        (rank == order.shape[-1] - 1).float(),
        logs - value_scale.log(),
    ]
    return torch.stack(features, -1)


def _init(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default Linear init, but drawn from `generator` so the attack is reproducible."""
    for layer in module.modules():
        if isinstance(layer, nn.Linear):
            bound = 1 / math.sqrt(layer.in_features)
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            nn.init.uniform_(layer.bias, -bound, bound, generator=generator)


class LearnedAttack(nn.Module):
    """Scores each public non-zero's chance of being true from its value among its group's values and
    from the whole public code (positions and values: the atoms a face uses, cross-group correlations)."""

    def __init__(self, num_groups: int, code_dim: int, hidden: int = 256, value_scale: float = 1.0, generator=None) -> None:
        super().__init__()
        self.num_groups, self.code_dim = num_groups, code_dim
        self.local = nn.Sequential(nn.Linear(LOCAL_FEATURES, 32), nn.GELU(), nn.Linear(32, 32), nn.GELU(), nn.Linear(32, 1))
        self.context = nn.Sequential(nn.Linear(2 * num_groups * code_dim, hidden), nn.GELU(), nn.Linear(hidden, num_groups * code_dim))
        self.register_buffer("value_scale", torch.tensor(float(value_scale)))
        if generator is not None:
            _init(self, generator)

    def forward(self, public: PublicCode) -> torch.Tensor:
        """Logits (B, L, k') that each public entry is true."""
        if (public.num_groups, public.code_dim) != (self.num_groups, self.code_dim):
            raise ValueError("the attack was trained for another code shape")
        local = self.local(_local_features(public, self.value_scale)).squeeze(-1)
        dense = public.dense() / self.value_scale
        inputs = torch.cat([dense.flatten(1), public.support().float().flatten(1)], 1)
        context = self.context(inputs).reshape(dense.shape).gather(-1, public.positions)
        return local + context


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


def fit_learned_attack(
    sparse_codes: torch.Tensor,
    k_prime: int,
    steps: int,
    generator: torch.Generator,
    *,
    batch_size: int = 64,
    lr: float = 2e-3,
    hidden: int = 256,
    log: Callable[[int, float], None] | None = None,
    **ambiguate_options,
) -> LearnedAttack:
    """Train the attack on the attacker's own sparse codes (N, L, m), re-ambiguated freshly every step.

    `ambiguate_options` (decoys, permute, position_weights, value_bits) should match the scheme attacked:
    the attacker knows the algorithm, just not the key.
    """
    count, groups, code_dim = sparse_codes.shape
    scale = float(sparse_codes.abs()[sparse_codes != 0].median())
    attacker = LearnedAttack(groups, code_dim, hidden, scale, generator)
    optimizer = torch.optim.Adam(attacker.parameters(), lr=lr)
    attacker.train()
    for step in range(steps):
        batch = sparse_codes[torch.randint(count, (batch_size,), generator=generator)]
        public, key = ambiguate(batch, k_prime, generator, **ambiguate_options)
        loss = F.binary_cross_entropy_with_logits(attacker(public), key.true_mask.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None:
            log(step, float(loss))
    return attacker.eval()


def train_learned_attack(
    model: nn.Module,
    train_images: torch.Tensor,
    k: int,
    k_prime: int,
    steps: int,
    generator: torch.Generator,
    *,
    encode_batch: int = 256,
    **options,
) -> LearnedAttack:
    """Encode the attacker's training faces (N, 3, H, W) in [0, 1] once, sparsify at k, then `fit_learned_attack`."""
    with torch.no_grad():
        codes = torch.cat([model.sparsify(model.encode(chunk), k) for chunk in train_images.split(encode_batch)])
    return fit_learned_attack(codes, k_prime, steps, generator, **options)


# ---------------------------------------------------------------------------------------------------
# The regression attack: a decoder of its own, trained on public codes
# ---------------------------------------------------------------------------------------------------


def public_features(public: PublicCode, value_scale: float) -> torch.Tensor:
    """(B, F) what a decoder of the attacker's own can read: the dense public code (positions and values)
    and each group's sorted values, which a secret permutation leaves intact."""
    dense = public.dense().flatten(1) / value_scale
    ordered = torch.sort(public.values, dim=-1).values.flatten(1) / value_scale
    return torch.cat([dense, ordered], 1).double()


@dataclass
class RegressionAttack:
    """Kernel-form ridge regression from `public_features` to pixels (dual form: faces < features)."""

    train_features: torch.Tensor  # (N, F) float64, centred
    feature_mean: torch.Tensor  # (F,)
    coefficients: torch.Tensor  # (N, P) dual coefficients
    pixel_mean: torch.Tensor  # (P,)
    value_scale: float
    ridge: float

    def predict(self, public: PublicCode, image_shape: tuple[int, ...]) -> torch.Tensor:
        features = public_features(public, self.value_scale) - self.feature_mean
        pixels = features @ self.train_features.T @ self.coefficients + self.pixel_mean
        return pixels.float().clamp(0, 1).reshape(public.num_images, *image_shape)

    def compact(self, rank: int = 128) -> CompactRegression:
        """The same regression with its pixel output restricted to the top `rank` principal axes of the attacker's
        centred training pixels: A = X^T C V_r (F, r) and V_r (P, r) instead of X (N, F) and C (N, P).

        The centred training pixels are (K + penalty I) C, so nothing beyond the fitted form is needed. Every row of
        C lies in their row space, so with `rank` >= their rank the prediction is unchanged (up to float error).
        """
        kernel = self.train_features @ self.train_features.T
        penalty = self.ridge * float(kernel.diagonal().mean())
        targets = kernel @ self.coefficients + penalty * self.coefficients  # (N, P) centred training pixels
        basis = torch.linalg.svd(targets, full_matrices=False).Vh[:rank].T  # (P, r)
        weights = self.train_features.T @ (self.coefficients @ basis)  # (F, r)
        return CompactRegression(weights, basis, self.feature_mean, self.pixel_mean, self.value_scale)


@dataclass
class CompactRegression:
    """A `RegressionAttack` with its output restricted to a few principal pixel axes (`RegressionAttack.compact`):
    predict = ((features - feature_mean) @ weights) @ basis^T + pixel_mean, clamped to [0, 1]."""

    weights: torch.Tensor  # (F, r)
    basis: torch.Tensor  # (P, r) orthonormal principal axes of the training pixels
    feature_mean: torch.Tensor  # (F,)
    pixel_mean: torch.Tensor  # (P,)
    value_scale: float

    @property
    def rank(self) -> int:
        return self.basis.shape[1]

    @property
    def num_features(self) -> int:
        return self.weights.shape[0]

    def predict(self, public: PublicCode, image_shape: tuple[int, ...]) -> torch.Tensor:
        features = (public_features(public, self.value_scale) - self.feature_mean.double()).to(self.weights.dtype)
        pixels = (features @ self.weights) @ self.basis.T + self.pixel_mean.to(self.weights.dtype)
        return pixels.float().clamp(0, 1).reshape(public.num_images, *image_shape)


def fit_regression_attack(
    sparse_codes: torch.Tensor,
    images: torch.Tensor,
    k_prime: int,
    generator: torch.Generator,
    *,
    ridges: tuple[float, ...] = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0),
    holdout: float = 0.2,
    **ambiguate_options,
) -> RegressionAttack:
    """Ambiguate the attacker's own faces (N, L, m) once, regress their pixels (N, 3, H, W) on the public codes.

    The ridge (relative to the mean kernel diagonal) is chosen on a held-out share of the attacker's faces,
    as a real attacker would; the issue's "decoder trained on ambiguated codes", in closed form.
    """
    public, _ = ambiguate(sparse_codes, k_prime, generator, **ambiguate_options)
    scale = float(sparse_codes.abs()[sparse_codes != 0].median())
    features = public_features(public, scale)
    targets = images.flatten(1).double()
    count = len(features)
    order = torch.randperm(count, generator=generator)
    fit, held = order[int(holdout * count) :], order[: int(holdout * count)]

    def solve(rows: torch.Tensor, ridge: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mean, pixel_mean = features[rows].mean(0), targets[rows].mean(0)
        x = features[rows] - mean
        kernel = x @ x.T
        penalty = ridge * float(kernel.diagonal().mean())
        coefficients = torch.linalg.solve(kernel + penalty * torch.eye(len(rows), dtype=kernel.dtype), targets[rows] - pixel_mean)
        return x, mean, coefficients, pixel_mean

    def held_error(ridge: float) -> float:
        x, mean, coefficients, pixel_mean = solve(fit, ridge)
        prediction = (features[held] - mean) @ x.T @ coefficients + pixel_mean
        return float(((prediction.clamp(0, 1) - targets[held]) ** 2).mean())

    ridge = min(ridges, key=held_error) if len(held) else ridges[len(ridges) // 2]
    x, mean, coefficients, pixel_mean = solve(torch.arange(count), ridge)
    return RegressionAttack(x, mean, coefficients, pixel_mean, scale, ridge)


def regression_attack(
    public: PublicCode, attacker: RegressionAttack | CompactRegression, image_shape: tuple[int, ...] = (3, 64, 64)
) -> torch.Tensor:
    """Images (B, 3, H, W) the attacker's own decoder makes of a public code: no key, no model decode."""
    with torch.no_grad():
        return attacker.predict(public, image_shape)
