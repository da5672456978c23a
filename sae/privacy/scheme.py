"""Share a sparse code as a public code and a key; reveal it with the key, at the fidelity the key grants.

Ambiguation (Razeghi et al. 2017; Ferdowsi et al. 2020): per group the k true non-zeros are published among
k' - k decoys at random off-support positions; the key says which k of the k' public entries are true. Two schemes
(`SCHEMES`, explained in docs/privacy.md and measured side by side in each model's privacy table):

- "paper": the values in the clear, as in the paper, with its flaws fixed: decoys resampled from the group's own
  true values (the paper's m/k-scaled decoys gave the support away), every group published through a secret
  permutation of its coordinates, and as many positive as negative values per group. Obfuscation: the true values
  themselves are public, so a public code can be linked to its photo and partly inverted (the privacy table).
- "keyed" (the default): the same layout, and every stored level is XORed with a pad from a stream cipher keyed by
  the key's secret (`sae.privacy.keystream`), the group scales too, so positions and values are uniformly random to
  anyone without the key. Its strength is that of ChaCha20 and of the key file.

The owner's fidelity knob: `Key.restrict` hands out a key to part of the code. In the paper's scheme it marks the
largest true entries of each group (its holder still sees every value, and can try to guess the rest). A keyed key's
pads come from a hash chain over the model's code coordinates, so a restricted key unlocks the coordinates below a
cutoff and cannot compute any other pad: it grants the true entries below the smallest cutoff that reaches the asked
fraction (`sae.core.ordering` puts each group's most used coordinates first, so those are the entries that matter).

Randomness comes from an explicit `torch.Generator`, so every figure is reproducible; a real share passes secrets
from OS entropy (`secret=`, `root=`, `nonce=`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from sae.privacy import keystream
from sae.privacy.formats import (
    FINGERPRINT_BYTES,
    KEYED_VALUE_BITS,
    MODEL_ID_BYTES,
    Key,
    KeyMismatchError,
    PublicCode,
    float16_bits,
    float16_from_bits,
    level_scales,
    max_level,
    quantize_values,
)
from sae.privacy.randomness import Draws

BANDWIDTH = 0.5  # resampled decoys' jitter, in units of Silverman's rule of thumb (docs/privacy.md: why this value)
DEFAULT_K = 32  # true non-zeros per group the app and the share command start from
UNNAMED_MODEL = bytes(MODEL_ID_BYTES)  # the model id of a share made without naming its model (tests, sweeps)


@dataclass(frozen=True)
class Scheme:
    """How a public code is made, beyond k and k': what `ambiguate` takes as options."""

    name: str
    title: str
    keyed: bool
    permute: bool = True
    signs: str = "balanced"
    value_bits: int = 8
    decoy_values: str = "resample"

    def options(self) -> dict:
        """`ambiguate` keyword arguments for this scheme."""
        return dict(keyed=self.keyed, permute=self.permute, signs=self.signs, value_bits=self.value_bits, decoy_values=self.decoy_values)


SCHEMES = {
    "keyed": Scheme("keyed", "keyed (values padded with a stream cipher)", keyed=True),
    "paper": Scheme("paper", "as in the paper (values in the clear)", keyed=False),
}
DEFAULT_SCHEME = "keyed"
DEFAULT_K_PRIME_RATIO: float | None = None  # k'/k of a share; None fills every position (k' = code_dim)


def default_k(k_max: int) -> int:
    """The k a share starts from: DEFAULT_K, or the model's k_max where that is smaller."""
    return min(DEFAULT_K, k_max)


def k_prime_for(k: int, code_dim: int, ratio: float | None = DEFAULT_K_PRIME_RATIO) -> int:
    """Public entries per group for k true ones: every position when `ratio` is None, else round(ratio * k) in [k, m].

    A ratio of 1 publishes no decoys.
    """
    if ratio is None:
        return code_dim
    if ratio < 1:
        raise ValueError(f"k'/k must be at least 1, got {ratio}")
    return min(code_dim, max(k, round(ratio * k)))


