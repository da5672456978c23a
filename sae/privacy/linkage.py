"""Can a public code be linked to a face? Scores an attacker computes between faces they hold and public codes.

Reconstruction is not the only leak: a public code whose values are a function of the photo points to that photo.
These functions score every (attacker's face, public code) pair; the rank of the right code among a gallery of codes
says how well an attacker links them (chance: 1 / gallery size). All are vectorised over chunks of attackers.

- `level_matches`: how many of the face's true values appear in a code's group at the same integer level.
- `nearest_distance`: how far the face's true values are from the code's nearest values (no exact match needed).
- `sorted_distance`: how far two public codes' sorted group values are (two shares of one face).
- `IdentitySpace`: Fisherfaces (PCA, then LDA on the attacker's labelled faces) to match different photos of a person.
- `coarse_statistics`: mean brightness, left-right and top-bottom differences, for attribute leaks.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from sae.privacy.formats import PublicCode, level_scales, max_level

CHUNK = 16


def attacker_levels(true_values: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """(A, L, k) true values of the attacker's faces in units of `scales` (A, C, L) -> (A, C, L, k) rounded levels."""
    return (true_values[:, None] / scales[..., None]).round()


def _scales_for(public: PublicCode, true_values: torch.Tensor) -> torch.Tensor:
    """(A, C, L) the scale the attacker reads each code's values in: the code's own where it is public (plain 8-bit),
    else the one a keyed share of the attacker's face would use (the attacker's own peak / 127)."""
    attackers, codes = len(true_values), public.num_images
    if public.scales is not None:
        return public.scales[None].expand(attackers, codes, -1)
    return level_scales(true_values, public.value_bits)[:, None].expand(attackers, codes, -1)


def _public_levels(public: PublicCode) -> torch.Tensor:
    """(C, L, k') the stored values as integer levels (plain 8-bit: value / scale; keyed: as stored)."""
    if public.scales is not None:
        return (public.values / public.scales[..., None]).round()
    if public.keyed:
        return public.values
    raise ValueError("level matching needs integer levels: an 8-bit plain code or a keyed code")


def level_matches(true_values: torch.Tensor, public: PublicCode) -> torch.Tensor:
    """(A, C) how many of each attacker face's true values (A, L, k) appear, at the same level, in each code's group."""
    top = max_level(public.value_bits) + 1
    levels = _public_levels(public).long().clamp(-top, top - 1) + top  # (C, L, k')
    present = torch.zeros(public.num_images, public.num_groups, 2 * top, dtype=torch.bool).scatter_(-1, levels, True)
    counts = torch.zeros(len(true_values), public.num_images, dtype=torch.long)
    groups = torch.arange(public.num_groups)
    for start in range(0, len(true_values), CHUNK):
        values = true_values[start : start + CHUNK]
        wanted = attacker_levels(values, _scales_for(public, values)).long()  # (a, C, L, k)
        inside = (wanted >= -top) & (wanted < top)
        index = wanted.clamp(-top, top - 1) + top
        hit = present[torch.arange(public.num_images)[None, :, None, None], groups[None, None, :, None], index] & inside
        counts[start : start + CHUNK] = hit.sum((2, 3))
    return counts


def nearest_distance(true_values: torch.Tensor, public: PublicCode) -> torch.Tensor:
    """(A, C) sum over the face's true values of the distance to the nearest value in the code's group, in levels
    (for codes that store integer levels) or in value units (wider plain codes)."""
    leveled = public.scales is not None or public.keyed
    stored = torch.sort(_public_levels(public) if leveled else public.values, dim=-1).values
    distances = torch.zeros(len(true_values), public.num_images)
    for start in range(0, len(true_values), CHUNK):
        values = true_values[start : start + CHUNK]
        if leveled:
            wanted = values[:, None] / _scales_for(public, values)[..., None]
        else:
            wanted = values[:, None].expand(-1, public.num_images, -1, -1)
        sequence = stored[None].expand(len(values), -1, -1, -1).contiguous()  # (a, C, L, k')
        wanted = wanted.contiguous()
        above = torch.searchsorted(sequence, wanted).clamp(max=stored.shape[-1] - 1)
        below = (above - 1).clamp(min=0)
        gap = torch.minimum((sequence.gather(-1, above) - wanted).abs(), (sequence.gather(-1, below) - wanted).abs())
        distances[start : start + CHUNK] = gap.sum((2, 3))
    return distances


def sorted_distance(first: PublicCode, second: PublicCode) -> torch.Tensor:
    """(A, C) L1 distance between each group's sorted values of `first`'s codes (A) and `second`'s (C), per value."""
    a = torch.sort(first.values, dim=-1).values.flatten(1)
    b = torch.sort(second.values, dim=-1).values.flatten(1)
    scale = b.abs().mean().clamp_min(1e-12)
    return torch.cdist(a / scale, b / scale, p=1)


