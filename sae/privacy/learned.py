"""The attackers that learn: trained on public codes the attacker makes of their own faces, never on the key.

An attacker knows the model and the scheme, holds faces of their own (the training split, never the test faces),
and can make as many public codes of them as they like, each under a fresh key. Three learners:
- `LearnedAttack`: a per-entry scorer of how likely each public entry is true (keeps the likeliest k).
- `RegressionAttack`: ridge regression from the public code (and each group's sorted values, which a permutation
  leaves intact) to pixels, in closed form; `CompactRegression` is its shippable low-rank form.
- `Inversion`: a non-linear decoder of its own (an MLP from the same features to the PCA coefficients of faces),
  trained on fresh attacker-made pairs every step; `fit_inversion(pair=True)` learns from two shares of one face.
`LinearProbe` (softmax regression) reads labels (gender, age group, ...) off public-code features.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from sae.core.model import topk_by_magnitude
from sae.privacy.formats import PublicCode
from sae.privacy.scheme import ambiguate

LOCAL_FEATURES = 8


def value_scale(sparse_codes: torch.Tensor) -> float:
    """The median magnitude of the non-zero entries: the unit every learner divides values by."""
    return float(sparse_codes.abs()[sparse_codes != 0].median())


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
    settings: Callable[[], tuple[int, int]] | None = None,
    scale: float | None = None,
    **ambiguate_options,
) -> LearnedAttack:
    """Train the attack on the attacker's own sparse codes (N, L, m), re-ambiguated freshly every step.

    `ambiguate_options` (decoys, permute, position_weights, value_bits) should match the scheme attacked:
    the attacker knows the algorithm, just not the key. With `settings`, the codes are dense and every step draws its
    own (k, k') from it and keeps each code's k largest entries per group, so one scorer serves every setting (then
    `k_prime` is ignored and `scale`, the value unit, should be that of typical k-sparse codes).
    """
    count, groups, code_dim = sparse_codes.shape
    attacker = LearnedAttack(groups, code_dim, hidden, value_scale(sparse_codes) if scale is None else scale, generator)
    optimizer = torch.optim.Adam(attacker.parameters(), lr=lr)
    attacker.train()
    for step in range(steps):
        k, k_prime = settings() if settings is not None else (None, k_prime)
        batch = sparse_codes[torch.randint(count, (batch_size,), generator=generator)]
        if k is not None:
            batch = topk_by_magnitude(batch, k)
            ambiguate_options["k"] = k
        public, key = ambiguate(batch, k_prime, generator, **ambiguate_options)
        loss = F.binary_cross_entropy_with_logits(attacker(public), key.true_mask.float())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if log is not None:
            log(step, loss.item())
    return attacker.eval()


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
    as a real attacker would: a decoder trained on ambiguated codes, in closed form.
    """
    public, _ = ambiguate(sparse_codes, k_prime, generator, **ambiguate_options)
    scale = value_scale(sparse_codes)
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


# ---------------------------------------------------------------------------------------------------
# The non-linear inversion: an MLP decoder of the attacker's own, trained on fresh attacker-made pairs
# ---------------------------------------------------------------------------------------------------


def shared_values(public: PublicCode, other: PublicCode) -> torch.Tensor:
    """(B, L, k') the values of `public` that also appear (exactly) in the same group of `other`, else 0.

    Two shares of one face publish the same true values among different decoys: what they have in common is
    (nearly) the true values, which is why a second share can help an attacker of the scheme with values in the clear.
    """
    same = torch.zeros_like(public.values, dtype=torch.bool)
    for start in range(0, public.num_images, 64):
        a, b = public.values[start : start + 64], other.values[start : start + 64]
        same[start : start + 64] = (a[..., :, None] == b[..., None, :]).any(-1)
    return torch.where(same, public.values, torch.zeros(()))


def inversion_features(public: PublicCode, value_scale: float, other: PublicCode | None = None) -> torch.Tensor:
    """(B, F) float32 what the inversion reads: `public_features`, and with a second share of the same faces its
    sorted values and the sorted values the two have in common."""
    features = [public_features(public, value_scale).float()]
    if other is not None:
        common = torch.sort(shared_values(public, other), dim=-1).values.flatten(1) / value_scale
        features += [torch.sort(other.values, dim=-1).values.flatten(1) / value_scale, common]
    return torch.cat(features, 1)


class Inversion(nn.Module):
    """Public code(s) -> face: an MLP from `inversion_features` to the leading PCA coefficients of the attacker's faces."""

    def __init__(self, in_features: int, hidden: int, basis: torch.Tensor, mean: torch.Tensor, image_shape, value_scale: float, pair: bool):
        super().__init__()
        self.image_shape, self.pair = tuple(image_shape), pair
        self.register_buffer("basis", basis)  # (r, P) orthonormal rows
        self.register_buffer("pixel_mean", mean)  # (P,)
        self.register_buffer("value_scale", torch.tensor(float(value_scale)))
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_std", torch.ones(in_features))
        self.net = nn.Sequential(
            nn.Linear(in_features, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(), nn.Linear(hidden, basis.shape[0])
        )

    def features(self, public: PublicCode, other: PublicCode | None = None) -> torch.Tensor:
        if self.pair != (other is not None):
            raise ValueError("this inversion reads " + ("two shares" if self.pair else "one share"))
        raw = inversion_features(public, float(self.value_scale), other)
        return (raw - self.feature_mean) / self.feature_std

    def coefficients(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)

    @torch.no_grad()
    def predict(self, public: PublicCode, other: PublicCode | None = None) -> torch.Tensor:
        """(B, 3, H, W) faces in [0, 1] the attacker makes of public codes (and a second share of each, if pair)."""
        images = self.coefficients(self.features(public, other)) @ self.basis + self.pixel_mean
        return images.clamp(0, 1).reshape(public.num_images, *self.image_shape)


def _pca_basis(images: torch.Tensor, rank: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank, P) leading principal axes and (P,) mean of flattened images (randomised SVD, seeded)."""
    flat = images.flatten(1)
    mean = flat.mean(0)
    state = torch.random.get_rng_state()
    torch.manual_seed(int(torch.randint(0, 2**31 - 1, (), generator=generator)))
    try:
        _, _, v = torch.svd_lowrank(flat - mean, q=min(rank + 16, min(flat.shape)), niter=4)
    finally:
        torch.random.set_rng_state(state)
    return v[:, :rank].T.contiguous(), mean


def fit_inversion(
    sparse_codes: torch.Tensor,
    images: torch.Tensor,
    k_prime: int,
    steps: int,
    generator: torch.Generator,
    *,
    pair: bool = False,
    batch_size: int = 128,
    hidden: int = 1024,
    rank: int = 256,
    lr: float = 1e-3,
    holdout: float = 0.1,
    check_every: int = 250,
    log: Callable[[int, float, float], None] | None = None,
    **ambiguate_options,
) -> Inversion:
    """Train an inversion on the attacker's faces (N, 3, H, W) and their sparse codes (N, L, m).

    Every step shares a batch afresh (new keys, so as many pairs as steps x batch); with `pair` each face is shared
    twice. The attacker holds out `holdout` of their own faces and keeps the weights that did best on them.
    """
    count = len(sparse_codes)
    order = torch.randperm(count, generator=generator)
    held, fit = order[: max(1, int(holdout * count))], order[max(1, int(holdout * count)) :]
    basis, mean = _pca_basis(images[fit], rank, generator)
    targets = (images.flatten(1) - mean) @ basis.T  # (N, r)
    scale = value_scale(sparse_codes)

    def shares(index: torch.Tensor):
        first, _ = ambiguate(sparse_codes[index], k_prime, generator, **ambiguate_options)
        second = ambiguate(sparse_codes[index], k_prime, generator, **ambiguate_options)[0] if pair else None
        return first, second

    probe = shares(fit[:512])
    raw = inversion_features(probe[0], scale, probe[1])
    if ambiguate_options.get("keyed"):  # ciphertext levels: value_scale is the attacker's own estimate of their spread
        scale = float(probe[0].values.abs().median().clamp_min(1.0))
        raw = inversion_features(probe[0], scale, probe[1])
    model = Inversion(raw.shape[1], hidden, basis, mean, images.shape[1:], scale, pair)
    _init(model, generator)
    model.feature_mean.copy_(raw.mean(0))
    model.feature_std.copy_(raw.std(0).clamp_min(1e-3))
    held_shares = shares(held)
    held_features = model.features(*held_shares)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    best, best_state = math.inf, None
    for step in range(steps):
        for group in optimizer.param_groups:
            group["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
        index = fit[torch.randint(len(fit), (batch_size,), generator=generator)]
        model.train()
        loss = F.mse_loss(model.coefficients(model.features(*shares(index))), targets[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if (step + 1) % check_every == 0 or step + 1 == steps:
            model.eval()
            with torch.no_grad():
                held_loss = float(F.mse_loss(model.coefficients(held_features), targets[held]))
            if held_loss < best:
                best, best_state = held_loss, {k: v.clone() for k, v in model.state_dict().items()}
            if log is not None:
                log(step + 1, loss.item(), held_loss)
    model.load_state_dict(best_state)
    return model.eval()


# ---------------------------------------------------------------------------------------------------
# Reading labels off public codes
# ---------------------------------------------------------------------------------------------------


@dataclass
class LinearProbe:
    """Softmax regression from standardised features to a label: the weight decay, or the prior alone (zero weights,
    `decay` None), that scored best on held-out data."""

    weight: torch.Tensor  # (F, C)
    bias: torch.Tensor  # (C,)
    mean: torch.Tensor
    std: torch.Tensor
    decay: float | None

    def predict(self, features: torch.Tensor) -> torch.Tensor:
        return (((features - self.mean) / self.std) @ self.weight + self.bias).argmax(-1)


def fit_linear_probe(
    features: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    decays: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0),
    steps: int = 300,
    holdout: float = 0.2,
) -> LinearProbe:
    """Fit on (N, F) features and (N,) integer labels: each weight decay, and the prior alone (always the most common
    label), scored on a held-out share; the best refitted on all. The prior is a candidate because an attacker who
    finds that no fit beats it on held-out data answers the most common label rather than a noise fit."""
    mean, std = features.mean(0), features.std(0).clamp_min(1e-6)
    x = ((features - mean) / std).float()
    classes = int(labels.max()) + 1
    order = torch.randperm(len(x), generator=generator)
    held, fit = order[: int(holdout * len(x))], order[int(holdout * len(x)) :]

    def prior(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = torch.bincount(labels[rows], minlength=classes).float()
        return torch.zeros(x.shape[1], classes), counts.clamp_min(0.5).log()

    def train(rows: torch.Tensor, decay: float | None) -> tuple[torch.Tensor, torch.Tensor]:
        if decay is None:
            return prior(rows)
        weight = torch.zeros(x.shape[1], classes, requires_grad=True)
        bias = torch.zeros(classes, requires_grad=True)
        optimizer = torch.optim.LBFGS([weight, bias], max_iter=steps, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            loss = F.cross_entropy(x[rows] @ weight + bias, labels[rows]) + decay * weight.square().sum()
            loss.backward()
            return loss

        optimizer.step(closure)
        return weight.detach(), bias.detach()

    def accuracy(decay: float | None) -> float:
        weight, bias = train(fit, decay)
        return float(((x[held] @ weight + bias).argmax(-1) == labels[held]).float().mean())

    # the prior comes first, so a fit must beat it, not tie it
    decay = max((None, *decays), key=accuracy) if len(held) else decays[-1]
    weight, bias = train(torch.arange(len(x)), decay)
    return LinearProbe(weight, bias, mean, std, decay)
