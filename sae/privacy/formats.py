"""Public codes and keys in memory and as files: version 2 written, versions 1 and 2 read, damage rejected.

Byte formats (little-endian; sizes in bytes; "ranks" are `sae.privacy.combinadic` subset ranks, bit-packed):
- public code: magic b"SAEP" | version u8 | flags u8 (1: permuted, 4: keyed) | value_bits u8 | 0 u8 | images u32
  | groups u16 | code_dim u16 | k' u16 | [v2: model id 8 | keyed: nonce 12] | positions: each group's k'-subset
  of code_dim | values | scales | CRC-32 u32.
  values, in ascending position order: plain codes store float32 (32), float16 (16) or int8 levels (8); keyed codes
  store their integer levels (8 or 16 bits) XOR a pad. scales: plain 8-bit codes one float16 per group (value =
  level * scale); keyed codes one float16 per group XOR a pad.
- key: magic b"SAEK" | version u8 | flags u8 (1: permuted, 2: sealed, 4: keyed, 8: restricted) | 0 u16 | images u32
  | groups u16 | code_dim u16 | k u16 (0xFFFF: a count per group follows) | k' u16 | fingerprint 16
  | secret 32 (a keyed full key: its root; otherwise the permutation secret, when permuted)
  | [keyed restricted: per image the chain link 32 and its cutoff u16] | [per-group counts u16] | mask | CRC-32 u32.
  mask: per group which of the k' public entries are true (or granted), as ranks.
- sealed key (a passphrase): magic | version u8 | flags u8 (= 2) | scrypt log2 N u8 | r u8 | p u8 | salt 16
  | nonce 12 | AES-256-GCM(plain key bytes), the 37 header bytes as associated data.

A key carries the SHA-256 fingerprint of its public code's content (truncated to 16 bytes), so a key never opens
another code; a v2 public code names the model that made it (the first 8 bytes of `sae.core.fingerprint`), so no
other model decodes it. Version 1 files (no model id, no keyed scheme) still read.
"""

from __future__ import annotations

import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

from sae.privacy.combinadic import (
    RankOutOfRange,
    decode_subsets,
    decode_varying_subsets,
    encode_subsets,
    encode_varying_subsets,
    packed_nbytes,
    subset_bits,
    varying_subsets_nbytes,
)
from sae.privacy.keystream import NONCE_BYTES, SECRET_BYTES

PUBLIC_MAGIC = b"SAEP"
KEY_MAGIC = b"SAEK"
FORMAT_VERSION = 2
READ_VERSIONS = (1, 2)
VALUE_BITS = (8, 16, 32)
KEYED_VALUE_BITS = (8, 16)
FINGERPRINT_BYTES = 16
MODEL_ID_BYTES = 8
VARYING = 0xFFFF  # the key header's k when every group has its own count
_PERMUTED, _SEALED, _KEYED, _RESTRICTED = 1, 2, 4, 8
_PUBLIC_HEADER = struct.Struct("<4sBBBBIHHH")
_KEY_HEADER = struct.Struct("<4sBBHIHHHH")
_SEALED_HEADER = struct.Struct("<4sBBBBB16s12s")
_CUTOFF = struct.Struct("<H")
_CRC = struct.Struct("<I")
_FLOAT16_MAX = 65504.0
_MAX_SCRYPT_LOG2_N = 17  # 128 MiB of scrypt memory at r = 8: the most a file may make the reader spend
SCRYPT_LOG2_N = 16  # what a sealed key is written with
# Bounds on what a header may ask the reader to decode, so a crafted file of a few bytes cannot take minutes of CPU or
# gigabytes of memory: far above any model here (at most 20 groups of 256) and any batch the tools write.
MAX_GROUPS, MAX_CODE_DIM, MAX_ENTRIES = 256, 512, 1 << 22  # entries: images x groups x k'


class CodeFormatError(ValueError):
    """A public code or key file is truncated, corrupted, or not one of ours."""


class UnsupportedVersionError(CodeFormatError):
    """A file written by a format version this code does not read."""


class KeyMismatchError(ValueError):
    """The key belongs to a different public code (or the public code was modified, or another model made it)."""


class PassphraseError(ValueError):
    """A protected key was opened without its passphrase, with a wrong one, or was modified."""


# ---------------------------------------------------------------------------------------------------
# Value storage
# ---------------------------------------------------------------------------------------------------


