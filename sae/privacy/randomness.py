"""Where a share's random draws come from: a seeded torch generator (reproducible figures) or the OS (real shares).

Every draw `ambiguate` makes (decoy positions and values, signs, keyed decoy levels, secrets) goes through `Draws`.
With a `torch.Generator` it makes plain torch calls in a fixed order, so a seeded evaluation is reproducible bit for
bit. A real share must not use one: PyTorch's CPU generator keeps only 32 bits of its seed, so a holder
of a restricted key, who can read some decoys, could recover the seed by search and locate the entries its key does
not grant. `Draws.secure()` takes every draw from `os.urandom` instead (a cryptographic source): uniform floats from
53 random bits, normals by the inverse normal CDF, integers and categorical choices from uniforms.
"""

from __future__ import annotations

import os

import numpy as np
import torch


class Draws:
    """Random tensors from a seeded generator, or (generator None) from the OS's cryptographic source."""

    def __init__(self, generator: torch.Generator | None):
        self.generator = generator

    @classmethod
    def secure(cls) -> Draws:
        """Draws from the OS's cryptographic source: what a real share uses."""
        return cls(None)

    def _uniform(self, shape: tuple[int, ...]) -> torch.Tensor:
        """Uniform float32 in [0, 1) from 53 OS-random bits each, rounded down so 1 is never reached."""
        count = int(np.prod(shape, dtype=np.int64))
        bits = np.frombuffer(os.urandom(8 * count), dtype="<u8") >> np.uint64(11)
        values = np.minimum(bits.astype(np.float64) / float(1 << 53), np.nextafter(np.float32(1), np.float32(0)))
        return torch.from_numpy(values.astype(np.float32).reshape(shape))

    def rand(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.generator is not None:
            return torch.rand(shape, generator=self.generator)
        return self._uniform(tuple(shape))

    def randn(self, shape: tuple[int, ...]) -> torch.Tensor:
        if self.generator is not None:
            return torch.randn(shape, generator=self.generator)
        uniform = self._uniform(tuple(shape)).double().clamp(1e-300, 1 - 1e-16)
        return torch.special.ndtri(uniform).float()

    def randint(self, low: int, high: int, shape: tuple[int, ...]) -> torch.Tensor:
        """Integers in [low, high)."""
        if self.generator is not None:
            return torch.randint(low, high, shape, generator=self.generator)
        return low + (self._uniform(tuple(shape)).double() * (high - low)).floor().long().clamp(max=high - low - 1)

    def multinomial(self, weights: torch.Tensor, count: int) -> torch.Tensor:
        """(rows, count) indices drawn with replacement in proportion to each row of `weights` (rows, n)."""
        if self.generator is not None:
            return torch.multinomial(weights, count, replacement=True, generator=self.generator)
        cumulative = weights.double().cumsum(-1)
        targets = self._uniform((weights.shape[0], count)).double() * cumulative[:, -1:]
        return torch.searchsorted(cumulative, targets, right=True).clamp(max=weights.shape[-1] - 1)

    def bytes(self, count: int) -> bytes:
        if self.generator is not None:
            return bytes(torch.randint(0, 256, (count,), generator=self.generator, dtype=torch.uint8).tolist())
        return os.urandom(count)
