"""DDP set-up from torchrun's environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``)."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place: ``rank`` of ``world`` processes; ``local_rank`` picks the GPU."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init(device: torch.device) -> tuple[Dist, torch.device]:
    """Join the process group when started by torchrun (gloo on CPU, nccl on CUDA)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), device
    info = Dist(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        # rank 0 validates while the others wait: allow long validations
        dist.init_process_group(backend, rank=info.rank, world_size=world, timeout=datetime.timedelta(hours=4))
    return info, device


def shutdown(info: Dist) -> None:
    if info.world > 1 and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: Dist) -> None:
    if info.world > 1:
        dist.barrier()


def mean(value: torch.Tensor, info: Dist) -> torch.Tensor:
    """Average a tensor over ranks."""
    if info.world > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= info.world
    return value


def broadcast(value: float, info: Dist, device: torch.device) -> float:
    """Rank 0's ``value`` on every rank."""
    if info.world == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.broadcast(t, 0)
    return float(t.item())
