"""Draws (sae.privacy.randomness): the same torch calls as before with a generator, the OS's source without one."""

from __future__ import annotations

import torch

from sae.privacy.randomness import Draws


def test_a_seeded_source_makes_the_same_torch_draws():
    draws, generator = Draws(torch.Generator().manual_seed(4)), torch.Generator().manual_seed(4)
    assert torch.equal(draws.rand((3, 5)), torch.rand((3, 5), generator=generator))
    assert torch.equal(draws.randn((7,)), torch.randn((7,), generator=generator))
    assert torch.equal(draws.randint(-3, 4, (9,)), torch.randint(-3, 4, (9,), generator=generator))
    weights = torch.tensor([[0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    assert torch.equal(draws.multinomial(weights, 6), torch.multinomial(weights, 6, replacement=True, generator=generator))
    assert Draws(torch.Generator().manual_seed(0)).bytes(8).hex() == "ac2f75c043fbc367"


def test_the_secure_source_has_the_right_ranges_and_distributions():
    draws = Draws.secure()
    assert draws.generator is None and len(draws.bytes(32)) == 32 and draws.bytes(32) != draws.bytes(32)
    uniform = draws.rand((20000,))
    assert uniform.dtype == torch.float32 and 0 <= uniform.min() and uniform.max() < 1 and abs(uniform.mean() - 0.5) < 0.02
    normal = draws.randn((20000,))
    assert abs(normal.mean()) < 0.05 and abs(normal.std() - 1) < 0.05 and torch.isfinite(normal).all()
    integers = draws.randint(-127, 128, (50000,))
    assert integers.min() == -127 and integers.max() == 127 and abs(integers.float().mean()) < 2
    counts = torch.bincount(draws.multinomial(torch.tensor([[0.0, 1.0, 3.0]]), 8000)[0], minlength=3)
    assert counts[0] == 0 and 0.7 < counts[2] / counts.sum() < 0.8  # 3/4 of the draws, none of weight 0