# ---------------------------------------------------------------------------------------------------
# Ranking
# ---------------------------------------------------------------------------------------------------


def top_rates(scores: torch.Tensor, correct: torch.Tensor, ranks: tuple[int, ...] = (1, 5)) -> dict[str, float]:
    """Share of rows whose best `r` columns (highest scores; ties count against the attacker) hold a correct one.

    scores (A, C); correct (A, C) boolean, True where column c is a right answer for row a.
    """
    best_correct = torch.where(correct, scores, torch.full_like(scores, -torch.inf)).amax(1)
    beaten = (scores > best_correct[:, None]).sum(1) + ((scores == best_correct[:, None]) & ~correct).sum(1)  # wrong columns ranked first
    return {f"top{r}": float((beaten < r).float().mean()) for r in ranks}


def chance_interval(chance: float, trials: int, level: float = 0.95) -> tuple[float, float]:
    """The central `level` interval of the top-1 rate a blind guesser with success `chance` gets over `trials` rows."""
    from scipy.stats import binom  # evaluation only: the app never needs it

    low, high = binom.ppf([(1 - level) / 2, (1 + level) / 2], trials, chance)
    return float(low) / trials, float(high) / trials


# ---------------------------------------------------------------------------------------------------
# Identity: Fisherfaces
# ---------------------------------------------------------------------------------------------------


@dataclass
class IdentitySpace:
    """A linear map from images to an identity embedding: PCA of the attacker's faces, then LDA on their identities."""

    mean: torch.Tensor  # (P,)
    projection: torch.Tensor  # (P, d)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) -> (N, d) unit vectors; cosine similarity compares identities."""
        embedded = (images.flatten(1).double() - self.mean) @ self.projection
        return torch.nn.functional.normalize(embedded, dim=1).float()


def fit_identity_space(images: torch.Tensor, identities: torch.Tensor, pca_dims: int = 256, lda_dims: int = 128) -> IdentitySpace:
    """Fisherfaces on labelled faces (N, 3, H, W) and identities (N,): only people with two photos or more count."""
    _, inverse, counts = torch.unique(identities, return_inverse=True, return_counts=True)
    keep = counts[inverse] >= 2
    x = images[keep].flatten(1).double()
    labels = inverse[keep]
    mean = x.mean(0)
    _, _, v = torch.linalg.svd(x - mean, full_matrices=False)
    pca = v[:pca_dims].T  # (P, p)
    z = (x - mean) @ pca
    classes = torch.unique(labels)
    class_means = torch.stack([z[labels == c].mean(0) for c in classes])
    within = z - class_means[torch.searchsorted(classes, labels)]
    scatter_within = within.T @ within / len(z) + 1e-3 * torch.eye(z.shape[1], dtype=z.dtype) * (within.var(0).mean())
    centred_means = class_means - z.mean(0)
    sizes = torch.stack([(labels == c).sum() for c in classes]).double()
    scatter_between = (centred_means.T * sizes) @ centred_means / len(z)
    values, vectors = torch.linalg.eigh(scatter_within)
    whiten = vectors @ torch.diag(values.clamp_min(1e-12).rsqrt()) @ vectors.T
    _, directions = torch.linalg.eigh(whiten @ scatter_between @ whiten)
    lda = whiten @ directions.flip(1)[:, :lda_dims]
    return IdentitySpace(mean, pca @ lda)


# ---------------------------------------------------------------------------------------------------
# Attributes
# ---------------------------------------------------------------------------------------------------

STATISTICS = ("mean brightness", "left-right brightness", "top-bottom brightness")


def coarse_statistics(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) -> (N, 3): mean brightness, left half minus right half, top half minus bottom half."""
    gray = images.mean(1)
    half_h, half_w = gray.shape[1] // 2, gray.shape[2] // 2
    return torch.stack(
        [
            gray.mean((1, 2)),
            gray[:, :, :half_w].mean((1, 2)) - gray[:, :, half_w:].mean((1, 2)),
            gray[:, :half_h].mean((1, 2)) - gray[:, half_h:].mean((1, 2)),
        ],
        1,
    )


def correlations(predicted: torch.Tensor, truth: torch.Tensor) -> list[float]:
    """Pearson r per column of (N, S) predictions against (N, S) truth (0 where a column is constant)."""
    result = []
    for p, t in zip(predicted.double().T, truth.double().T, strict=True):
        p, t = p - p.mean(), t - t.mean()
        denominator = float(p.norm() * t.norm())
        result.append(float((p * t).sum()) / denominator if denominator > 0 else 0.0)
    return result


def majority_rate(train_labels: torch.Tensor, test_labels: torch.Tensor) -> float:
    """Accuracy on the test labels of always answering the training set's most common label."""
    majority = int(torch.mode(train_labels).values)
    return float((test_labels == majority).float().mean())