def kept_count(k: int, fraction: float) -> int:
    """Entries kept for a fraction of k: round half up, at least 1 when fraction > 0 (k=128: 1/2 -> 64, 1/4 -> 32)."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    kept = min(k, math.floor(fraction * k + 0.5))
    return max(kept, 1) if fraction > 0 and k > 0 else kept


def true_support(sparse_codes: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """(B, L, k) positions of the k largest magnitudes per group; k defaults to the non-zero count.

    With k None every group must hold the same number of non-zeros (what `topk_by_magnitude` makes).
    """
    if sparse_codes.dim() != 3:
        raise ValueError(f"expected sparse codes of shape (B, L, m), got {tuple(sparse_codes.shape)}")
    if k is None:
        counts = (sparse_codes != 0).sum(-1)
        k = int(counts.max()) if counts.numel() else 0
        if counts.numel() and int(counts.min()) != k:
            raise ValueError("groups have different numbers of non-zeros; pass k explicitly")
    if not 1 <= k <= sparse_codes.shape[-1]:
        raise ValueError(f"need 1 <= k <= code_dim, got k={k}")
    return torch.sort(sparse_codes.abs(), dim=-1, descending=True, stable=True).indices[..., :k]


# ---------------------------------------------------------------------------------------------------
# Decoys
# ---------------------------------------------------------------------------------------------------


def _draws(source: torch.Generator | Draws | None) -> Draws:
    return source if isinstance(source, Draws) else Draws(source)


def resample_decoy_values(true_values: torch.Tensor, count: int, generator: torch.Generator | Draws | None) -> torch.Tensor:
    """Decoys for values in the clear: a shrunk smoothed bootstrap (Silverman 1986, 6.4.1) of each group's true values.

    Pick a true value of the group at random, keep its sign, jitter its log-magnitude by a Gaussian of BANDWIDTH times
    Silverman's bandwidth, and shrink so the decoys' log-magnitudes have the true ones' mean and variance. Copies would
    leave duplicates, quantile interpolation never passes the extremes, and a parametric fit is wrong for codes that
    are not of its family. true_values (B, L, k) -> decoys (B, L, count); zero true values are ignored for the fit.
    """
    magnitude = true_values.abs().float()
    present = magnitude > 0
    n = present.sum(-1, keepdim=True).clamp_min(1)
    logs = torch.where(present, magnitude.clamp_min(1e-30).log(), torch.zeros_like(magnitude))
    mean = logs.sum(-1, keepdim=True) / n
    var = (((logs - mean) ** 2) * present).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
    bandwidth = BANDWIDTH * 1.06 * var.sqrt() * n.float() ** -0.2
    shrink = torch.where(var > 0, (1 + bandwidth**2 / var.clamp_min(1e-30)).rsqrt(), torch.ones_like(var))
    weights = present.float().reshape(-1, true_values.shape[-1])  # anchors: a random non-zero true value of the group
    weights[weights.sum(-1) == 0] = 1.0
    shape = (*true_values.shape[:-1], count)
    if count == 0:
        return true_values.new_zeros(shape)
    draws = _draws(generator)
    anchors = draws.multinomial(weights, count).reshape(shape)
    noise = draws.randn(shape)
    log_decoy = mean + (logs.gather(-1, anchors) - mean + bandwidth * noise) * shrink
    return true_values.sign().gather(-1, anchors) * log_decoy.exp()


def reference_decoy_values(true_values: torch.Tensor, code_dim: int, count: int, generator: torch.Generator | Draws | None) -> torch.Tensor:
    """The paper's and the report's decoys, for contrast only: Gaussian-tail draws times m/k. Broken by design.

    Per group: |decoy| ~ N(0, sigma) conditioned on exceeding the smallest true magnitude (sigma: the RMS of the true
    values), a random sign, then the m/k scaling that makes decoys 2-4x too large.
    """
    k = true_values.shape[-1]
    shape = (*true_values.shape[:-1], count)
    sigma = true_values.float().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    low = torch.special.ndtr(true_values.abs().amin(-1, keepdim=True) / sigma)
    draws = _draws(generator)
    uniform = low + (1 - low) * draws.rand(shape)
    tail = sigma * torch.special.ndtri(uniform.clamp(max=1 - 1e-7))
    sign = draws.randint(0, 2, shape).float() * 2 - 1
    return sign * tail * (code_dim / k)


def balance_signs(true_values: torch.Tensor, decoy_values: torch.Tensor, generator: torch.Generator | Draws | None) -> torch.Tensor:
    """Re-sign the decoys so that every group publishes floor(k'/2) positive values whenever it can.

    With decoys that copy their anchors' signs, each group's share of positive public values tracks the true code's,
    and a regression on those shares sees the face through the permutation. A fixed count says nothing about the
    image; the price is that a sign is then weak evidence of being true.
    """
    count = decoy_values.shape[-1]
    if count == 0:
        return decoy_values
    positives = (true_values > 0).sum(-1, keepdim=True)
    needed = ((true_values.shape[-1] + count) // 2 - positives).clamp(0, count)
    rank = _draws(generator).rand(decoy_values.shape).argsort(-1).argsort(-1)
    return torch.where(rank < needed, decoy_values.abs(), -decoy_values.abs())


def _decoy_positions(support: torch.Tensor, count: int, draws: Draws, weights: torch.Tensor | None) -> torch.Tensor:
    """(B, L, count) distinct off-support positions, uniform or proportional to `weights` (Gumbel top-k)."""
    noise = draws.rand(support.shape)
    if weights is None:
        scores = noise
    else:
        weights = weights.float().expand(support.shape)
        floor = weights.amax(-1, keepdim=True).clamp_min(1e-30) * 1e-6  # every position stays possible
        scores = weights.clamp_min(0).maximum(floor).log() - (-noise.clamp_min(1e-20).log()).log()
    scores = scores.masked_fill(support, -math.inf)
    return torch.topk(scores, count, dim=-1).indices


# ---------------------------------------------------------------------------------------------------
# Keyed values: integer levels XOR the pads of their model coordinates
# ---------------------------------------------------------------------------------------------------


def _to_unsigned(levels: torch.Tensor, value_bits: int) -> torch.Tensor:
    return levels.long() & (2**value_bits - 1)


def _to_signed(patterns: torch.Tensor, value_bits: int) -> torch.Tensor:
    return torch.where(patterns >= 2 ** (value_bits - 1), patterns - 2**value_bits, patterns)


def _pads(links, cutoffs, nonce: bytes, model_positions: torch.Tensor, code_dim: int, value_bits: int) -> torch.Tensor:
    """(B, L, k') the pad of each public entry's model coordinate (-1 where the key does not reach)."""
    groups = model_positions.shape[1]
    return keystream.value_pads(links, cutoffs, nonce, groups, code_dim, value_bits // 8).gather(-1, model_positions)


def _seal_levels(levels, scales, links, nonce, model_positions, code_dim, value_bits) -> tuple[torch.Tensor, torch.Tensor]:
    """Plain levels (B, L, k') and scales (B, L) -> the public code's ciphertext levels and scale cipher."""
    cutoffs = [code_dim] * len(links)
    pads = _pads(links, cutoffs, nonce, model_positions, code_dim, value_bits)
    cipher = _to_signed(_to_unsigned(levels, value_bits) ^ pads, value_bits).float()
    scale_cipher = float16_bits(scales) ^ keystream.scale_pads(links, cutoffs, nonce, scales.shape[1])
    return cipher, scale_cipher


def model_positions(public: PublicCode, key: Key) -> torch.Tensor:
    """(B, L, k') the model coordinate of each public entry (the key's permutation undone)."""
    if key.secret is None:
        return public.positions
    permutation = keystream.secret_permutation(key.secret, public.num_images, public.num_groups, public.code_dim)
    return permutation.argsort(-1).gather(-1, public.positions)


def open_values(public: PublicCode, key: Key) -> tuple[torch.Tensor, torch.Tensor]:
    """A keyed code's values (B, L, k') as the key reads them, and which of them it can read (B, L, k') bool."""
    links, cutoffs = key.pad_access()
    positions = model_positions(public, key)
    pads = _pads(links, cutoffs, public.nonce, positions, public.code_dim, public.value_bits)
    readable = pads >= 0
    levels = _to_signed(_to_unsigned(public.values, public.value_bits) ^ pads.clamp_min(0), public.value_bits)
    scales = float16_from_bits(public.scale_cipher ^ keystream.scale_pads(links, cutoffs, public.nonce, public.num_groups))
    values = torch.where(readable, levels.float() * scales[..., None], torch.zeros(()))
    return values, readable


# ---------------------------------------------------------------------------------------------------
# Ambiguate, restrict, reveal
# ---------------------------------------------------------------------------------------------------


def ambiguate(
    sparse_codes: torch.Tensor,
    k_prime: int,
    generator: torch.Generator | None,
    *,
    keyed: bool = False,
    decoy_values: str = "resample",
    value_bits: int = 16,
    permute: bool = False,
    secret: bytes | None = None,
    root: bytes | None = None,
    nonce: bytes | None = None,
    position_weights: torch.Tensor | None = None,
    k: int | None = None,
    signs: str = "anchor",
    model_id: bytes = UNNAMED_MODEL,
) -> tuple[PublicCode, Key]:
    """Publish each group's k true non-zeros among k' - k decoys; return the public code and its key.

    sparse_codes (B, L, m) with k non-zeros per group (k is inferred unless given). `decoy_values` is "resample" (ours) or
    "reference" (the paper's broken m/k-scaled decoys, for contrast); `signs` is "anchor" (a decoy keeps the sign of
    the value it was resampled from) or "balanced" (`balance_signs`); `position_weights` (L, m) or (m,) draws decoy
    positions in proportion to it instead of uniformly. With `permute` positions go through a secret permutation
    (`secret`, 32 bytes). `keyed` pads every stored level (8 or 16 bits) with the keystream of a 32-byte `root` and a
    12-byte `nonce`; a keyed code's decoys are uniformly random levels (nobody but a key holder ever sees them).
    Every random draw, and every secret not given, comes from `generator` (reproducible figures) or, with generator
    None, from the OS's cryptographic source: what a real share must use (`sae.privacy.randomness`). `model_id`
    names the model that made the codes (`sae.core.fingerprint.model_id`).
    """
    if decoy_values not in ("resample", "reference"):
        raise ValueError(f"decoy_values must be 'resample' or 'reference', got {decoy_values!r}")
    if signs not in ("anchor", "balanced"):
        raise ValueError(f"signs must be 'anchor' or 'balanced', got {signs!r}")
    if keyed and secret is not None:
        raise ValueError("a keyed share derives its permutation from its root; pass root, not secret")
    if not permute and secret is not None:
        raise ValueError("a secret only makes sense with permute=True")
    if keyed and value_bits not in KEYED_VALUE_BITS:
        raise ValueError(f"a keyed code stores value_bits {KEYED_VALUE_BITS}, got {value_bits}")
    draws = Draws(generator)
    num_images, num_groups, code_dim = sparse_codes.shape
    true_positions = true_support(sparse_codes, k)
    k = true_positions.shape[-1]
    if not k <= k_prime <= code_dim:
        raise ValueError(f"need k <= k' <= code_dim, got k={k}, k'={k_prime}, code_dim={code_dim}")
    true_values = sparse_codes.float().gather(-1, true_positions)
    support = torch.zeros(sparse_codes.shape, dtype=torch.bool).scatter(-1, true_positions, True)
    positions = torch.cat([true_positions, _decoy_positions(support, k_prime - k, draws, position_weights)], -1)
    is_true = torch.arange(k_prime).expand_as(positions) < k

    if keyed:
        root = root if root is not None else draws.bytes(keystream.SECRET_BYTES)
        nonce = nonce if nonce is not None else draws.bytes(keystream.NONCE_BYTES)
        secret = keystream.permutation_secret(root) if permute else None
        scales = level_scales(true_values, value_bits)
        true_levels = (true_values / scales[..., None]).round().clamp(-max_level(value_bits), max_level(value_bits))
        decoy_shape = (num_images, num_groups, k_prime - k)
        decoy_levels = draws.randint(-max_level(value_bits), max_level(value_bits) + 1, decoy_shape)
        links = [keystream.chain_head(root, image) for image in range(num_images)]
        levels = torch.cat([true_levels, decoy_levels.float()], -1)
        values, scale_cipher = _seal_levels(levels, scales, links, nonce, positions, code_dim, value_bits)
    else:
        if decoy_values == "resample":
            decoy_values = resample_decoy_values(true_values, k_prime - k, draws)
        else:
            decoy_values = reference_decoy_values(true_values, code_dim, k_prime - k, draws)
        if signs == "balanced":
            decoy_values = balance_signs(true_values, decoy_values, draws)
        values = torch.cat([true_values, decoy_values], -1)
        if permute:
            secret = secret if secret is not None else draws.bytes(keystream.SECRET_BYTES)
    if permute:
        positions = keystream.secret_permutation(secret, num_images, num_groups, code_dim).gather(-1, positions)
    positions, order = torch.sort(positions, dim=-1)  # ascending: the order must not betray the true entries
    values = values.gather(-1, order)
    if keyed:
        public = PublicCode(positions, values, code_dim, value_bits, None, permute, True, nonce, scale_cipher, model_id)
    else:
        stored, scales = quantize_values(values, value_bits)
        public = PublicCode(positions, stored, code_dim, value_bits, scales, permute, model_id=model_id)
    return public, Key(is_true.gather(-1, order), code_dim, public.fingerprint(), secret, root if keyed else None)


def check_key(public: PublicCode, key: Key) -> None:
    """Raise KeyMismatchError unless `key` was made for exactly this public code."""
    if key.true_mask.shape != public.positions.shape or key.code_dim != public.code_dim:
        raise KeyMismatchError(
            f"key is for codes of shape {tuple(key.true_mask.shape)} (code_dim {key.code_dim}), "
            f"the public code has {tuple(public.positions.shape)} (code_dim {public.code_dim})"
        )
    if (key.secret is not None) != public.permuted:
        raise KeyMismatchError("key and public code disagree on the secret permutation")
    if key.keyed != public.keyed:
        raise KeyMismatchError("key and public code disagree on the scheme (keyed or values in the clear)")
    if len(key.fingerprint) != FINGERPRINT_BYTES or key.fingerprint != public.fingerprint():
        raise KeyMismatchError("key does not belong to this public code (fingerprint mismatch)")


def names_model(public: PublicCode) -> bool:
    """Whether the public code names the model that made it (a version 1 file, or one made unnamed, does not)."""
    return public.model_id not in (b"", UNNAMED_MODEL)


def check_model(public: PublicCode, model_id: bytes) -> None:
    """Raise KeyMismatchError when a named public code was made by another model than `model_id`."""
    if names_model(public) and model_id != UNNAMED_MODEL and public.model_id != model_id:
        raise KeyMismatchError(f"this public code was made by another model (model id {public.model_id.hex()}, serving {model_id.hex()})")


def restrict(public: PublicCode, key: Key, fraction: float) -> Key:
    """A key that grants part of what `key` does: the owner's lower-fidelity grant.

    Values in the clear: the largest `kept_count(k, fraction)` true entries of each group. Keyed: per image, the
    true entries below the smallest model-coordinate cutoff that grants `kept_count(granted, fraction)` of them,
    with the chain link of that cutoff; the other pads stay out of reach.
    """
    check_key(public, key)
    if not key.keyed:
        kept = kept_count(key.k, fraction)
        scores = torch.where(key.true_mask, public.values.abs(), torch.full_like(public.values, -1.0))
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :kept]
        mask = torch.zeros_like(key.true_mask).scatter(-1, order, True)
        return Key(mask, key.code_dim, key.fingerprint, key.secret)
    positions = model_positions(public, key)
    links, cutoffs = key.pad_access()
    new_links, new_cutoffs, masks = [], [], []
    for image in range(public.num_images):
        granted = key.true_mask[image]
        target = kept_count(int(granted.sum()), fraction)
        if target == 0:
            raise ValueError("a keyed key must grant at least one entry (fraction > 0)")
        coordinates = torch.sort(positions[image][granted]).values
        cutoff = int(coordinates[target - 1]) + 1
        new_links.append(keystream.link_below(links[image], cutoffs[image], cutoff))
        new_cutoffs.append(cutoff)
        masks.append(granted & (positions[image] < cutoff))
    return Key(torch.stack(masks), key.code_dim, key.fingerprint, key.secret, None, tuple(new_links), tuple(new_cutoffs))


def to_model_coordinates(public_dense: torch.Tensor, key: Key) -> torch.Tensor:
    """Undo the secret permutation of a (B, L, m) public-coordinate tensor (identity when there is none)."""
    if key.secret is None:
        return public_dense
    images, groups, code_dim = public_dense.shape
    return public_dense.gather(-1, keystream.secret_permutation(key.secret, images, groups, code_dim))


def reveal(public: PublicCode, key: Key, fraction: float = 1.0) -> torch.Tensor:
    """The key holder's sparse code (B, L, m) in the model's coordinates.

    fraction < 1 first restricts the key (`restrict`). With 32-bit values, or 16-bit values that float16 represents,
    a plain code at fraction 1 gives back the sparse code exactly; a keyed code gives back its quantised levels.
    Raises KeyMismatchError for a key made for another public code.
    """
    check_key(public, key)
    if fraction != 1.0:
        key = restrict(public, key, fraction)
    values = open_values(public, key)[0] if public.keyed else public.values
    kept = torch.where(key.true_mask, values, torch.zeros_like(values))
    shape = (public.num_images, public.num_groups, public.code_dim)
    return to_model_coordinates(public.values.new_zeros(shape).scatter(-1, public.positions, kept), key)
