"""The straight path from a face tensor to reconstructions and numbers, batched.

A face is encoded once; every k (or every panel) is one batched decode of the cached codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sae.core.metrics import psnr, ssim
from sae.core.model import SparseAutoencoder
from sae.privacy import attacks
from sae.privacy import scheme as privacy
from sae.zoo.shipped import BundledRegression, LearnedScorers


@dataclass(frozen=True)
class EncodedFace:
    """A model input (1, 3, 64, 64) and its dense codes (1, num_groups, code_dim)."""

    image: torch.Tensor
    codes: torch.Tensor


@torch.inference_mode()
def encode_face(model: SparseAutoencoder, image: torch.Tensor) -> EncodedFace:
    return EncodedFace(image, model.encode(image))


@torch.inference_mode()
def decode_many(model: SparseAutoencoder, sparse_codes: torch.Tensor) -> torch.Tensor:
    """(N, L, m) sparse codes -> (N, 3, H, W) images in one decoder call."""
    return model.decode(sparse_codes)


def sparsify_each(model: SparseAutoencoder, codes: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """One face's dense codes (1, L, m) -> (len(ks), L, m) sparse codes, row i keeping ks[i] per group.

    One stable sort serves every k: row i keeps the ks[i] first entries of the magnitude order, which is
    exactly `model.sparsify(codes, ks[i])`.
    """
    order = torch.sort(codes.abs(), dim=-1, descending=True, stable=True).indices  # (1, L, m)
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(codes.shape[-1]).expand_as(order))
    keep = rank < torch.tensor(ks).view(-1, 1, 1)  # (N, L, m)
    return torch.where(keep, codes, torch.zeros(()))


@dataclass(frozen=True)
class QualityCurve:
    ks: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray


def quality_curve(model: SparseAutoencoder, face: EncodedFace, ks: list[int] | None = None) -> QualityCurve:
    """PSNR and SSIM of the reconstruction at every k (default 1..k_max), one batched decode."""
    ks = list(range(1, model.k_max + 1)) if ks is None else ks
    images = decode_many(model, sparsify_each(model, face.codes, ks))
    reference = face.image.expand_as(images)
    return QualityCurve(np.array(ks), psnr(reference, images), ssim(reference, images))


# ---------------------------------------------------------------------------------------------------
# Privacy panels: what the key holder, a decoy-only viewer and attackers see, in one batched decode
# ---------------------------------------------------------------------------------------------------

ATTACKS = ("magnitude", "re-encode", "learned (keep k)", "learned (soft)", "regression", "none")  # the selectable extra attack
LEARNED = ("learned (keep k)", "learned (soft)")  # need a fitted scorer (`sae.zoo.shipped`); decoy and permutation are always shown
REGRESSION = "regression"  # needs the bundled regression (`sae.zoo.shipped`); makes an image, not a code
PANEL_NAMES = ("key holder", "no key (decoys)", "permutation attack")


@dataclass(frozen=True)
class ShareSettings:
    """Everything the owner and the attackers choose; defaults follow `sae.privacy.scheme`'s defaults."""

    k: int
    owner_fraction: float = 1.0
    decoys: bool = True
    k_prime_ratio: float | None = privacy.DEFAULT_K_PRIME_RATIO  # None: decoys at every position (k' = code_dim)
    permute: bool = privacy.DEFAULT_PERMUTE
    signs: str = privacy.DEFAULT_SIGNS
    known_fraction: float = 0.5
    extra_attack: str = "magnitude"
    value_bits: int = privacy.DEFAULT_VALUE_BITS
    seed: int = 0

    def k_prime(self, code_dim: int) -> int:
        """k' for this k: k without decoys, code_dim when the ratio is None, else round(ratio * k) within [k, m]."""
        if not self.decoys:
            return self.k
        if self.k_prime_ratio is None:
            return code_dim
        return min(code_dim, max(self.k, round(self.k_prime_ratio * self.k)))


@dataclass(frozen=True)
class Panel:
    name: str
    image: torch.Tensor  # (3, H, W) in [0, 1]
    psnr: float
    ssim: float


def share(
    model: SparseAutoencoder, face: EncodedFace, settings: ShareSettings, generator: torch.Generator, secret: bytes | None = None
) -> tuple[privacy.PublicCode, privacy.Key]:
    """Sparsify the cached codes at k and ambiguate them: the public code and the owner's key."""
    sparse = model.sparsify(face.codes, settings.k)
    return privacy.ambiguate(
        sparse,
        settings.k_prime(model.code_dim),
        generator,
        value_bits=settings.value_bits,
        permute=settings.permute,
        secret=secret if settings.permute else None,
        signs=settings.signs,
        k=settings.k,
    )


