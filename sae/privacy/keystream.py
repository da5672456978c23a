"""The keyed randomness of a share: the secret permutation, and the pads that hide a keyed public code's values.

- The permutation: SHAKE-256 of a 32-byte secret gives sort keys, so each image and group gets a uniformly random
  permutation of its code coordinates.
- A keyed share has a 32-byte root secret. HKDF-SHA256 derives from it the permutation secret and, per image, the
  head of a hash chain over the model's code coordinates: s[m-1] = HKDF(root, image), s[i-1] = SHA-256(s[i]).
  Coordinate i's pads (one value per group) are the ChaCha20 keystream keyed by s[i] and the share's nonce.
  Whoever holds s[c-1] can compute s[c-2], ..., s[0], so the pads of coordinates 0..c-1, and no other: a later link
  would need a SHA-256 preimage. That is what a restricted key hands out (`sae.privacy.scheme`).
- The per-group scales are hidden by a ChaCha20 keystream keyed by a hash of s[0], which every key can reach.

Only `cryptography` (HKDF, ChaCha20) and `hashlib` (SHA-256, SHAKE-256) do the cryptography here.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct

import numpy as np
import torch
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

SECRET_BYTES = 32
NONCE_BYTES = 12


def secret_permutation(secret: bytes, num_images: int, num_groups: int, code_dim: int) -> torch.Tensor:
    """(B, L, m) long: public coordinate of each model coordinate, a uniform permutation per image and group.

    SHAKE-256 of the secret is an extendable output, so image b's permutation does not depend on the batch size.
    """
    if len(secret) < 16:
        raise ValueError("a permutation secret needs at least 16 bytes")
    if num_images == 1:  # the app's share of one face, re-made at every control move
        return torch.from_numpy(_cached_permutation(secret, num_images, num_groups, code_dim).copy())
    return torch.from_numpy(_permutation(secret, num_images, num_groups, code_dim))


def _permutation(secret: bytes, num_images: int, num_groups: int, code_dim: int) -> np.ndarray:
    """Sort keys from SHAKE-256 of the secret, argsorted per image and group."""
    shape = (num_images, num_groups, code_dim)
    stream = hashlib.shake_256(b"sae/permutation/v1" + struct.pack("<HH", num_groups, code_dim) + secret)
    sort_keys = np.frombuffer(stream.digest(8 * math.prod(shape)), dtype="<u8").reshape(shape)
    return np.argsort(sort_keys, axis=-1, kind="stable").astype(np.int64)


@functools.lru_cache(maxsize=32)
def _cached_permutation(secret: bytes, num_images: int, num_groups: int, code_dim: int) -> np.ndarray:
    """One image's permutation, read-only and cached (a few faces' worth: the app re-shows the same seeded share)."""
    result = _permutation(secret, num_images, num_groups, code_dim)
    result.setflags(write=False)
    return result


def _hkdf(root: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=SECRET_BYTES, salt=None, info=info).derive(root)


def permutation_secret(root: bytes) -> bytes:
    """The permutation secret a keyed share's root implies."""
    return _hkdf(root, b"sae/keyed/permutation")


def chain_head(root: bytes, image: int) -> bytes:
    """s[m-1] of image `image`: the link that unlocks every coordinate."""
    return _hkdf(root, b"sae/keyed/pad-chain" + struct.pack("<I", image))


def chain_links(link: bytes, cutoff: int) -> list[bytes]:
    """[s[0], ..., s[cutoff-1]] from s[cutoff-1] = `link` (empty for cutoff 0)."""
    links = [link] if cutoff > 0 else []
    for _ in range(cutoff - 1):
        links.append(hashlib.sha256(b"sae/keyed/chain" + links[-1]).digest())
    return links[::-1]


@functools.lru_cache(maxsize=1024)
def link_below(link: bytes, cutoff: int, lower: int) -> bytes:
    """s[lower-1] from s[cutoff-1] (lower <= cutoff): what a key restricted to coordinates below `lower` holds."""
    if not 0 < lower <= cutoff:
        raise ValueError(f"need 0 < lower <= cutoff, got lower={lower}, cutoff={cutoff}")
    for _ in range(cutoff - lower):
        link = hashlib.sha256(b"sae/keyed/chain" + link).digest()
    return link


def _stream(key: bytes, nonce: bytes, count: int) -> bytes:
    """`count` bytes of ChaCha20 keystream (block counter from 0)."""
    encryptor = Cipher(algorithms.ChaCha20(key, b"\0\0\0\0" + nonce), mode=None).encryptor()
    return encryptor.update(bytes(count))


def value_pads(links: list[bytes], cutoffs: list[int], nonce: bytes, num_groups: int, code_dim: int, value_bytes: int) -> torch.Tensor:
    """(B, L, m) int64 pads of `value_bytes` bytes each (little-endian); -1 where the image's links do not reach.

    Image b holds `links[b]` = s[cutoffs[b]-1]; coordinates at or past its cutoff get -1.
    """
    if len(nonce) != NONCE_BYTES:
        raise ValueError(f"nonce must be {NONCE_BYTES} bytes")
    rows = [_image_pads(link, cutoff, nonce, num_groups, code_dim, value_bytes) for link, cutoff in zip(links, cutoffs, strict=True)]
    return torch.from_numpy(np.stack(rows) if rows else np.zeros((0, num_groups, code_dim), dtype=np.int64))


@functools.lru_cache(maxsize=256)
def _image_pads(link: bytes, cutoff: int, nonce: bytes, num_groups: int, code_dim: int, value_bytes: int) -> np.ndarray:
    """(L, m) pads of one image (read-only; cached: the app re-shows the same seeded share at every slider move)."""
    pads = np.full((code_dim, num_groups), -1, dtype=np.int64)
    dtype = {1: "<u1", 2: "<u2"}[value_bytes]
    for coordinate, key in enumerate(chain_links(link, cutoff)):
        pads[coordinate] = np.frombuffer(_stream(key, nonce, num_groups * value_bytes), dtype=dtype)
    result = np.ascontiguousarray(pads.T)
    result.setflags(write=False)
    return result


def scale_pads(links: list[bytes], cutoffs: list[int], nonce: bytes, num_groups: int) -> torch.Tensor:
    """(B, L) int64 16-bit pads of the group scales, from a hash of each image's s[0] (every key with cutoff >= 1)."""
    pads = np.zeros((len(links), num_groups), dtype=np.int64)
    for image, (link, cutoff) in enumerate(zip(links, cutoffs, strict=True)):
        if cutoff < 1:
            raise ValueError("a key that reaches no coordinate cannot read the scales")
        first = link_below(link, cutoff, 1)
        key = hashlib.sha256(b"sae/keyed/scales" + first).digest()
        pads[image] = np.frombuffer(_stream(key, nonce, 2 * num_groups), dtype="<u2")
    return torch.from_numpy(pads)
