"""DDP for the trainers; joining the process group lives in the library (`multimodal.distributed`)."""

from __future__ import annotations

import torch
import torch.distributed as dist

from multimodal.distributed import DistInfo


def wrap_ddp(model: torch.nn.Module, info: DistInfo) -> torch.nn.Module:
    """The module to run forward passes through: DDP under torchrun (gradients all-reduced), else the model."""
    if not info.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[info.device] if info.device.type == "cuda" else None)


def all_reduce_mean(value: float, info: DistInfo) -> float:
    if not info.distributed:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=info.device)
    dist.all_reduce(t)
    return (t / info.world_size).item()
