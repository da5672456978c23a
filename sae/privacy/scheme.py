"""Public codes and keys: share a sparse code that only a key holder can read, at a fidelity the owner picks.

Ambiguation (Razeghi et al. 2017; Ferdowsi et al. 2020): per group the k true non-zeros are published
together with k' - k decoys at random off-support positions. The key says which k of the k' public
non-zeros are true. Without it an attacker must guess; how well they guess is measured by `sae.privacy.attacks`.

Decoy values. The paper's and the report's decoys (`decoys="reference"`, kept only for contrast) are
Gaussian-tail draws scaled by m/k, 2-4x larger than true values: keeping the k smallest magnitudes
recovers the true support. Ours (`decoys="resample"`) are a shrunk smoothed bootstrap (Silverman 1986,
section 6.4.1) of the group's own true values in log-magnitude: pick a true value at random, keep its
sign, jitter its log-magnitude by a Gaussian of half Silverman's rule-of-thumb bandwidth, and shrink so
that the decoys' log-magnitudes have the mean and variance of the true ones. Why this and not the obvious
alternatives:
- copying true values exactly leaves duplicates, and every value seen once is then surely true;
- interpolating the group's empirical quantile function never goes past the extremes, so the largest
  and smallest public magnitudes would always be true;
- a parametric fit (say Laplace tails) is wrong for any model whose codes are not Laplace.
The bandwidth trades two leaks: too narrow and decoys cluster around their anchors (an isolated value is
then true), too wide and decoys overshoot the true range. On synthetic top-16-of-128 codes (Gaussian,
random per-group scales, k' = 2k, chance 50%; Laplace codes within a point) the learned attack's support
recovery was 56.6%, 53.3%, 52.3%, 53.7% and 56.1% at 0.05, 0.2, 0.5, 1 and 2 times Silverman's bandwidth,
and 59.8% for quantile interpolation, hence `BANDWIDTH = 0.5`.
Values are drawn per image and group, so decoys follow each group's scale and sign balance. What the
resampling cannot hide is recorded by the attacks: positions (a uniform decoy lands on atoms the model
rarely uses; `position_weights` draws decoys where true non-zeros usually are) and whatever structure
a learned attack finds.

Decoy signs. By default (`signs="anchor"`) a decoy keeps its anchor's sign, so each group's share of
positive public values tracks the true code's; through the permutation that share is most of what a
regression on the value multisets reads. `signs="balanced"` publishes floor(k'/2) positive values per
group whenever it can (see `balance_signs`; the shipped default, with the measurement above the defaults).

Secret permutation (`permute=True`): each image's groups are published in a coordinate order derived
from a 256-bit secret stored in the key (SHAKE-256 of the secret gives sort keys, so every permutation
is equally likely). Without the secret the positions say nothing about which atom a value belongs to,
so even a perfect guess of the support decodes to garbage. It is obfuscation with a measured strength,
not a proven cryptosystem: the values' multiset per group stays public.

Randomness comes from an explicit `torch.Generator` so every figure is reproducible; a real share must
seed it from OS entropy (for example `secrets.randbits(63)`), and the decoy placement drawn from it is
then only as unguessable as that 64-bit seed; pass `secret=secrets.token_bytes(32)` so the permutation
does not depend on it. Passphrase protection of a key file uses `cryptography` (scrypt +
AES-GCM) with salt and nonce from `os.urandom`.

Byte formats (little-endian, version 1; sizes in bytes):
- public code: magic b"SAEP" | version u8 | flags u8 (bit 0: permuted) | value_bits u8 | 0 u8
  | images u32 | groups u16 | code_dim u16 | k' u16 | positions | values | scales | CRC-32 u32.
  positions: per group the rank of its k'-subset of code_dim (enumerative code, ceil(log2 C(m, k')) bits,
  none when k' = m), bit-packed over all groups. values: per group, in ascending position order,
  float32 (32), float16 (16) or int8 (8). scales: 8-bit only, one float16 per group (value = int8 * scale).
- key: magic b"SAEK" | version u8 | flags u8 (bit 0: permuted, bit 1: passphrase) | 0 u16 | images u32
  | groups u16 | code_dim u16 | k u16 | k' u16 | fingerprint 16 | secret 32 (permuted only) | mask
  | CRC-32 u32. mask: per group the rank of its true k-subset of the k' public non-zeros
  (ceil(log2 C(k', k)) bits), bit-packed. fingerprint: SHA-256 of the public code's content, truncated;
  `reveal` refuses a key whose fingerprint does not match the public code.
- passphrase-protected key: magic b"SAEK" | version u8 | flags u8 (= 2) | scrypt log2 N u8 | r u8 | p u8
  | salt 16 | nonce 12 | AES-256-GCM(plain key bytes) with the 37 header bytes as associated data.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import struct
import zlib
from dataclasses import dataclass

import numpy as np
import torch

PUBLIC_MAGIC = b"SAEP"
KEY_MAGIC = b"SAEK"
FORMAT_VERSION = 1
VALUE_BITS = (8, 16, 32)
SECRET_BYTES = 32
FINGERPRINT_BYTES = 16
_FLAG_PERMUTED = 1
_FLAG_ENCRYPTED = 2
_PUBLIC_HEADER = struct.Struct("<4sBBBBIHHH")
_KEY_HEADER = struct.Struct("<4sBBHIHHHH")
_SEALED_HEADER = struct.Struct("<4sBBBBB16s12s")
_CRC = struct.Struct("<I")
_FLOAT16_MAX = 65504.0
_MAX_SCRYPT_LOG2_N = 22
BANDWIDTH = 0.5  # times Silverman's rule of thumb; see the module docstring

# Defaults the app and `python -m sae.cli.share` ship, confirmed on the bundled model (assets/model/privacy.md:
# `python -m sae.cli.privacy_eval --ratios 2 4 full`, 1000 test faces, k = 32 of 128 per group, the learned and
# regression attacks trained on 2000 training faces). Key holder 29.87 dB, mean face 11.62 dB; the bar (issue 3):
# best attack <= key holder - 10 dB and <= mean face + 3 dB = 14.62 dB.
# - Without the permutation no k' comes close: a learned per-entry scorer decodes to 25.58 dB at k' = 2k and
#   23.40 dB at k' = code_dim.
# - Permuted, only a regression on each group's value multiset sees anything: 16.28-16.37 dB, driven by each
#   group's share of positive values (13.5-13.6 dB below the key holder, but over the mean-face bar).
# - Permuted with balanced signs: best attack 12.68 dB at k' = code_dim (17.2 dB below the key holder, 1.06 dB
#   above the mean face), 14.12 at k' = 2k. Every position filled also means a lower-fidelity key (which carries
#   the permutation secret) leaves the rest of the support hidden among all 128 positions, not among 64
#   (not measured: how far such a key holder can upgrade their view).
# - Values in 8 bits cost the key holder 0.025 dB and halve the public code (2,622 vs 5,142 bytes per face).
DEFAULT_K = 32  # true non-zeros per group (640 of 2560 for the bundled model's 20 groups of 128)
DEFAULT_K_PRIME_RATIO: int | None = None  # k'/k; None fills every position (k' = code_dim)
DEFAULT_PERMUTE = True
DEFAULT_VALUE_BITS = 8
DEFAULT_SIGNS = "balanced"


class CodeFormatError(ValueError):
    """A public code or key file is truncated, corrupted, or not one of ours."""


class UnsupportedVersionError(CodeFormatError):
    """A file written by a format version this code does not read."""


class KeyMismatchError(ValueError):
    """The key belongs to a different public code (or the public code was modified)."""


class PassphraseError(ValueError):
    """A protected key was opened without its passphrase, with a wrong one, or was modified."""


# ---------------------------------------------------------------------------------------------------
# Enumerative coding of fixed-size subsets, vectorised over groups (Python ints for the big binomials)
# ---------------------------------------------------------------------------------------------------


def subset_bits(n: int, r: int) -> int:
    """Bits one group's r-subset of n takes in our files: ceil(log2 C(n, r)) (0 when there is one choice)."""
    return (math.comb(n, r) - 1).bit_length()


