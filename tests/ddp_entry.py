"""What `torchrun` runs in tests/test_distributed.py: `sae.cli.train.main` unchanged, plus a record per rank.

Each rank saves, under $SAE_TEST_RECORD, its final weights and, for every step, the k it trained at and a checksum of
each face in its batch, so the test can compare the ranks from outside (the run directory stays rank 0's alone).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
from torch import nn

from sae.cli import distributed, train

captured: dict[str, nn.Module] = {}
steps: list[tuple[int, list[int]]] = []
_wrap, _loss = distributed.wrap, train.reconstruction_loss


def recording_wrap(model: nn.Module, current: distributed.Context, device: torch.device) -> nn.Module:
    captured["model"] = model
    return _wrap(model, current, device)


def recording_loss(model: nn.Module, x: torch.Tensor, k: int, kind: str = "mse") -> torch.Tensor:
    steps.append((k, (x * 255).round().flatten(1).sum(1).long().tolist()))  # a flip keeps a face's checksum
    return _loss(model, x, k, kind)


if __name__ == "__main__":
    distributed.wrap, train.reconstruction_loss = recording_wrap, recording_loss
    train.main(sys.argv[1:])
    record = Path(os.environ["SAE_TEST_RECORD"])
    record.mkdir(parents=True, exist_ok=True)
    state = {name: tensor.detach().cpu() for name, tensor in captured["model"].state_dict().items()}
    torch.save({"weights": state, "steps": steps, "world_size": int(os.environ["WORLD_SIZE"])}, record / f"rank{os.environ['RANK']}.pt")
