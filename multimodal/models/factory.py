"""`create_model`, `list_models`, `list_pretrained`, `from_pretrained`: the registry of architectures and weights.

    create_model("small")                 an untrained architecture from multimodal/model_configs/
    from_pretrained("builtin")            the shipped default, from the installed assets (offline)
    from_pretrained("runs/x/final")       a folder written by save_pretrained
    from_pretrained("ViT-B-32:openai")    any open_clip ARCH:TAG, through open_clip's own download
"""

from __future__ import annotations

import contextlib
import copy
import io
from pathlib import Path

import torch

from multimodal.models.clip import CLIPModel
from multimodal.models.config import ModelConfig, get_config, list_configs
from multimodal.models.towers import load_image_tower, lock_towers, resolve, resolve_model_cfg

# name -> folder under the installed assets (multimodal_assets); every entry loads offline
PRETRAINED = {"builtin": "builtin/pipeline/clip"}  # the CLIP of the shipped pipeline: one copy serves both


def list_models() -> list[str]:
    """Architectures that `create_model` builds."""
    return list(list_configs())


def list_pretrained() -> list[str]:
    """Names of shipped weights that `from_pretrained` loads offline (only those present in this install)."""
    return [name for name in PRETRAINED if _asset_dir(name).is_dir()]


def _asset_dir(name: str) -> Path:
    from multimodal_assets import ASSETS_DIR

    return ASSETS_DIR / PRETRAINED[name]


@contextlib.contextmanager
def _quiet_transformers():
    """transformers warns about the unused BERT pooler and open_clip prints lock messages; neither helps a user."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        hf_logging.set_verbosity(level)
        hf_logging.enable_progress_bar()


def make_tokenizer(spec: dict):
    """-> callable: list[str] -> LongTensor [B, context_length]"""
    import open_clip

    context_length = int(spec.get("context_length", 77))
    kind = spec.get("type", "clip")
    if kind == "clip":
        return open_clip.SimpleTokenizer(context_length=context_length)
    if kind == "hf":
        return open_clip.tokenizer.HFTokenizer(resolve(spec["name"]), context_length=context_length)
    if kind == "open_clip":
        return open_clip.get_tokenizer(spec["name"], context_length=context_length)
    raise ValueError(f"unknown tokenizer type {kind!r}")


def create_model(name_or_config: str | ModelConfig, *, pretrained_towers: bool = True,
                 device: str | torch.device = "cpu", **model_overrides) -> CLIPModel:
    """Build an architecture. Packaged pretrained towers are loaded (and locked as the config says) unless
    `pretrained_towers=False`. `model_overrides` update the open_clip `model_cfg` (e.g. init_logit_bias=-10)."""
    from open_clip.model import CLIP, CustomTextCLIP

    config = get_config(name_or_config) if isinstance(name_or_config, str) else copy.deepcopy(name_or_config)
    config.model_cfg.update(model_overrides)
    oc_cfg = resolve_model_cfg(config.model_cfg)
    text_cfg = oc_cfg["text_cfg"]
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = pretrained_towers and bool(config.towers.get("text", {}).get("init"))
    custom_text = oc_cfg.pop("custom_text", False) or hf_text
    with _quiet_transformers():
        model = (CustomTextCLIP if custom_text else CLIP)(**oc_cfg)  # open_clip's classes, built from our config
        image_init = config.towers.get("image", {}).get("init")
        if pretrained_towers and image_init:
            load_image_tower(model.visual, image_init)
        lock_towers(model, config.towers)
    return CLIPModel(config, model, make_tokenizer(config.tokenizer)).to(device)


def from_pretrained(name_or_path: str | Path, *, allow_pickle: bool = False,
                    device: str | torch.device = "cpu") -> CLIPModel:
    from multimodal.models.io import load_open_clip_pretrained, load_pretrained_dir

    text = str(name_or_path)
    if text in PRETRAINED:
        folder = _asset_dir(text)
        if not folder.is_dir():
            raise FileNotFoundError(f"the shipped model {text!r} is not in this install ({folder} is missing)")
        return load_pretrained_dir(folder, allow_pickle=allow_pickle, device=device)
    if Path(text).is_dir():
        return load_pretrained_dir(Path(text), allow_pickle=allow_pickle, device=device)
    if text in list_configs():
        raise ValueError(f"{text!r} is an architecture without weights: use create_model({text!r})")
    if ":" in text:
        return load_open_clip_pretrained(text, allow_pickle=allow_pickle, device=device)
    raise FileNotFoundError(f"{text!r} is not a shipped model ({list(PRETRAINED)}), a saved model folder, "
                            "or an open_clip ARCH:TAG name")