@functools.lru_cache(maxsize=32)
def _binomials(n: int, r: int) -> np.ndarray:
    """table[c, i] = C(c, i) for c <= n, i <= r, as an object array of Python ints."""
    table = np.empty((n + 1, r + 1), dtype=object)
    for i in range(r + 1):
        table[:, i] = [math.comb(c, i) for c in range(n + 1)]
    return table


def _rank_subsets(mask: np.ndarray) -> np.ndarray:
    """(G, n) boolean rows with r ones each -> their combinadic ranks in [0, C(n, r)); the smaller side is coded."""
    groups, n = mask.shape
    r = int(mask[0].sum()) if groups else 0
    if 2 * r > n:
        mask, r = ~mask, n - r
    if r == 0 or groups == 0:
        return np.zeros(groups, dtype=object)
    members = np.nonzero(mask)[1].reshape(groups, r)  # ascending within each row
    table = _binomials(n, r)
    return table[members, np.arange(1, r + 1)].sum(axis=1)


def _unrank_subsets(ranks: np.ndarray, n: int, r: int) -> np.ndarray:
    """Inverse of `_rank_subsets`: ranks (G,) -> (G, n) boolean rows with r ones."""
    groups = len(ranks)
    complement = 2 * r > n
    side = n - r if complement else r
    mask = np.zeros((groups, n), dtype=bool)
    if side and groups:
        table = _binomials(n, side)
        remaining = ranks.copy()
        rows = np.arange(groups)
        for i in range(side, 0, -1):  # greedy: the largest member first (a loop over k, not over groups)
            member = np.searchsorted(table[:, i], remaining, side="right") - 1
            remaining = remaining - table[member, i]
            mask[rows, member.astype(np.int64)] = True
    return ~mask if complement else mask


