"""Data parallel training through PyTorch's own engine: under `torchrun` each process is one
rank of a DistributedDataParallel job (gloo on CPU, nccl on GPU); alone, one rank of one.

Every rank draws the same K and the same global batch at a step (from the same seeded
generators) and trains on its share of it, so N ranks take the same steps as one process with
the whole batch; rank 0 alone writes metrics, checkpoints and results.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler

from vle_kit.errors import VleKitError


def launched() -> bool:
    """True under torchrun (or any launcher that sets WORLD_SIZE)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world() -> int:
    return dist.get_world_size() if active() else 1


def is_main() -> bool:
    return rank() == 0


def start(device: torch.device) -> torch.device:
    """Join the job torchrun started, if any; return this rank's device. Threads are split
    so the ranks on one machine do not oversubscribe its cores."""
    if not launched() or active():
        return device
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // local_world))
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def stop() -> None:
    if active():
        dist.destroy_process_group()


def broadcast(value: Any) -> Any:
    """Rank 0's value, on every rank."""
    if not active():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def any_rank(flag: bool) -> bool:
    """True on every rank if it is true on any (so all ranks take the same decision)."""
    if not active():
        return flag
    t = torch.tensor([float(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX, group=_cpu_group())
    return bool(t.item())


def mean(values: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of a tensor every rank holds (a NaN anywhere is a NaN everywhere)."""
    if not active():
        return values
    values = values.detach().clone()
    dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values / world()


def shard(count: int) -> slice:
    """This rank's contiguous share of `count` items (the shares, in rank order, are all)."""
    per = -(-count // world())
    return slice(min(count, rank() * per), min(count, (rank() + 1) * per))


def gather(tensor: torch.Tensor | None) -> torch.Tensor | None:
    """Concatenate every rank's tensor (rank order) along dim 0, on every rank."""
    if not active():
        return tensor
    parts = [None] * world()
    dist.all_gather_object(parts, None if tensor is None else tensor.cpu(), group=_cpu_group())
    present = [p for p in parts if p is not None]
    return torch.cat(present) if present else None


@functools.cache
def _cpu_group():
    """A gloo group for Python objects and flags, whatever the backend of the main group."""
    return None if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")


class EpochBatches:
    """The indices of this rank's share of the batch at each step: every epoch a new shuffle
    (DistributedSampler, with set_epoch), cut into global batches of `batch`. Rank r's share
    interleaves with the others', so the global batch at a step does not depend on the number
    of ranks, and the order is a function of the step alone (nothing to save for a resume)."""

    def __init__(self, count: int, batch: int, seed: int, ranks: tuple[int, int] | None = None):
        this, size = ranks or (rank(), world())  # (this rank, number of ranks)
        if batch % size:
            raise VleKitError(f"train.batch: {batch} does not split evenly among {size} ranks")
        if count < batch:
            raise VleKitError(f"train.batch: {batch} is more than the {count} training images")
        self.this, self.size = this, size
        self.per_rank, self.steps_per_epoch = batch // size, count // batch
        self.sampler = DistributedSampler(range(count), num_replicas=size, rank=this,
                                          shuffle=True, seed=seed, drop_last=True)
        self.epoch, self.order = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, offset = divmod(step, self.steps_per_epoch)
        if epoch != self.epoch:
            self.sampler.set_epoch(epoch)
            self.epoch, self.order = epoch, torch.tensor(list(self.sampler))
        return self.order[offset * self.per_rank:(offset + 1) * self.per_rank]

    def places(self) -> torch.Tensor:
        """Where this rank's images sit in the step's whole batch (the ranks interleave), so
        what is drawn per image can be drawn for the whole batch and not depend on the ranks."""
        return torch.arange(self.this, self.per_rank * self.size, self.size)
