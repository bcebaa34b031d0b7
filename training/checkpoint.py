"""Atomic checkpoints with exact resume, and the guard that keeps a non-finite model off the disk."""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

import numpy as np
import torch

from multimodal.errors import MissingError

PATTERN = re.compile(r"step-(\d+)\.ckpt$")


def rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [x.tolist() if isinstance(x, np.ndarray) else x for x in np.random.get_state()]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def all_finite(module: torch.nn.Module) -> bool:
    return all(torch.isfinite(p).all() for p in module.parameters())


def save_checkpoint(directory: Path, step: int, state: dict, keep: int) -> Path:
    """Write `step-N.ckpt` through a temporary file and a rename, then delete all but the newest `keep`."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"step-{step:08d}.ckpt"
    tmp = directory / f".{path.name}.{os.getpid()}.tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink()
    return path


def list_checkpoints(directory: Path) -> list[Path]:
    found = [p for p in directory.glob("step-*.ckpt") if PATTERN.search(p.name)]
    return sorted(found, key=lambda p: int(PATTERN.search(p.name).group(1)))


def find_checkpoint(run_dir: Path, resume: str) -> Path | None:
    """'latest' (there must be one), 'auto' (the newest if any, else None: start fresh), or a path."""
    if resume == "auto":
        found = list_checkpoints(run_dir / "checkpoints")
        return found[-1] if found else None
    if resume != "latest":
        path = Path(resume)
        if not path.is_file():
            raise MissingError(f"no checkpoint at {path}")
        return path
    found = list_checkpoints(run_dir / "checkpoints")
    if not found:
        raise MissingError(f"--resume latest: no checkpoint in {run_dir / 'checkpoints'}")
    return found[-1]


def load_checkpoint(path: Path) -> dict:
    # our own checkpoints hold only tensors and plain containers, so the safe loader reads them
    return torch.load(path, map_location="cpu", weights_only=True)
