"""The straight path from a cached face to what the app shows, batched: one share, every attack, one decode.

A face is encoded once (and its mirror image, the linkage line's "other image"); every control change is one
`privacy_view`: share the cached codes with the settings, run the attacks of the catalogue, decode all panels in one
call, score them, and count how many of the face's values an attacker holding the photo finds in the public code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sae.app.models import ServedModel
from sae.app.settings import NO_EXTRA, ShareSettings
from sae.core.metrics import psnr, ssim
from sae.core.model import SparseAutoencoder
from sae.privacy import catalogue
from sae.privacy.codec import share_codes
from sae.privacy.formats import Key, PublicCode
from sae.privacy.linkage import level_matches
from sae.privacy.scheme import restrict, reveal, true_support


@dataclass(frozen=True)
class EncodedFace:
    """A model input (1, 3, S, S) in [0, 1], its dense codes (1, L, m), and the dense codes of its mirror image."""

    image: torch.Tensor
    codes: torch.Tensor
    mirror_codes: torch.Tensor


@torch.inference_mode()
def encode_face(model: SparseAutoencoder, pixels: torch.Tensor) -> EncodedFace:
    """A (3, S, S) uint8 crop -> the encoded face (one encoder call for the face and its mirror)."""
    image = pixels[None].float() / 255
    codes = model.encode(torch.cat([image, image.flip(-1)]))
    return EncodedFace(image, codes[:1], codes[1:])


def curve_ks(k_max: int) -> list[int]:
    """The k of the quality curve: every k up to 8, then four per doubling of k (24 points for k_max 128). PSNR and SSIM
    bend most at low k and flatten with each doubling, so the chart's straight lines between these points stay on the
    curve of every k (tests bound the gap), at a fraction of its decodes."""
    ks, k, step = [], 1, 1
    while k <= k_max:
        ks.append(k)
        if k >= 8 * step:
            step *= 2
        k += step
    return ks if ks[-1] == k_max else [*ks, k_max]


@dataclass(frozen=True)
class QualityCurve:
    """PSNR and SSIM of one face's reconstruction at each of the k in `ks` (the app's: `curve_ks`, what the chart draws)."""

    ks: np.ndarray
    psnr: np.ndarray
    ssim: np.ndarray


def sparsify_each(codes: torch.Tensor, ks: list[int]) -> torch.Tensor:
    """One face's dense codes (1, L, m) -> (len(ks), L, m) sparse codes, row i keeping ks[i] per group.

    One stable sort serves every k: row i keeps the ks[i] first entries of the magnitude order, which is exactly
    `model.sparsify(codes, ks[i])`.
    """
    order = torch.sort(codes.abs(), dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order).scatter_(-1, order, torch.arange(codes.shape[-1]).expand_as(order))
    return torch.where(rank < torch.tensor(ks).view(-1, 1, 1), codes, torch.zeros(()))


@torch.inference_mode()
def quality_curve(model: SparseAutoencoder, face: EncodedFace, ks: list[int] | None = None) -> QualityCurve:
    """PSNR and SSIM of the reconstruction at each k (default `curve_ks`), one batched decode."""
    ks = curve_ks(model.k_max) if ks is None else ks
    images = model.decode(sparsify_each(face.codes, ks))
    return QualityCurve(np.array(ks), psnr(face.image, images), ssim(face.image, images))


@dataclass(frozen=True)
class Panel:
    """One picture of the result row: what it shows, its title, the image and its scores against the input."""

    name: str  # the catalogue name ("key holder" for the key holder's)
    title: str
    image: torch.Tensor  # (3, H, W) in [0, 1]
    psnr: float
    ssim: float


@dataclass(frozen=True)
class PrivacyView:
    """Everything a control change shows: the panels, the share, and the linkage counts."""

    panels: list[Panel]
    public: PublicCode
    key: Key
    granted: int  # true entries the owner's key fraction unlocks
    found: int  # the face's true values an attacker holding the photo finds in the public code
    found_elsewhere: int  # the same count in the public code of the mirrored photo (another image)
    hidden: str  # why the chosen extra attack is not shown, if it is not


def panel_titles(settings: ShareSettings, code_dim: int) -> dict[str, str]:
    """Each panel's title, from the settings it shows."""
    k_prime = settings.k_prime(code_dim)
    grant = "all of the key" if settings.owner_fraction >= 1 else f"{settings.owner_fraction:.0%} of the key"
    decoys = "no decoys" if k_prime == settings.k else f"k' = {k_prime}"
    knows = f", knows {settings.known_fraction:.0%}" if settings.known_fraction > 0 else ""
    return {
        "key holder": f"Key holder ({grant})",
        "decode as is": f"No key, decoded as is ({decoys})",
        "guess": f"Guess {settings.k} of {k_prime}{knows}",
    } | {name: attack.title for name, attack in catalogue.ATTACKS.items() if name not in ("decode as is", "guess")}


@torch.inference_mode()
def privacy_view(served: ServedModel, face: EncodedFace, settings: ShareSettings) -> PrivacyView:
    """Share the face with the settings, then the key holder's view and every chosen attack: one batched decode."""
    model = served.model
    k_prime = settings.k_prime(model.code_dim)
    generator = torch.Generator().manual_seed(settings.seed)
    public, key = share_codes(model, face.codes, settings.k, k_prime, settings.scheme, generator, **settings.options())
    other = torch.Generator().manual_seed(settings.seed + 1)
    mirrored, _ = share_codes(model, face.mirror_codes, settings.k, k_prime, settings.scheme, other, **settings.options())
    granted = key if settings.owner_fraction >= 1 else restrict(public, key, settings.owner_fraction)
    fitted, missing = served.fitted(settings)
    context = catalogue.AttackContext(public, settings.k, model, generator, fitted, key, settings.known_fraction)
    names = ["decode as is", "guess"]
    hidden = ""
    if settings.extra_attack != NO_EXTRA:
        attack = catalogue.ATTACKS[settings.extra_attack]
        if attack.available(fitted):
            names.append(settings.extra_attack)
        else:
            hidden = missing.get(attack.needs, "not available")
    codes = {"key holder": reveal(public, granted)}
    images = {}
    for name in names:
        made = catalogue.ATTACKS[name].run(context)
        (codes if catalogue.ATTACKS[name].makes == catalogue.CODE else images)[name] = made
    decoded = model.decode(torch.cat(list(codes.values())))
    everything = dict(zip(codes, decoded, strict=True)) | {name: image[0] for name, image in images.items()}
    stack = torch.stack(list(everything.values()))
    titles = panel_titles(settings, model.code_dim)
    scores = zip(psnr(face.image, stack), ssim(face.image, stack), strict=True)
    panels = [
        Panel(name, titles[name], image, float(p), float(s)) for (name, image), (p, s) in zip(everything.items(), scores, strict=True)
    ]
    values = face.codes.gather(-1, true_support(model.sparsify(face.codes, settings.k), settings.k))
    found, elsewhere = (int(level_matches(values, code)[0, 0]) for code in (public, mirrored))
    return PrivacyView(panels, public, key, granted.granted, found, elsewhere, hidden)
