"""Write the golden version 1 share files in this folder with the version 1 implementation (run once, kept in git).

    git show 19c1b6a:sae/privacy.py > /tmp/old_privacy.py
    python tests/data/make_v1_files.py /tmp/old_privacy.py

The files are what the old code wrote for a small fixed code (2 images, 3 groups of 16, k=4, k'=8): a plain 16-bit
share, a permuted 8-bit share with balanced signs, a passphrase-sealed copy of the permuted key, a restricted (half)
key of the permuted share, and what each key reveals. tests/test_formats.py checks the new reader against them.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
PASSPHRASE = "v1 golden passphrase"


def fixed_code() -> torch.Tensor:
    """(2, 3, 16) with 4 float16-exact non-zeros per group."""
    generator = torch.Generator().manual_seed(2024)
    dense = torch.randn(2, 3, 16, generator=generator).half().float()
    keep = dense.abs().topk(4, dim=-1).indices
    return torch.zeros_like(dense).scatter(-1, keep, dense.gather(-1, keep))


def main(old_path: str) -> None:
    spec = importlib.util.spec_from_file_location("old_privacy", old_path)
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_privacy"] = old  # dataclasses look their module up
    spec.loader.exec_module(old)
    assert old.FORMAT_VERSION == 1
    code = fixed_code()
    np.save(HERE / "v1_code.npy", code.numpy())

    public, key = old.ambiguate(code, 8, torch.Generator().manual_seed(7))
    (HERE / "v1_plain.public").write_bytes(public.to_bytes())
    (HERE / "v1_plain.key").write_bytes(key.to_bytes())
    np.save(HERE / "v1_plain_revealed.npy", old.reveal(public, key).numpy())

    public, key = old.ambiguate(code, 8, torch.Generator().manual_seed(8), permute=True, value_bits=8, signs="balanced")
    (HERE / "v1_permuted.public").write_bytes(public.to_bytes())
    (HERE / "v1_permuted.key").write_bytes(key.to_bytes())
    (HERE / "v1_permuted_sealed.key").write_bytes(key.to_bytes(PASSPHRASE, scrypt_log2_n=10))
    (HERE / "v1_permuted_half.key").write_bytes(key.restrict(public, 0.5).to_bytes())
    np.save(HERE / "v1_permuted_revealed.npy", old.reveal(public, key).numpy())
    np.save(HERE / "v1_permuted_half_revealed.npy", old.reveal(public, key, 0.5).numpy())


if __name__ == "__main__":
    main(sys.argv[1])