def attack_codes(
    model, public, key, settings: ShareSettings, generator: torch.Generator, scorers: LearnedScorers | None = None
) -> dict[str, torch.Tensor]:
    """Each attacker's (1, L, m) code, in public coordinates (garbage to the decoder when permuted: the point).

    The learned attacks use `scorers` (fitted on training faces, bundled beside the model), the one for this scheme.
    """
    codes = {
        "no key (decoys)": attacks.decoy_attack(public),
        "permutation attack": attacks.permutation_attack(public, settings.k, generator, settings.known_fraction, key),
    }
    if settings.extra_attack == "magnitude":
        codes["magnitude attack"] = attacks.magnitude_attack(public, settings.k, "smallest")
    elif settings.extra_attack == "re-encode":
        codes["re-encode attack"] = attacks.reencode_attack(public, settings.k, model)
    elif settings.extra_attack in LEARNED:
        if scorers is None:
            raise ValueError(f"the {settings.extra_attack} attack needs fitted scorers (sae.zoo.shipped)")
        soft = settings.extra_attack == "learned (soft)"
        name = "learned attack (soft)" if soft else "learned attack (keep k)"
        codes[name] = attacks.learned_attack(public, settings.k, scorers.for_scheme(settings.permute), soft=soft)
    elif settings.extra_attack not in (REGRESSION, "none"):  # the regression makes an image: `attack_images`
        raise ValueError(f"extra_attack must be one of {ATTACKS}, got {settings.extra_attack!r}")
    return codes


def regression_mismatch(model: SparseAutoencoder, settings: ShareSettings, regression: BundledRegression) -> str:
    """ "" when the bundled regression was fitted for these sharing settings, else why it is not shown."""
    k_prime = settings.k_prime(model.code_dim)
    return regression.mismatch(settings.k, k_prime, settings.permute, settings.signs, settings.value_bits)


def attack_images(
    model, public, settings: ShareSettings, regression: BundledRegression | None = None, image_shape: tuple[int, ...] = (3, 64, 64)
) -> dict[str, torch.Tensor]:
    """The attacks that make (1, 3, H, W) images themselves (no model decode): the bundled regression, when chosen."""
    if settings.extra_attack != REGRESSION:
        return {}
    if regression is None:
        raise ValueError("the regression attack needs its fitted form (sae.zoo.shipped)")
    reason = regression_mismatch(model, settings, regression)
    if reason:
        raise ValueError(reason)
    return {"regression attack": attacks.regression_attack(public, regression.attack, image_shape)}


@torch.inference_mode()
def privacy_panels(
    model: SparseAutoencoder,
    face: EncodedFace,
    settings: ShareSettings,
    scorers: LearnedScorers | None = None,
    regression: BundledRegression | None = None,
) -> list[Panel]:
    """Key holder, decoy-only viewer, permutation attack and the extra attack: one ambiguation, one batched decode
    (the regression attack's image comes from its own linear map, after the decoded ones)."""
    generator = torch.Generator().manual_seed(settings.seed)
    public, key = share(model, face, settings, generator)
    attacked = attack_codes(model, public, key, settings, generator, scorers)
    codes = {"key holder": privacy.reveal(public, key, settings.owner_fraction)} | attacked
    made = attack_images(model, public, settings, regression, tuple(face.image.shape[1:]))
    images = torch.cat([decode_many(model, torch.cat(list(codes.values()))), *made.values()])
    codes = codes | made  # names, in panel order
    reference = face.image.expand_as(images)
    scores = zip(psnr(reference, images), ssim(reference, images), strict=True)
    return [Panel(name, image, float(p), float(s)) for name, image, (p, s) in zip(codes, images, scores, strict=True)]


def decode_shared(model: SparseAutoencoder, public: privacy.PublicCode, key: privacy.Key, fraction: float = 1.0) -> torch.Tensor:
    """A received public code and key -> the key holder's image (1, 3, H, W); raises the privacy errors as they are."""
    if (public.num_groups, public.code_dim) != (model.num_groups, model.code_dim):
        raise privacy.KeyMismatchError(
            f"this public code has {public.num_groups} groups of {public.code_dim}; the model serving uses "
            f"{model.num_groups} groups of {model.code_dim}"
        )
    return decode_many(model, privacy.reveal(public, key, fraction))