def _pack_ranks(ranks: np.ndarray, width: int) -> bytes:
    """Concatenate each rank as a `width`-bit big-endian field, zero-padded to whole bytes."""
    if width == 0 or len(ranks) == 0:
        return b""
    limbs = -(-width // 64)
    columns = [((ranks >> (64 * (limbs - 1 - j))) & (2**64 - 1)).astype(np.uint64) for j in range(limbs)]
    words = np.stack(columns, axis=1).astype(">u8")
    bits = np.unpackbits(words.view(np.uint8).reshape(len(ranks), limbs * 8), axis=1)[:, limbs * 64 - width :]
    return np.packbits(bits.reshape(-1)).tobytes()


def _unpack_ranks(data: bytes, count: int, width: int) -> np.ndarray:
    """Inverse of `_pack_ranks` (data must be exactly the packed length)."""
    if width == 0 or count == 0:
        return np.zeros(count, dtype=object)
    limbs = -(-width // 64)
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))[: count * width].reshape(count, width)
    padded = np.zeros((count, limbs * 64), dtype=np.uint8)
    padded[:, limbs * 64 - width :] = bits
    words = np.packbits(padded, axis=1).view(">u8").astype(object)
    ranks = np.zeros(count, dtype=object)
    for j in range(limbs):
        ranks = (ranks << 64) + words[:, j]
    return ranks


