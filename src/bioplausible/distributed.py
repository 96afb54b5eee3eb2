"""Data-parallel training with ``torch.distributed``, for every rule alike.

Launch with ``torchrun --nproc_per_node N -m bioplausible train ...`` (gloo on CPUs, NCCL on GPUs). Each process
takes its share of every global batch (``--batch-size`` is the global size); after ``rule.step`` has filled
``.grad`` on its share, the gradients are averaged across processes, then every process applies the same
``optimizer.step``. Because the rule contract ends at ``.grad``, no rule needs to know it runs in parallel, with
three exceptions the rule asks this object for, so that N processes compute exactly what one process on the whole
batch computes:

* a rule that trains state of its own (target propagation's inverses) averages those gradients before its own
  optimizer step (``average``);
* per-example state (EP's persistent states) is gathered from every process, so every copy holds all of it
  (``gather``);
* per-example random numbers (TP's noise) are drawn for the whole global batch in every process, each keeping its
  rows (``share``), so the random streams stay identical across processes and equal to one process's;
* a stopping test on a batch statistic (EP's settling tolerance: max |Δs| over the batch) is taken over the whole
  global batch (``stopping_together`` around the settling, ``settled`` inside it), so every process stops at the
  step one process on the whole batch stops at.

With a mean-reduced loss and equal shares, the averaged gradient is exactly the gradient of the whole batch.
"""

from __future__ import annotations

import contextvars
import math
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
import torch.distributed as torch_dist
from torch import nn


@dataclass
class Distributed:
    """This process's place in the job; ``world_size`` 1 means a plain single-process run."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    global_batch: int = field(default=0, compare=False)  # rows of the current global batch (set by the engine)

    @property
    def is_main(self) -> bool:
        """Only the main process writes the run folder and prints."""
        return self.rank == 0

    def average(self, params: nn.Module | Iterable[torch.Tensor]) -> None:
        """All-reduce every ``.grad`` as one flat buffer (one collective), divided by the world size."""
        if self.world_size == 1:
            return
        params = params.parameters() if isinstance(params, nn.Module) else params
        grads = [p.grad for p in params if p.grad is not None]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads])
        torch_dist.all_reduce(flat)
        flat /= self.world_size
        for g, part in zip(grads, flat.split([g.numel() for g in grads])):
            g.copy_(part.view_as(g))

    average_gradients = average  # the engine's name for it

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of a tensor over all processes (every process gets it)."""
        if self.world_size == 1:
            return value
        value = value.detach().clone()
        torch_dist.all_reduce(value)
        return value / self.world_size

    def maximum(self, value: torch.Tensor) -> torch.Tensor:
        """The elementwise maximum of a tensor over all processes (every process gets it); a NaN anywhere wins, as
        +inf (a MAX all-reduce would keep NaN only where rank 0 holds it)."""
        if self.world_size == 1:
            return value
        value = value.detach().nan_to_num(nan=math.inf, posinf=math.inf, neginf=-math.inf)
        torch_dist.all_reduce(value, op=torch_dist.ReduceOp.MAX)
        return value

    def shares(self, rows: int) -> list[int]:
        """How many rows of a global batch of ``rows`` each process takes (``tensor_split``'s sizes)."""
        base, extra = divmod(rows, self.world_size)
        return [base + (r < extra) for r in range(self.world_size)]

    def share(self, tensor: torch.Tensor) -> torch.Tensor:
        """This process's rows of a tensor built for the whole global batch."""
        if self.world_size == 1:
            return tensor
        sizes = self.shares(len(tensor))
        start = sum(sizes[: self.rank])
        return tensor[start : start + sizes[self.rank]]

    def global_rows(self, local_rows: int) -> int:
        """Rows of the global batch this process's ``local_rows`` belong to."""
        return self.global_batch if self.world_size > 1 and self.global_batch else local_rows

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's rows of ``tensor`` (shares of one global batch), concatenated in rank order."""
        if self.world_size == 1:
            return tensor
        sizes = self.shares(self.global_rows(len(tensor)))
        padded = tensor.new_zeros(max(sizes), *tensor.shape[1:])
        padded[: len(tensor)] = tensor
        parts = [torch.empty_like(padded) for _ in range(self.world_size)]
        torch_dist.all_gather(parts, padded)
        return torch.cat([part[:n] for part, n in zip(parts, sizes)])

    @contextmanager
    def stopping_together(self) -> Iterator[None]:
        """Within the block, :func:`settled` compares the largest residual over all processes."""
        token = _STOPPING.set(self)
        try:
            yield
        finally:
            _STOPPING.reset(token)

    def barrier(self) -> None:
        if self.world_size > 1:
            torch_dist.barrier()


SINGLE = Distributed()


def is_main_process() -> bool:
    """Whether this process is the main one of the job torchrun describes in the environment (or a plain run)."""
    return int(os.environ.get("RANK", "0")) == 0


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


_STOPPING: contextvars.ContextVar[Distributed | None] = contextvars.ContextVar("stopping_together", default=None)


def settled(residual: torch.Tensor, tolerance: float) -> bool:
    """Whether an iteration has settled: ``tolerance > 0`` and the residual (a 0-d max over the batch) is below it;
    inside :meth:`Distributed.stopping_together` the max over every process's batch share, so data-parallel
    processes stop together, where one process on the whole batch stops."""
    if tolerance <= 0:
        return False
    dist = _STOPPING.get()
    if dist is not None and dist.world_size > 1:
        residual = dist.maximum(residual)
    return residual.item() < tolerance
