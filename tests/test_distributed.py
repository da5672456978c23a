"""Data-parallel training: two gloo processes under torchrun train one model on disjoint shards at the same k."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from sae.cli import distributed

REPO = Path(__file__).resolve().parents[1]
ENTRY = Path(__file__).with_name("ddp_entry.py")
RUN_FILES = {"best", "last.pt", "history.csv", "history.html", "train_config.json"}

needs_gloo = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="torch.distributed with gloo unavailable")


def torchrun(args: list[str], record: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"PYTHONPATH": str(REPO), "SAE_TEST_RECORD": str(record), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(ENTRY), *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_single_process_context_touches_nothing():
    current = distributed.context()
    assert not current.active and current.is_main
    order = torch.randperm(10)
    assert torch.equal(distributed.shard(order, current), order)
    assert distributed.mean(3.5, current, torch.device("cpu")) == 3.5
    model = torch.nn.Linear(2, 2)
    assert distributed.wrap(model, current, torch.device("cpu")) is model


def test_shards_partition_the_permutation():
    order = torch.randperm(13)
    shards = [distributed.shard(order, distributed.Context(rank, 3)) for rank in range(3)]
    assert sorted(torch.cat(shards).tolist()) == list(range(13))
    assert distributed.device_for("cuda", distributed.Context(1, 2, local_rank=1)) == torch.device("cuda", 1)
    assert distributed.device_for("cpu", distributed.Context(1, 2, local_rank=1)) == torch.device("cpu")


@needs_gloo
def test_two_processes_train_one_model_and_write_once(fake_celeba, tmp_path):
    out, record = tmp_path / "run", tmp_path / "record"
    args = ["--data", str(fake_celeba), "--out", str(out), "--preset", "tiny", "--batch-size", "4", "--threads", "1"]
    args += ["--cache-dir", str(tmp_path / "cache"), "--device", "cpu"]
    result = torchrun(args + ["--epochs", "2"], record)

    ranks = [torch.load(record / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert all(r["world_size"] == 2 for r in ranks)
    for name, tensor in ranks[0]["weights"].items():
        assert torch.equal(tensor, ranks[1]["weights"][name]), name
    saved = torch.load(out / "last.pt", weights_only=False)["model"]
    assert all(torch.equal(saved[name].cpu(), tensor) for name, tensor in ranks[0]["weights"].items())

    # 24 training faces, 2 ranks x batches of 4: 3 steps an epoch, the same k on both ranks, disjoint faces.
    steps = [r["steps"] for r in ranks]
    assert len(steps[0]) == len(steps[1]) == 6
    assert [k for k, _ in steps[0]] == [k for k, _ in steps[1]]
    for epoch in range(2):
        faces = [[face for _, batch in s[3 * epoch : 3 * epoch + 3] for face in batch] for s in steps]
        assert len(set(faces[0])) == len(set(faces[1])) == 12
        assert not set(faces[0]) & set(faces[1])

    # One set of results: rank 0's files, two epochs in the history, one "best checkpoint" line.
    assert {p.name for p in out.iterdir()} == RUN_FILES | {"samples_epoch001.png", "samples_epoch002.png"}
    assert len((out / "history.csv").read_text().splitlines()) == 3
    assert result.stdout.count("best checkpoint:") == 1 and "2 processes" in result.stdout

    torchrun(args + ["--epochs", "3"], record)  # resume: both ranks load last.pt and go on in step
    resumed = [torch.load(record / f"rank{r}.pt", weights_only=False) for r in range(2)]
    assert [k for k, _ in resumed[0]["steps"]] == [k for k, _ in resumed[1]["steps"]] and len(resumed[0]["steps"]) == 3
    assert all(torch.equal(t, resumed[1]["weights"][n]) for n, t in resumed[0]["weights"].items())
    assert len((out / "history.csv").read_text().splitlines()) == 4