def _packed_nbytes(count: int, width: int) -> int:
    return -(-count * width // 8)


def _encode_subsets(mask: torch.Tensor) -> bytes:
    """(..., n) boolean tensor with the same count per row -> packed ranks."""
    rows = mask.reshape(-1, mask.shape[-1]).numpy()
    return _pack_ranks(_rank_subsets(rows), subset_bits(mask.shape[-1], int(rows[0].sum()) if len(rows) else 0))


def _decode_subsets(data: bytes, count: int, n: int, r: int, what: str) -> np.ndarray:
    """Packed ranks -> (count, n) boolean rows; out-of-range ranks are a format error."""
    ranks = _unpack_ranks(data, count, subset_bits(n, r))
    if count and (ranks >= math.comb(n, min(r, n - r))).any():
        raise CodeFormatError(f"corrupted {what}: a subset rank is out of range")
    return _unrank_subsets(ranks, n, r)


# ---------------------------------------------------------------------------------------------------
# Byte helpers
# ---------------------------------------------------------------------------------------------------


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


def _check_magic(data: bytes, magic: bytes, what: str) -> None:
    if len(data) < len(magic) + 1:
        raise CodeFormatError(f"{what} is truncated")
    if data[: len(magic)] != magic:
        raise CodeFormatError(f"not a {what} (bad magic bytes)")
    if data[len(magic)] != FORMAT_VERSION:
        raise UnsupportedVersionError(f"{what} has format version {data[len(magic)]}; this code reads {FORMAT_VERSION}")


# ---------------------------------------------------------------------------------------------------
# Value storage
# ---------------------------------------------------------------------------------------------------


def quantize_values(values: torch.Tensor, value_bits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Round values to what a file stores: float32, float16, or int8 times a float16 scale per group.

    Returns (stored values as float32, per-group scales or None). Quantising once, when the code is
    made, means the in-memory public code and its file are the same thing, so round trips are exact.
    """
    if value_bits not in VALUE_BITS:
        raise ValueError(f"value_bits must be one of {VALUE_BITS}, got {value_bits}")
    values = values.float()
    if not torch.isfinite(values).all():
        raise ValueError("code values must be finite")
    if value_bits == 32:
        return values, None
    peak = values.abs().amax(-1) if values.shape[-1] else values.new_zeros(values.shape[:-1])
    if value_bits == 16:
        if (peak > _FLOAT16_MAX).any():
            raise ValueError("values exceed float16's range; store them with value_bits=32")
        return values.half().float(), None
    scales = (peak / 127).half().float()
    if not torch.isfinite(scales).all():
        raise ValueError("values too large for an 8-bit code with a float16 scale; use value_bits=32")
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    levels = (values / scales[..., None]).round().clamp(-127, 127)
    return levels * scales[..., None], scales


def _value_bytes(values: torch.Tensor, value_bits: int, scales: torch.Tensor | None) -> bytes:
    if value_bits == 32:
        return values.numpy().astype("<f4").tobytes()
    if value_bits == 16:
        return values.numpy().astype("<f2").tobytes()
    levels = (values / scales[..., None]).round().numpy().astype(np.int8)
    return levels.tobytes() + scales.numpy().astype("<f2").tobytes()


def _values_from_bytes(data: bytes, shape: tuple[int, int, int], value_bits: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    count = math.prod(shape)
    if value_bits == 32:
        values = np.frombuffer(data, dtype="<f4").astype(np.float32)
        scales = None
    elif value_bits == 16:
        values = np.frombuffer(data, dtype="<f2").astype(np.float32)
        scales = None
    else:
        levels = np.frombuffer(data[:count], dtype=np.int8).astype(np.float32)
        scales = np.frombuffer(data[count:], dtype="<f2").astype(np.float32).reshape(shape[:2])
        if not (np.isfinite(scales).all() and (scales > 0).all()) or (levels == -128).any():
            raise CodeFormatError("corrupted public code: invalid 8-bit scales or levels")
        values = levels.reshape(shape) * scales[..., None]
    if not np.isfinite(values).all():
        raise CodeFormatError("corrupted public code: non-finite values")
    scales_t = None if scales is None else torch.from_numpy(np.ascontiguousarray(scales))
    return torch.from_numpy(np.ascontiguousarray(values.reshape(shape))), scales_t


def _value_nbytes(images: int, groups: int, k_prime: int, value_bits: int) -> int:
    extra = 2 * images * groups if value_bits == 8 else 0
    return images * groups * k_prime * value_bits // 8 + extra


def public_nbytes(num_images: int, num_groups: int, code_dim: int, k_prime: int, value_bits: int = 16) -> int:
    """Size of a public code file: header, enumerative positions, values, scales, checksum."""
    positions = _packed_nbytes(num_images * num_groups, subset_bits(code_dim, k_prime))
    return _PUBLIC_HEADER.size + positions + _value_nbytes(num_images, num_groups, k_prime, value_bits) + _CRC.size


def key_nbytes(num_images: int, num_groups: int, k: int, k_prime: int, permuted: bool = False, passphrase: bool = False) -> int:
    """Size of a key file; the mask part is ceil(log2 C(k', k)) bits per group."""
    plain = _KEY_HEADER.size + FINGERPRINT_BYTES + (SECRET_BYTES if permuted else 0) + _CRC.size
    plain += _packed_nbytes(num_images * num_groups, subset_bits(k_prime, k))
    return plain + (_SEALED_HEADER.size + 16 if passphrase else 0)


# ---------------------------------------------------------------------------------------------------
# The secret permutation
# ---------------------------------------------------------------------------------------------------


def secret_permutation(secret: bytes, num_images: int, num_groups: int, code_dim: int) -> torch.Tensor:
    """(B, L, m) long: public coordinate of each model coordinate, a uniform permutation per image and group.

    SHAKE-256 of the secret is an extendable output, so image b's permutation does not depend on the batch size.
    """
    if len(secret) < 16:
        raise ValueError("a permutation secret needs at least 16 bytes")
    shape = (num_images, num_groups, code_dim)
    stream = hashlib.shake_256(b"sae/permutation/v1" + struct.pack("<HH", num_groups, code_dim) + secret)
    sort_keys = np.frombuffer(stream.digest(8 * math.prod(shape)), dtype="<u8").reshape(shape)
    return torch.from_numpy(np.argsort(sort_keys, axis=-1, kind="stable").astype(np.int64))


def _draw_secret(generator: torch.Generator) -> bytes:
    return bytes(torch.randint(0, 256, (SECRET_BYTES,), generator=generator, dtype=torch.uint8).tolist())


# ---------------------------------------------------------------------------------------------------
# Public code and key
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class PublicCode:
    """What the owner publishes: per image and group, k' positions (ascending) and their stored values.

    `positions` are in public coordinates: the model's own when `permuted` is False, otherwise after the
    key's secret permutation. `values` are exactly what the file stores (already quantised).
    """

    positions: torch.Tensor  # (B, L, k') int64, ascending per group
    values: torch.Tensor  # (B, L, k') float32
    code_dim: int
    value_bits: int = 16
    scales: torch.Tensor | None = None  # (B, L) float32, 8-bit codes only
    permuted: bool = False

    def __post_init__(self) -> None:
        if self.positions.dim() != 3 or self.positions.shape != self.values.shape:
            raise ValueError("positions and values must both have shape (B, L, k')")
        if self.value_bits not in VALUE_BITS:
            raise ValueError(f"value_bits must be one of {VALUE_BITS}")
        if (self.value_bits == 8) != (self.scales is not None):
            raise ValueError("8-bit codes need per-group scales; other widths take none")
        if not 0 < self.k_prime <= self.code_dim <= 0xFFFF:
            raise ValueError(f"need 0 < k' <= code_dim <= 65535, got k'={self.k_prime}, code_dim={self.code_dim}")

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
        return public_nbytes(self.num_images, self.num_groups, self.code_dim, self.k_prime, self.value_bits)

    def dense(self) -> torch.Tensor:
        """(B, L, m) tensor in public coordinates: what decoding the public code as is uses."""
        shape = (self.num_images, self.num_groups, self.code_dim)
        return self.values.new_zeros(shape).scatter(-1, self.positions, self.values)

    def support(self) -> torch.Tensor:
        """(B, L, m) boolean: which public coordinates carry a (true or decoy) entry."""
        shape = (self.num_images, self.num_groups, self.code_dim)
        return torch.zeros(shape, dtype=torch.bool).scatter(-1, self.positions, True)

    def _header(self) -> bytes:
        flags = _FLAG_PERMUTED if self.permuted else 0
        return _PUBLIC_HEADER.pack(
            PUBLIC_MAGIC, FORMAT_VERSION, flags, self.value_bits, 0, self.num_images, self.num_groups,
            self.code_dim, self.k_prime,
        )  # fmt: skip

    def fingerprint(self) -> bytes:
        """Truncated SHA-256 of the content (shape, flags, positions, stored values); keys carry it."""
        digest = hashlib.sha256(b"sae/public-code/v1")
        digest.update(self._header())
        digest.update(self.positions.numpy().astype("<u2").tobytes())
        digest.update(_value_bytes(self.values, self.value_bits, self.scales))
        return digest.digest()[:FINGERPRINT_BYTES]

    def to_bytes(self) -> bytes:
        positions = _encode_subsets(self.support())
        return _with_crc(self._header() + positions + _value_bytes(self.values, self.value_bits, self.scales))

    @classmethod
    def from_bytes(cls, data: bytes) -> PublicCode:
        """Parse and validate a public code file; raises CodeFormatError on anything wrong."""
        data = bytes(data)
        _check_magic(data, PUBLIC_MAGIC, "public code")
        body = _check_crc(data, "public code")
        if len(body) < _PUBLIC_HEADER.size:
            raise CodeFormatError("public code is truncated")
        _, _, flags, value_bits, _, images, groups, code_dim, k_prime = _PUBLIC_HEADER.unpack_from(body)
        if value_bits not in VALUE_BITS or not 0 < k_prime <= code_dim or flags & ~_FLAG_PERMUTED:
            raise CodeFormatError("public code header is invalid")
        expected = public_nbytes(images, groups, code_dim, k_prime, value_bits)
        if len(data) != expected:
            raise CodeFormatError(f"public code has {len(data)} bytes, its header says {expected}")
        offset = _PUBLIC_HEADER.size
        size = _packed_nbytes(images * groups, subset_bits(code_dim, k_prime))
        mask = _decode_subsets(body[offset : offset + size], images * groups, code_dim, k_prime, "public code")
        positions = torch.from_numpy(np.nonzero(mask)[1].reshape(images, groups, k_prime).astype(np.int64))
        values, scales = _values_from_bytes(body[offset + size :], (images, groups, k_prime), value_bits)
        return cls(positions, values, code_dim, value_bits, scales, bool(flags & _FLAG_PERMUTED))


@dataclass(frozen=True, eq=False)
class Key:
    """Which of the public non-zeros are true, the permutation secret if any, and the public code's fingerprint."""

    true_mask: torch.Tensor  # (B, L, k') bool, aligned with PublicCode.positions; the same count per group
    code_dim: int
    fingerprint: bytes
    secret: bytes | None = None

    def __post_init__(self) -> None:
        if self.true_mask.dim() != 3 or self.true_mask.dtype != torch.bool:
            raise ValueError("true_mask must be a (B, L, k') boolean tensor")
        counts = self.true_mask.sum(-1)
        if counts.numel() and (counts != counts.flatten()[0]).any():
            raise ValueError("every group of a key must mark the same number of true entries")
        if len(self.fingerprint) != FINGERPRINT_BYTES:
            raise ValueError(f"fingerprint must be {FINGERPRINT_BYTES} bytes")
        if self.secret is not None and len(self.secret) != SECRET_BYTES:
            raise ValueError(f"secret must be {SECRET_BYTES} bytes")

    @property
    def k(self) -> int:
        """True entries per group this key reveals."""
        return int(self.true_mask[0, 0].sum()) if self.true_mask.numel() else 0

    @property
    def k_prime(self) -> int:
        return self.true_mask.shape[-1]

    @property
    def nbytes(self) -> int:
        """Size of the unprotected `to_bytes()`."""
        images, groups, _ = self.true_mask.shape
        return key_nbytes(images, groups, self.k, self.k_prime, self.secret is not None)

    def to_bytes(self, passphrase: str | bytes | None = None, *, scrypt_log2_n: int = 15) -> bytes:
        """Serialise; with a passphrase, seal the bytes with scrypt + AES-256-GCM."""
        images, groups, k_prime = self.true_mask.shape
        flags = _FLAG_PERMUTED if self.secret is not None else 0
        header = _KEY_HEADER.pack(KEY_MAGIC, FORMAT_VERSION, flags, 0, images, groups, self.code_dim, self.k, k_prime)
        plain = _with_crc(header + self.fingerprint + (self.secret or b"") + _encode_subsets(self.true_mask))
        return plain if passphrase is None else _seal(plain, passphrase, scrypt_log2_n)

    @classmethod
    def from_bytes(cls, data: bytes, passphrase: str | bytes | None = None) -> Key:
        """Parse and validate a key file; a protected one needs its passphrase (PassphraseError otherwise).

        A passphrase given for an unprotected key is not needed and is ignored.
        """
        data = bytes(data)
        _check_magic(data, KEY_MAGIC, "key")
        if len(data) < 6:
            raise CodeFormatError("key is truncated")
        if data[5] & _FLAG_ENCRYPTED:
            if passphrase is None:
                raise PassphraseError("this key is protected by a passphrase; none was given")
            data = _open(data, passphrase)
            _check_magic(data, KEY_MAGIC, "key")
        body = _check_crc(data, "key")
        if len(body) < _KEY_HEADER.size:
            raise CodeFormatError("key is truncated")
        _, _, flags, _, images, groups, code_dim, k, k_prime = _KEY_HEADER.unpack_from(body)
        permuted = bool(flags & _FLAG_PERMUTED)
        if flags & ~_FLAG_PERMUTED or not 0 <= k <= k_prime <= code_dim:
            raise CodeFormatError("key header is invalid")
        expected = key_nbytes(images, groups, k, k_prime, permuted)
        if len(data) != expected:
            raise CodeFormatError(f"key has {len(data)} bytes, its header says {expected}")
        offset = _KEY_HEADER.size
        fingerprint = body[offset : offset + FINGERPRINT_BYTES]
        offset += FINGERPRINT_BYTES
        secret = body[offset : offset + SECRET_BYTES] if permuted else None
        offset += SECRET_BYTES if permuted else 0
        mask = _decode_subsets(body[offset:], images * groups, k_prime, k, "key")
        return cls(torch.from_numpy(mask.reshape(images, groups, k_prime)), code_dim, fingerprint, secret)

    def restrict(self, public: PublicCode, fraction: float) -> Key:
        """A key to the largest `kept_count(k, fraction)` true entries only: a lower-fidelity grant.

        The smaller key reveals nothing about the true entries it leaves out.
        """
        check_key(public, self)
        kept = kept_count(self.k, fraction)
        scores = torch.where(self.true_mask, public.values.abs(), torch.full_like(public.values, -1.0))
        order = torch.sort(scores, dim=-1, descending=True, stable=True).indices[..., :kept]
        mask = torch.zeros_like(self.true_mask).scatter(-1, order, True)
        return Key(mask, self.code_dim, self.fingerprint, self.secret)


def _derive_aes_key(passphrase: str | bytes, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    secret = passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)
    return Scrypt(salt=salt, length=32, n=2**log2_n, r=r, p=p).derive(secret)


def _seal(plain: bytes, passphrase: str | bytes, log2_n: int, r: int = 8, p: int = 1) -> bytes:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if not 10 <= log2_n <= _MAX_SCRYPT_LOG2_N:
        raise ValueError(f"scrypt_log2_n must be in [10, {_MAX_SCRYPT_LOG2_N}]")
    salt, nonce = os.urandom(16), os.urandom(12)
    header = _SEALED_HEADER.pack(KEY_MAGIC, FORMAT_VERSION, _FLAG_ENCRYPTED, log2_n, r, p, salt, nonce)
    return header + AESGCM(_derive_aes_key(passphrase, salt, log2_n, r, p)).encrypt(nonce, plain, header)


def _open(sealed: bytes, passphrase: str | bytes) -> bytes:
    from cryptography.exceptions import InvalidTag
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(sealed) < _SEALED_HEADER.size + 16:
        raise CodeFormatError("protected key is truncated")
    _, _, flags, log2_n, r, p, salt, nonce = _SEALED_HEADER.unpack_from(sealed)
    if flags != _FLAG_ENCRYPTED or not 10 <= log2_n <= _MAX_SCRYPT_LOG2_N or not 1 <= r <= 32 or not 1 <= p <= 16:
        raise CodeFormatError("protected key header is invalid")
    header = sealed[: _SEALED_HEADER.size]
    try:
        aes = AESGCM(_derive_aes_key(passphrase, salt, log2_n, r, p))
        return aes.decrypt(nonce, sealed[_SEALED_HEADER.size :], header)
    except InvalidTag:
        raise PassphraseError("wrong passphrase, or the key file was modified") from None


def check_key(public: PublicCode, key: Key) -> None:
    """Raise KeyMismatchError unless `key` was made for exactly this public code."""
    if key.true_mask.shape != public.positions.shape or key.code_dim != public.code_dim:
        raise KeyMismatchError(
            f"key is for codes of shape {tuple(key.true_mask.shape)} (code_dim {key.code_dim}), "
            f"the public code has {tuple(public.positions.shape)} (code_dim {public.code_dim})"
        )
    if (key.secret is not None) != public.permuted:
        raise KeyMismatchError("key and public code disagree on the secret permutation")
    if key.fingerprint != public.fingerprint():
        raise KeyMismatchError("key does not belong to this public code (fingerprint mismatch)")


# ---------------------------------------------------------------------------------------------------
# Ambiguate and reveal
# ---------------------------------------------------------------------------------------------------


def default_k_prime(k: int, code_dim: int, ratio: int | None = DEFAULT_K_PRIME_RATIO) -> int:
    """k' for the shipped k'/k ratio (None: every position), capped at code_dim."""
    return code_dim if ratio is None else min(ratio * k, code_dim)


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


def resample_decoy_values(true_values: torch.Tensor, count: int, generator: torch.Generator) -> torch.Tensor:
    """Our decoys: a shrunk smoothed bootstrap of each group's true values in log-magnitude (see module doc).

    true_values (B, L, k) -> decoys (B, L, count); zero true values (if any) are ignored for the fit.
    """
    magnitude = true_values.abs().float()
    present = magnitude > 0
    n = present.sum(-1, keepdim=True).clamp_min(1)
    logs = torch.where(present, magnitude.clamp_min(1e-30).log(), torch.zeros_like(magnitude))
    mean = logs.sum(-1, keepdim=True) / n
    var = (((logs - mean) ** 2) * present).sum(-1, keepdim=True) / (n - 1).clamp_min(1)
    bandwidth = BANDWIDTH * 1.06 * var.sqrt() * n.float() ** -0.2  # a fraction of Silverman's rule of thumb
    shrink = torch.where(var > 0, (1 + bandwidth**2 / var.clamp_min(1e-30)).rsqrt(), torch.ones_like(var))
    # anchors: a uniformly random non-zero true value of the same group (its sign comes along)
    weights = present.float().reshape(-1, true_values.shape[-1])
    weights[weights.sum(-1) == 0] = 1.0
    shape = (*true_values.shape[:-1], count)
    if count == 0:
        return true_values.new_zeros(shape)
    anchors = torch.multinomial(weights, count, replacement=True, generator=generator).reshape(shape)
    noise = torch.randn(shape, generator=generator)
    log_decoy = mean + (logs.gather(-1, anchors) - mean + bandwidth * noise) * shrink
    return true_values.sign().gather(-1, anchors) * log_decoy.exp()


def reference_decoy_values(true_values: torch.Tensor, code_dim: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """The paper's and report's decoys, for contrast only: Gaussian-tail draws times m/k. Broken by design.

    Per group: |decoy| ~ N(0, sigma) conditioned on exceeding the smallest true magnitude (sigma: the RMS
    of the true values), a random sign, then the m/k scaling that makes decoys 2-4x too large.
    """
    k = true_values.shape[-1]
    shape = (*true_values.shape[:-1], count)
    sigma = true_values.float().pow(2).mean(-1, keepdim=True).sqrt().clamp_min(1e-12)
    low = torch.special.ndtr(true_values.abs().amin(-1, keepdim=True) / sigma)
    uniform = low + (1 - low) * torch.rand(shape, generator=generator)
    tail = sigma * torch.special.ndtri(uniform.clamp(max=1 - 1e-7))
    sign = torch.randint(0, 2, shape, generator=generator).float() * 2 - 1
    return sign * tail * (code_dim / k)


def balance_signs(true_values: torch.Tensor, decoy_values: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Re-sign the decoys so that every group publishes floor(k'/2) positive values whenever it can.

    With decoys that copy their anchors' signs, each group's share of positive public values tracks the
    true code's, and that share alone lets a ridge regression recover 4.7 dB above the mean face even
    through the secret permutation (bundled model, k=32, k'=128: 16.28 against 12.68 dB balanced; sae.cli.privacy_eval). A fixed count
    carries no information about the image; the price is that a sign is then weak evidence of being true.
    """
    count = decoy_values.shape[-1]
    if count == 0:
        return decoy_values
    positives = (true_values > 0).sum(-1, keepdim=True)
    needed = ((true_values.shape[-1] + count) // 2 - positives).clamp(0, count)
    rank = torch.rand(decoy_values.shape, generator=generator).argsort(-1).argsort(-1)
    return torch.where(rank < needed, decoy_values.abs(), -decoy_values.abs())


def support_frequency(sparse_codes: torch.Tensor) -> torch.Tensor:
    """(L, m): how often each position is non-zero over a batch; pass it as `position_weights`."""
    return (sparse_codes != 0).float().mean(0)


def _decoy_positions(support: torch.Tensor, count: int, generator: torch.Generator, weights: torch.Tensor | None) -> torch.Tensor:
    """(B, L, count) distinct off-support positions, uniform or proportional to `weights` (Gumbel top-k)."""
    noise = torch.rand(support.shape, generator=generator)
    if weights is None:
        scores = noise
    else:
        weights = weights.float().expand(support.shape)
        floor = weights.amax(-1, keepdim=True).clamp_min(1e-30) * 1e-6  # every position stays possible
        scores = weights.clamp_min(0).maximum(floor).log() - (-noise.clamp_min(1e-20).log()).log()
    scores = scores.masked_fill(support, -math.inf)
    return torch.topk(scores, count, dim=-1).indices


def ambiguate(
    sparse_codes: torch.Tensor,
    k_prime: int,
    generator: torch.Generator,
    *,
    decoys: str = "resample",
    value_bits: int = 16,
    permute: bool = False,
    secret: bytes | None = None,
    position_weights: torch.Tensor | None = None,
    k: int | None = None,
    signs: str = "anchor",
) -> tuple[PublicCode, Key]:
    """Publish each group's k true non-zeros among k' - k decoys; return the public code and its key.

    sparse_codes (B, L, m) with k non-zeros per group (k is inferred unless given). `decoys` is "resample"
    (ours) or "reference" (the paper's broken m/k-scaled decoys, for contrast). `position_weights` (L, m)
    or (m,) draws decoy positions in proportion to it instead of uniformly. With `permute`, positions are
    published through a secret permutation (a 32-byte `secret`, drawn from the generator when None).
    `signs` is "anchor" (a decoy keeps the sign of the true value it was resampled from) or "balanced"
    (each group publishes as many positive as negative values; see `balance_signs`).
    """
    if decoys not in ("resample", "reference"):
        raise ValueError(f"decoys must be 'resample' or 'reference', got {decoys!r}")
    if signs not in ("anchor", "balanced"):
        raise ValueError(f"signs must be 'anchor' or 'balanced', got {signs!r}")
    num_images, num_groups, code_dim = sparse_codes.shape
    true_positions = true_support(sparse_codes, k)
    k = true_positions.shape[-1]
    if not k <= k_prime <= code_dim:
        raise ValueError(f"need k <= k' <= code_dim, got k={k}, k'={k_prime}, code_dim={code_dim}")
    true_values = sparse_codes.float().gather(-1, true_positions)
    support = torch.zeros(sparse_codes.shape, dtype=torch.bool).scatter(-1, true_positions, True)
    decoy_positions = _decoy_positions(support, k_prime - k, generator, position_weights)
    if decoys == "resample":
        decoy_values = resample_decoy_values(true_values, k_prime - k, generator)
    else:
        decoy_values = reference_decoy_values(true_values, code_dim, k_prime - k, generator)
    if signs == "balanced":
        decoy_values = balance_signs(true_values, decoy_values, generator)
    positions = torch.cat([true_positions, decoy_positions], -1)
    values = torch.cat([true_values, decoy_values], -1)
    is_true = torch.arange(k_prime).expand_as(positions) < k
    if permute:
        secret = secret if secret is not None else _draw_secret(generator)
        positions = secret_permutation(secret, num_images, num_groups, code_dim).gather(-1, positions)
    elif secret is not None:
        raise ValueError("a secret only makes sense with permute=True")
    positions, order = torch.sort(positions, dim=-1)  # ascending: the order must not betray the true entries
    values, scales = quantize_values(values.gather(-1, order), value_bits)
    public = PublicCode(positions, values, code_dim, value_bits, scales, permute)
    key = Key(is_true.gather(-1, order), code_dim, public.fingerprint(), secret if permute else None)
    return public, key


def to_model_coordinates(public_dense: torch.Tensor, key: Key) -> torch.Tensor:
    """Undo the secret permutation of a (B, L, m) public-coordinate tensor (identity when there is none)."""
    if key.secret is None:
        return public_dense
    images, groups, code_dim = public_dense.shape
    return public_dense.gather(-1, secret_permutation(key.secret, images, groups, code_dim))


def reveal(public: PublicCode, key: Key, fraction: float = 1.0) -> torch.Tensor:
    """The key holder's sparse code (B, L, m) in the model's coordinates.

    fraction < 1 keeps the largest `kept_count(key.k, fraction)` true entries per group (see `Key.restrict`).
    With 32-bit values, or 16-bit values that float16 represents, fraction 1 gives back the sparse code exactly.
    Raises KeyMismatchError for a key made for another public code.
    """
    check_key(public, key)
    if fraction != 1.0:
        key = key.restrict(public, fraction)
    kept = torch.where(key.true_mask, public.values, torch.zeros_like(public.values))
    shape = (public.num_images, public.num_groups, public.code_dim)
    return to_model_coordinates(public.values.new_zeros(shape).scatter(-1, public.positions, kept), key)
