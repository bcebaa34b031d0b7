"""torchrun integration shared by the trainers and by batch inference: join the process group that torchrun
describes in the environment (gloo on CPU, NCCL on GPU), or stand alone as rank 0 of 1."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.distributed as dist

from multimodal.errors import UsageError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("device=cuda was asked for, but no CUDA device is available")
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device(choice)


def init_distributed(device_choice: str = "auto") -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); a plain run is rank 0 of 1."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(device_choice, local_rank)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return DistInfo(rank, world_size, local_rank, device)


def current(device: torch.device) -> DistInfo:
    """This process's place in an already set-up process group (rank 0 of 1 without one)."""
    if not dist.is_initialized():
        return DistInfo(device=device)
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")), device)


@contextlib.contextmanager
def session(device_choice: str = "auto") -> Iterator[DistInfo]:
    """Join (under torchrun) or stand alone for the duration; only the group created here is torn down here."""
    created = not dist.is_initialized() and int(os.environ.get("WORLD_SIZE", "1")) > 1
    info = init_distributed(device_choice)
    try:
        yield info
    finally:
        if created:
            cleanup()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
