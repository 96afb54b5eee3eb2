"""Data-parallel training with ``torch.distributed``, for every rule alike.

Launch with ``torchrun --nproc_per_node N -m bioplausible.cli train ...`` (gloo on CPUs, NCCL on GPUs). Each
process takes its share of every global batch (``--batch-size`` is the global size); after ``rule.step`` has
filled ``.grad`` on its share, the gradients are averaged across processes, then every process applies the same
``optimizer.step``. Because the rule contract ends at ``.grad``, no rule needs to know it runs in parallel.
With a mean-reduced loss and equal shares, the averaged gradient is exactly the gradient of the whole batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """This process's place in the job; ``world_size`` 1 means a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Only the main process writes the run folder and prints."""
        return self.rank == 0

    def average_gradients(self, model: nn.Module) -> None:
        """All-reduce every ``.grad`` as one flat buffer (one collective per step), divided by the world size."""
        if self.world_size == 1:
            return
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch_dist.all_reduce(flat)
        flat /= self.world_size
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over all processes (every process gets it)."""
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        torch_dist.all_reduce(value)
        return value / self.world_size

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()


SINGLE = Distributed()


def init_distributed(device: str) -> Distributed:
    """Join the process group torchrun describes in the environment; a plain run returns ``SINGLE``."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size == 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
    if not torch_dist.is_initialized():
        torch_dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return Distributed(rank, world_size, local_rank)