def max_level(value_bits: int) -> int:
    """The largest integer level a `value_bits` code stores (127 for 8 bits); levels are symmetric around 0."""
    return 2 ** (value_bits - 1) - 1


def level_scales(values: torch.Tensor, value_bits: int) -> torch.Tensor:
    """(..., k) values -> (...) per-group scales in float16, never below peak / largest level (so the peak fits)."""
    peak = values.abs().amax(-1) if values.shape[-1] else values.new_zeros(values.shape[:-1])
    scales = (peak / max_level(value_bits)).half()
    clipped = scales.float() * max_level(value_bits) < peak  # rounded down: the peak would not fit; take the next float16 up
    scales = torch.where(clipped, torch.nextafter(scales, torch.tensor(torch.inf, dtype=torch.half)), scales).float()
    if not torch.isfinite(scales).all():
        raise ValueError("values too large for integer levels with a float16 scale; use value_bits=32")
    return torch.where(scales > 0, scales, torch.ones_like(scales))


def quantize_values(values: torch.Tensor, value_bits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Round values to what a plain file stores: float32, float16, or int8 times a float16 scale per group.

    Returns (stored values as float32, per-group scales or None). Quantising once, when the code is made, means the
    in-memory public code and its file are the same thing, so round trips are exact.
    """
    if value_bits not in VALUE_BITS:
        raise ValueError(f"value_bits must be one of {VALUE_BITS}, got {value_bits}")
    values = values.float()
    if not torch.isfinite(values).all():
        raise ValueError("code values must be finite")
    if value_bits == 32:
        return values, None
    if value_bits == 16:
        if values.numel() and values.abs().max() > _FLOAT16_MAX:
            raise ValueError("values exceed float16's range; store them with value_bits=32")
        return values.half().float(), None
    scales = level_scales(values, 8)
    levels = (values / scales[..., None]).round().clamp(-127, 127)
    return levels * scales[..., None], scales


def float16_bits(scales: torch.Tensor) -> torch.Tensor:
    """float16-representable floats -> their 16-bit patterns as int64."""
    return torch.from_numpy(scales.numpy().astype("<f2").view("<u2").astype(np.int64))


def float16_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """16-bit patterns (int) -> float32 values (NaN and inf included: the caller checks)."""
    return torch.from_numpy(bits.numpy().astype("<u2").view("<f2").astype(np.float32))


def _plain_value_bytes(values: torch.Tensor, value_bits: int, scales: torch.Tensor | None) -> bytes:
    if value_bits == 32:
        return values.numpy().astype("<f4").tobytes()
    if value_bits == 16:
        return values.numpy().astype("<f2").tobytes()
    levels = (values / scales[..., None]).round().numpy().astype(np.int8)
    return levels.tobytes() + scales.numpy().astype("<f2").tobytes()


def _keyed_value_bytes(levels: torch.Tensor, value_bits: int, scale_cipher: torch.Tensor) -> bytes:
    dtype = "<i1" if value_bits == 8 else "<i2"
    return levels.numpy().astype(dtype).tobytes() + scale_cipher.numpy().astype("<u2").tobytes()


def _values_from_bytes(data: bytes, shape: tuple[int, int, int], value_bits: int, keyed: bool):
    """(values, scales, scale_cipher) from the value part of a public code."""
    count = math.prod(shape)
    if keyed:
        width = value_bits // 8
        levels = np.frombuffer(data[: count * width], dtype="<i1" if value_bits == 8 else "<i2").astype(np.float32)
        cipher = np.frombuffer(data[count * width :], dtype="<u2").astype(np.int64).reshape(shape[:2])
        return torch.from_numpy(levels.reshape(shape).copy()), None, torch.from_numpy(cipher.copy())
    if value_bits == 32:
        values, scales = np.frombuffer(data, dtype="<f4").astype(np.float32), None
    elif value_bits == 16:
        values, scales = np.frombuffer(data, dtype="<f2").astype(np.float32), None
    else:
        levels = np.frombuffer(data[:count], dtype=np.int8).astype(np.float32)
        scales = np.frombuffer(data[count:], dtype="<f2").astype(np.float32).reshape(shape[:2])
        if not (np.isfinite(scales).all() and (scales > 0).all()) or (levels == -128).any():
            raise CodeFormatError("corrupted public code: invalid 8-bit scales or levels")
        values = levels.reshape(shape) * scales[..., None]
    if not np.isfinite(values).all():
        raise CodeFormatError("corrupted public code: non-finite values")
    scales_t = None if scales is None else torch.from_numpy(np.ascontiguousarray(scales))
    return torch.from_numpy(np.ascontiguousarray(values.reshape(shape))), scales_t, None


# ---------------------------------------------------------------------------------------------------
# Sizes and byte helpers
# ---------------------------------------------------------------------------------------------------


def _value_nbytes(images: int, groups: int, k_prime: int, value_bits: int, keyed: bool) -> int:
    scales = 2 * images * groups if (value_bits == 8 or keyed) else 0
    return images * groups * k_prime * value_bits // 8 + scales


def public_nbytes(
    num_images: int, num_groups: int, code_dim: int, k_prime: int, value_bits: int = 16, keyed: bool = False, version: int = FORMAT_VERSION
) -> int:
    """Size of a public code file: header, model id and nonce (v2), enumerative positions, values, scales, checksum."""
    extra = (MODEL_ID_BYTES + (NONCE_BYTES if keyed else 0)) if version >= 2 else 0
    positions = packed_nbytes(num_images * num_groups, subset_bits(code_dim, k_prime))
    return _PUBLIC_HEADER.size + extra + positions + _value_nbytes(num_images, num_groups, k_prime, value_bits, keyed) + _CRC.size


def key_nbytes(
    num_images: int,
    num_groups: int,
    k: int,
    k_prime: int,
    permuted: bool = False,
    passphrase: bool = False,
    keyed: bool = False,
) -> int:
    """Size of a full (or fixed-count restricted) key file; the mask part is ceil(log2 C(k', k)) bits per group."""
    secret = SECRET_BYTES if (permuted or keyed) else 0
    plain = _KEY_HEADER.size + FINGERPRINT_BYTES + secret + _CRC.size
    plain += packed_nbytes(num_images * num_groups, subset_bits(k_prime, k))
    return plain + (_SEALED_HEADER.size + 16 if passphrase else 0)


def _with_crc(body: bytes) -> bytes:
    return body + _CRC.pack(zlib.crc32(body))


def _check_crc(data: bytes, what: str) -> bytes:
    """Strip and verify the trailing CRC-32; returns the body."""
    if len(data) < _CRC.size:
        raise CodeFormatError(f"{what} is truncated")
    body, (crc,) = data[: -_CRC.size], _CRC.unpack(data[-_CRC.size :])
    if zlib.crc32(body) != crc:
        raise CodeFormatError(f"{what} is corrupted or truncated (checksum mismatch)")
    return body


def _check_magic(data: bytes, magic: bytes, what: str) -> int:
    """The file's format version after checking its magic bytes."""
    if len(data) < len(magic) + 1:
        raise CodeFormatError(f"{what} is truncated")
    if data[: len(magic)] != magic:
        raise CodeFormatError(f"not a {what} (bad magic bytes)")
    version = data[len(magic)]
    if version not in READ_VERSIONS:
        raise UnsupportedVersionError(f"{what} has format version {version}; this code reads {', '.join(map(str, READ_VERSIONS))}")
    return version


def _check_extent(images: int, groups: int, code_dim: int, k_prime: int, shape, max_images: int | None, what: str) -> None:
    """Refuse, before decoding anything, a header for another model's shape or beyond what any reader should decode."""
    if shape is not None and (groups, code_dim) != tuple(shape):
        raise KeyMismatchError(f"this {what} is for {groups} groups of {code_dim}; the model has {shape[0]} groups of {shape[1]}")
    if max_images is not None and images > max_images:
        raise CodeFormatError(f"this {what} holds {images} faces; at most {max_images} are read here")
    if not (0 < groups <= MAX_GROUPS and 0 < code_dim <= MAX_CODE_DIM and 0 < images and images * groups * k_prime <= MAX_ENTRIES):
        raise CodeFormatError(f"{what} header asks for more than this reader decodes ({images} x {groups} x {k_prime} entries)")


def _subsets(data: bytes, count: int, n: int, r: int, what: str) -> np.ndarray:
    try:
        return decode_subsets(data, count, n, r)
    except RankOutOfRange:
        raise CodeFormatError(f"corrupted {what}: a subset rank is out of range") from None


# ---------------------------------------------------------------------------------------------------
# Public code
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PublicCode:
    """What the owner publishes: per image and group, k' positions (ascending) and their stored values.

    `positions` are in public coordinates: the model's own when `permuted` is False, otherwise after the key's secret
    permutation. `values` are exactly what the file stores, read as numbers: a plain code's (quantised) values, or a
    keyed code's integer levels after the pad (uniformly random to anyone without the key).
    """

    positions: torch.Tensor  # (B, L, k') int64, ascending per group
    values: torch.Tensor  # (B, L, k') float32
    code_dim: int
    value_bits: int = 16
    scales: torch.Tensor | None = None  # (B, L) float32: plain 8-bit codes only
    permuted: bool = False
    keyed: bool = False
    nonce: bytes | None = None  # keyed codes: the share's ChaCha20 nonce
    scale_cipher: torch.Tensor | None = None  # (B, L) int64: keyed codes' float16 scales XOR their pads
    model_id: bytes = bytes(MODEL_ID_BYTES)  # the model that made it (zeros: unnamed); b"" for a version 1 file
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.positions.dim() != 3 or self.positions.shape != self.values.shape:
            raise ValueError("positions and values must both have shape (B, L, k')")
        if self.value_bits not in (KEYED_VALUE_BITS if self.keyed else VALUE_BITS):
            raise ValueError(f"value_bits must be one of {KEYED_VALUE_BITS if self.keyed else VALUE_BITS}")
        if self.keyed != (self.scale_cipher is not None and self.nonce is not None and len(self.nonce) == NONCE_BYTES):
            raise ValueError(f"keyed codes need a {NONCE_BYTES}-byte nonce and their scales' cipher; plain codes take neither")
        if not self.keyed and (self.value_bits == 8) != (self.scales is not None):
            raise ValueError("plain 8-bit codes need per-group scales; other widths take none")
        if not 0 < self.k_prime <= self.code_dim <= 0xFFFF:
            raise ValueError(f"need 0 < k' <= code_dim <= 65535, got k'={self.k_prime}, code_dim={self.code_dim}")
        if len(self.model_id) != (MODEL_ID_BYTES if self.version >= 2 else 0) or (self.keyed and self.version < 2):
            raise ValueError(f"a version {self.version} public code needs a {MODEL_ID_BYTES if self.version >= 2 else 0}-byte model id")

    @property
    def num_images(self) -> int:
        return self.positions.shape[0]

    @property
    def num_groups(self) -> int:
        return self.positions.shape[1]

    @property
    def k_prime(self) -> int:
        return self.positions.shape[2]

    @property
    def nbytes(self) -> int:
        """Size of `to_bytes()`, computed without serialising."""
        return public_nbytes(self.num_images, self.num_groups, self.code_dim, self.k_prime, self.value_bits, self.keyed, self.version)

    def dense(self) -> torch.Tensor:
        """(B, L, m) tensor in public coordinates: what decoding the public code as is uses."""
        shape = (self.num_images, self.num_groups, self.code_dim)
        return self.values.new_zeros(shape).scatter(-1, self.positions, self.values)

    def support(self) -> torch.Tensor:
        """(B, L, m) boolean: which public coordinates carry a (true or decoy) entry."""
        shape = (self.num_images, self.num_groups, self.code_dim)
        return torch.zeros(shape, dtype=torch.bool).scatter(-1, self.positions, True)

    def _header(self) -> bytes:
        flags = (_PERMUTED if self.permuted else 0) | (_KEYED if self.keyed else 0)
        header = _PUBLIC_HEADER.pack(
            PUBLIC_MAGIC, self.version, flags, self.value_bits, 0, self.num_images, self.num_groups, self.code_dim, self.k_prime
        )
        return header + (self.model_id + (self.nonce or b"") if self.version >= 2 else b"")

    def _value_bytes(self) -> bytes:
        if self.keyed:
            return _keyed_value_bytes(self.values, self.value_bits, self.scale_cipher)
        return _plain_value_bytes(self.values, self.value_bits, self.scales)

    def fingerprint(self) -> bytes:
        """Truncated SHA-256 of the content (header, positions, stored values); keys carry it."""
        if self.version == 1:  # as version 1 keys computed it
            digest = hashlib.sha256(b"sae/public-code/v1")
            digest.update(self._header())
            digest.update(self.positions.numpy().astype("<u2").tobytes())
            digest.update(self._value_bytes())
            return digest.digest()[:FINGERPRINT_BYTES]
        return hashlib.sha256(b"sae/public-code/v2" + self.to_bytes()[: -_CRC.size]).digest()[:FINGERPRINT_BYTES]

    def short_id(self) -> str:
        """Eight hex digits of the fingerprint: a name for files that never collides in practice."""
        return self.fingerprint()[:4].hex()

    def to_bytes(self) -> bytes:
        return _with_crc(self._header() + encode_subsets(self.support()) + self._value_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, shape: tuple[int, int] | None = None, max_images: int | None = None) -> PublicCode:
        """Parse and validate a public code file (version 1 or 2); raises CodeFormatError on anything wrong.

        `shape` (groups, code_dim) and `max_images` refuse a file made for another model, or holding more faces than
        the caller serves, before any of it is decoded."""
        data = bytes(data)
        version = _check_magic(data, PUBLIC_MAGIC, "public code")
        body = _check_crc(data, "public code")
        if len(body) < _PUBLIC_HEADER.size:
            raise CodeFormatError("public code is truncated")
        _, _, flags, value_bits, _, images, groups, code_dim, k_prime = _PUBLIC_HEADER.unpack_from(body)
        keyed = bool(flags & _KEYED)
        allowed = _PERMUTED | (_KEYED if version >= 2 else 0)
        if value_bits not in (KEYED_VALUE_BITS if keyed else VALUE_BITS) or not 0 < k_prime <= code_dim or flags & ~allowed:
            raise CodeFormatError("public code header is invalid")
        _check_extent(images, groups, code_dim, k_prime, shape, max_images, "public code")
        expected = public_nbytes(images, groups, code_dim, k_prime, value_bits, keyed, version)
        if len(data) != expected:
            raise CodeFormatError(f"public code has {len(data)} bytes, its header says {expected}")
        offset = _PUBLIC_HEADER.size
        model_id, nonce = b"", None
        if version >= 2:
            model_id = body[offset : offset + MODEL_ID_BYTES]
            offset += MODEL_ID_BYTES
            if keyed:
                nonce = body[offset : offset + NONCE_BYTES]
                offset += NONCE_BYTES
        size = packed_nbytes(images * groups, subset_bits(code_dim, k_prime))
        mask = _subsets(body[offset : offset + size], images * groups, code_dim, k_prime, "public code")
        positions = torch.from_numpy(np.nonzero(mask)[1].reshape(images, groups, k_prime).astype(np.int64))
        values, scales, cipher = _values_from_bytes(body[offset + size :], (images, groups, k_prime), value_bits, keyed)
        return cls(positions, values, code_dim, value_bits, scales, bool(flags & _PERMUTED), keyed, nonce, cipher, model_id, version)


# ---------------------------------------------------------------------------------------------------
# Key
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Key:
    """Which public entries are true, what unlocks them, and the fingerprint of the public code it belongs to.

    - `secret`: the permutation secret (None when the code is not permuted).
    - `root`: a keyed full key's root secret (it implies `secret` and every pad: `sae.privacy.keystream`).
    - `links`, `cutoffs`: a restricted keyed key's hash-chain link per image and the cutoff it reaches: it unlocks
      the model coordinates below the cutoff and no others. `true_mask` then marks the granted entries only, and
      their number may differ between groups.
    """

    true_mask: torch.Tensor  # (B, L, k') bool, aligned with PublicCode.positions
    code_dim: int
    fingerprint: bytes
    secret: bytes | None = None
    root: bytes | None = None
    links: tuple[bytes, ...] | None = None
    cutoffs: tuple[int, ...] | None = None
    version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        if self.true_mask.dim() != 3 or self.true_mask.dtype != torch.bool:
            raise ValueError("true_mask must be a (B, L, k') boolean tensor")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        for name in ("secret", "root"):
            value = getattr(self, name)
            if value is not None and len(value) != SECRET_BYTES:
                raise ValueError(f"{name} must be {SECRET_BYTES} bytes")
        if (self.links is None) != (self.cutoffs is None) or (self.root is not None and self.links is not None):
            raise ValueError("a keyed key holds either its root or its links and cutoffs")
        if self.links is not None:
            if len(self.links) != self.num_images or len(self.cutoffs) != self.num_images:
                raise ValueError("a restricted keyed key needs one link and one cutoff per image")
            if any(len(link) != SECRET_BYTES for link in self.links) or not all(1 <= c <= self.code_dim for c in self.cutoffs):
                raise ValueError(f"links must be {SECRET_BYTES} bytes and cutoffs in [1, code_dim]")
        elif not self.uniform:
            raise ValueError("every group of a key must mark the same number of true entries")

    @property
    def num_images(self) -> int:
        return self.true_mask.shape[0]

    @property
    def keyed(self) -> bool:
        return self.root is not None or self.links is not None

    @property
    def restricted(self) -> bool:
        """Whether this key unlocks only part of the code's coordinates (a keyed grant)."""
        return self.links is not None

    @property
    def uniform(self) -> bool:
        counts = self.true_mask.sum(-1)
        return not counts.numel() or bool((counts == counts.flatten()[0]).all())

    @property
    def k(self) -> int:
        """True (or granted) entries per group; for a restricted keyed key, the most any group has."""
        return int(self.true_mask.sum(-1).max()) if self.true_mask.numel() else 0

    @property
    def granted(self) -> int:
        """Entries this key reveals in all, over every image and group."""
        return int(self.true_mask.sum())

    @property
    def k_prime(self) -> int:
        return self.true_mask.shape[-1]

    def pad_access(self) -> tuple[list[bytes], list[int]] | None:
        """Per image, the chain link this key holds and its cutoff (None for a plain key)."""
        from sae.privacy.keystream import chain_head

        if self.root is not None:
            return [chain_head(self.root, image) for image in range(self.num_images)], [self.code_dim] * self.num_images
        if self.links is not None:
            return list(self.links), list(self.cutoffs)
        return None

    @property
    def nbytes(self) -> int:
        """Size of the unprotected `to_bytes()`."""
        return len(self._plain_bytes())

    def _plain_bytes(self) -> bytes:
        images, groups, _ = self.true_mask.shape
        flags = (_PERMUTED if self.secret is not None else 0) | (_KEYED if self.keyed else 0) | (_RESTRICTED if self.restricted else 0)
        count = self.k if self.uniform else VARYING
        header = _KEY_HEADER.pack(KEY_MAGIC, self.version, flags, 0, images, groups, self.code_dim, count, self.k_prime)
        parts = [header, self.fingerprint]
        if self.root is not None:
            parts.append(self.root)
        elif self.secret is not None:
            parts.append(self.secret)
        if self.links is not None:
            parts += [link + _CUTOFF.pack(cutoff) for link, cutoff in zip(self.links, self.cutoffs, strict=True)]
        if count == VARYING:
            counts = self.true_mask.sum(-1).flatten().numpy().astype("<u2")
            parts += [counts.tobytes(), encode_varying_subsets(self.true_mask)]
        else:
            parts.append(encode_subsets(self.true_mask))
        return _with_crc(b"".join(parts))

    def to_bytes(self, passphrase: str | bytes | None = None, *, scrypt_log2_n: int = SCRYPT_LOG2_N) -> bytes:
        """Serialise; with a passphrase, seal the bytes with scrypt + AES-256-GCM."""
        plain = self._plain_bytes()
        return plain if passphrase is None else _seal(plain, passphrase, scrypt_log2_n, self.version)

    @classmethod
    def from_bytes(
        cls, data: bytes, passphrase: str | bytes | None = None, shape: tuple[int, int] | None = None, max_images: int | None = None
    ) -> Key:
        """Parse and validate a key file (version 1 or 2, sealed or not); CodeFormatError or PassphraseError on failure.
        `shape` and `max_images` as for `PublicCode.from_bytes`."""
        data = bytes(data)
        _check_magic(data, KEY_MAGIC, "key")
        if len(data) < 6:
            raise CodeFormatError("key is truncated")
        if data[5] & _SEALED:
            if passphrase is None:
                raise PassphraseError("this key is protected by a passphrase; none was given")
            data = _open(data, passphrase)
            _check_magic(data, KEY_MAGIC, "key")
        body = _check_crc(data, "key")
        if len(body) < _KEY_HEADER.size + FINGERPRINT_BYTES:
            raise CodeFormatError("key is truncated")
        _, version, flags, _, images, groups, code_dim, k, k_prime = _KEY_HEADER.unpack_from(body)
        _check_extent(images, groups, code_dim, k_prime, shape, max_images, "key")
        return _parse_key(body, version, flags, images, groups, code_dim, k, k_prime)


def _parse_key(body: bytes, version: int, flags: int, images: int, groups: int, code_dim: int, k: int, k_prime: int) -> Key:
    permuted, keyed, restricted = bool(flags & _PERMUTED), bool(flags & _KEYED), bool(flags & _RESTRICTED)
    allowed = _PERMUTED | ((_KEYED | _RESTRICTED) if version >= 2 else 0)
    varying = k == VARYING and version >= 2
    if flags & ~allowed or (restricted and not keyed) or not 0 < k_prime <= code_dim or not (varying or 0 < k <= k_prime):
        raise CodeFormatError("key header is invalid")

    def take(size: int) -> bytes:
        nonlocal offset
        if offset + size > len(body):
            raise CodeFormatError("key is truncated")
        offset += size
        return body[offset - size : offset]

    offset = _KEY_HEADER.size
    fingerprint = take(FINGERPRINT_BYTES)
    root = secret = None
    if keyed and not restricted:
        root = take(SECRET_BYTES)
    elif permuted:
        secret = take(SECRET_BYTES)
    links = cutoffs = None
    if restricted:
        pairs = [take(SECRET_BYTES + _CUTOFF.size) for _ in range(images)]
        links = tuple(pair[:SECRET_BYTES] for pair in pairs)
        cutoffs = tuple(_CUTOFF.unpack(pair[SECRET_BYTES:])[0] for pair in pairs)
        if not all(1 <= cutoff <= code_dim for cutoff in cutoffs):
            raise CodeFormatError("key header is invalid: a cutoff is out of range")
    try:
        if varying:
            counts = np.frombuffer(take(2 * images * groups), dtype="<u2")
            if (counts > k_prime).any():
                raise CodeFormatError("key is corrupted: a group count exceeds k'")
            size = varying_subsets_nbytes(counts, k_prime)
            mask = decode_varying_subsets(take(size), counts, k_prime)
        else:
            size = packed_nbytes(images * groups, subset_bits(k_prime, k))
            mask = decode_subsets(take(size), images * groups, k_prime, k)
    except RankOutOfRange:
        raise CodeFormatError("corrupted key: a subset rank is out of range") from None
    if offset != len(body):
        raise CodeFormatError(f"key has {len(body) - offset} bytes more than its header says")
    if root is not None:
        from sae.privacy.keystream import permutation_secret

        secret = permutation_secret(root) if permuted else None
    elif restricted and not permuted:
        secret = None
    return Key(torch.from_numpy(mask.reshape(images, groups, k_prime)), code_dim, fingerprint, secret, root, links, cutoffs, version)


# ---------------------------------------------------------------------------------------------------
# Passphrase sealing (scrypt + AES-256-GCM, from `cryptography`)
# ---------------------------------------------------------------------------------------------------


def _derive_aes_key(passphrase: str | bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(secret)


def _seal(plain: bytes, passphrase: str | bytes, log2_n: int, version: int, r: int = 8, p: int = 1) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not 10 <= log2_n <= _MAX_SCRYPT_LOG2_N:
        raise ValueError(f"scrypt_log2_n must be in [10, {_MAX_SCRYPT_LOG2_N}]")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _SEALED_HEADER.pack(KEY_MAGIC, version, _SEALED, log2_n, r, p, salt, nonce)
    return header + AESGCM(_derive_aes_key(passphrase, salt, log2_n, r, p)).encrypt(nonce, plain, header)


def _open(sealed: bytes, passphrase: str | bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(sealed) < _SEALED_HEADER.size + 16:
        raise CodeFormatError("protected key is truncated")
    _, _, flags, log2_n, r, p, salt, nonce = _SEALED_HEADER.unpack_from(sealed)
    if flags != _SEALED or not 10 <= log2_n <= _MAX_SCRYPT_LOG2_N or (r, p) != (8, 1):  # what `_seal` writes, no more
        raise CodeFormatError("protected key header is invalid")
    header = sealed[: _SEALED_HEADER.size]
    try:
        aes = AESGCM(_derive_aes_key(passphrase, salt, log2_n, r, p))
        return aes.decrypt(nonce, sealed[_SEALED_HEADER.size :], header)
    except InvalidTag:
        raise PassphraseError("wrong passphrase, or the key file was modified") from None
