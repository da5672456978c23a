"""A face's share end to end over a model: its codes -> (public code, key) -> the key holder's image.

The app and `python -m sae.cli.share` both go through here, so both name the model in the public code, check that
a received code was made by the model decoding it, and take secrets from OS entropy for a real share.
"""

from __future__ import annotations

import torch

from sae.core.fingerprint import model_id
from sae.core.model import SparseAutoencoder
from sae.privacy.formats import Key, KeyMismatchError, PublicCode
from sae.privacy.scheme import SCHEMES, ambiguate, check_model, reveal


def share_codes(
    model: SparseAutoencoder, codes: torch.Tensor, k: int, k_prime: int, scheme: str, generator: torch.Generator | None = None, **overrides
) -> tuple[PublicCode, Key]:
    """Dense codes (B, L, m) -> the public code and key of their k-sparse codes, under `scheme` (with `overrides` of its
    options). Without a generator it is a real share: every draw and every secret from the OS's cryptographic source."""
    options = SCHEMES[scheme].options() | overrides
    with torch.inference_mode():
        sparse = model.sparsify(codes, k)
    return ambiguate(sparse, k_prime, generator, k=k, model_id=model_id(model), **options)


def check_fits(model: SparseAutoencoder, public: PublicCode) -> None:
    """KeyMismatchError unless `model` can have made this public code: its shape, and its model id when it names one."""
    if (public.num_groups, public.code_dim) != (model.num_groups, model.code_dim):
        raise KeyMismatchError(
            f"this public code has {public.num_groups} groups of {public.code_dim}; the model has "
            f"{model.num_groups} groups of {model.code_dim} (another model made it)"
        )
    check_model(public, model_id(model))


@torch.inference_mode()
def decode_share(model: SparseAutoencoder, public: PublicCode, key: Key, fraction: float = 1.0) -> torch.Tensor:
    """The key holder's reconstruction (B, 3, H, W), after checking the code was made by this model."""
    check_fits(model, public)
    return model.decode(reveal(public, key, fraction))
