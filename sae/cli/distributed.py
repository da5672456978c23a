"""Data-parallel training across the processes `torchrun` starts; nothing at all in a plain `python -m sae.cli.train`.

    torchrun --standalone --nproc_per_node N -m sae.cli.train --data DIR --out runs/NAME

torchrun puts RANK, WORLD_SIZE, LOCAL_RANK and a rendezvous address in each process's environment. Only then is a
process group created (NCCL for CUDA, gloo for CPU), so single-process training never touches torch.distributed.

Why the ranks agree without exchanging anything but gradients: each rank holds the whole split in memory and the
same random generator, and every rank draws the same things from it in the same order (the epoch's permutation, the
flip, k). So all ranks train each step at the same k, and each takes its own stride of the same permutation as its
shard: different faces per rank, every face once per epoch. DDP averages the gradients, so every rank applies the
same update to the same weights. Rank 0's generator state is broadcast at the start of each epoch, so any draw that
only rank 0 makes (now or in a later change) cannot leave the ranks on different k.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

_TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# How long a rank waits at a collective. NCCL's default is 10 minutes; the others wait this long while rank 0 first
# decodes a split (all of CelebA: ~200k JPEGs, minutes on one core, longer from a slow disk).
WAIT = timedelta(minutes=60)


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank 0 of 1 unless a process group is running."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 validates and writes every file, so a run directory holds one set of results."""
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """Whether torchrun started this process (it sets the rendezvous variables)."""
    return all(name in os.environ for name in _TORCHRUN_VARIABLES)


def context() -> Context:
    """The running process group as a Context (the single-process one when there is none)."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    return Context(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))


def device_for(device: str, current: Context) -> torch.device:
    """This rank's device: with several processes on CUDA, rank r of a node uses GPU `LOCAL_RANK`."""
    chosen = torch.device(device)
    if chosen.type == "cuda" and current.active and chosen.index is None:
        return torch.device("cuda", current.local_rank)
    return chosen


@contextmanager
def process_group(device: str) -> Iterator[Context]:
    """Join the group torchrun prepared for the lifetime of the block; outside torchrun (or when the caller already
    runs a group) it only reports the current Context and creates or destroys nothing."""
    if not launched_by_torchrun() or (dist.is_available() and dist.is_initialized()):
        yield context()
        return
    cuda = torch.device(device).type == "cuda"
    local_rank = int(os.environ["LOCAL_RANK"])
    if cuda:
        torch.cuda.set_device(local_rank)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        device_id=torch.device("cuda", local_rank) if cuda else None,
        timeout=WAIT,
    )
    try:
        yield context()
        dist.barrier()  # nobody leaves before rank 0 has written its last file
    finally:
        dist.destroy_process_group()


@contextmanager
def main_first(current: Context) -> Iterator[None]:
    """Rank 0 runs the block first, then the others: the first reader of a split decodes and caches it, so the
    others load the cache instead of decoding the same JPEGs N times and writing the same file at once."""
    if current.active and not current.is_main:
        dist.barrier()
    yield
    if current.active and current.is_main:
        dist.barrier()


def shard(order: torch.Tensor, current: Context) -> torch.Tensor:
    """This rank's stride of the epoch's permutation (all of it for a single process)."""
    return order[current.rank :: current.world_size]


def sync_generator(generator: torch.Generator, current: Context) -> None:
    """Give every rank rank 0's generator state, so the ranks draw the same permutation, flips and k."""
    if current.active:
        state = [generator.get_state() if current.is_main else None]
        dist.broadcast_object_list(state, src=0)
        generator.set_state(state[0])


def wrap(model: nn.Module, current: Context, device: torch.device) -> nn.Module:
    """DDP around the model when several processes train it (it broadcasts rank 0's weights and averages the
    gradients); the model itself otherwise."""
    if not current.active:
        return model
    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def mean(value: float, current: Context, device: torch.device) -> float:
    """The mean of a per-rank number over all ranks (the epoch's training loss is every rank's batches)."""
    if not current.active:
        return value
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return total.item() / current.world_size
