"""The model's preprocessing split for the reader: PIL steps in the workers, ToTensor + Normalize once per batch."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch


def split_transform(transform: Callable) -> tuple[Callable, torch.Tensor | None, torch.Tensor | None]:
    """Split a torchvision `Compose([... PIL steps ..., ToTensor, Normalize])` into its PIL part and (mean, std).

    The reader then turns each image into a uint8 tensor, and converts + normalizes once per batch in
    the main process (or on the GPU): the same numbers as the per-sample transform (same operations,
    same order), with a quarter of the bytes between processes and no float copy per image. Any
    other transform is applied per sample, unchanged.
    """
    steps = getattr(transform, "transforms", None)
    if (not steps or len(steps) < 2 or type(steps[-1]).__name__ != "Normalize"
            or type(steps[-2]).__name__ not in ("ToTensor", "MaybeToTensor")):
        return transform, None, None
    from torchvision.transforms import Compose

    mean = torch.tensor(steps[-1].mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(steps[-1].std, dtype=torch.float32).view(1, -1, 1, 1)
    return Compose(steps[:-2]), mean, std


def to_uint8_tensor(image) -> torch.Tensor:
    """PIL RGB image -> [3, H, W] uint8 (a view of the decoded pixels, no float copy)."""
    return torch.from_numpy(np.array(image)).permute(2, 0, 1)
