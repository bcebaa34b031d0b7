"""Building open_clip's module and tokenizer from a `ModelConfig` (no weights are loaded here)."""

from __future__ import annotations

import contextlib
import io

from torch import nn

from multimodal.errors import UsageError
from multimodal.models.config import ModelConfig
from multimodal.models.towers import resolve, resolve_model_cfg


@contextlib.contextmanager
def quiet_transformers():
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


def build_open_clip(config: ModelConfig) -> nn.Module:
    """open_clip's `CLIP` or `CustomTextCLIP` for this architecture, randomly initialised."""
    from open_clip.model import CLIP, CustomTextCLIP

    oc_cfg = resolve_model_cfg(config.model_cfg)
    text_cfg = oc_cfg["text_cfg"]
    hf_text = "hf_model_name" in text_cfg
    if hf_text:
        text_cfg["hf_model_pretrained"] = False  # pretrained towers are loaded afterwards, from their packages
    custom_text = oc_cfg.pop("custom_text", False) or hf_text
    with quiet_transformers():
        return (CustomTextCLIP if custom_text else CLIP)(**oc_cfg)


def make_tokenizer(spec: dict):
    """-> callable: list[str] -> LongTensor [B, context_length]"""
    import open_clip

    context_length = int(spec.get("context_length", 77))
    kind = spec.get("type", "clip")
    if kind == "clip":
        return open_clip.SimpleTokenizer(context_length=context_length)
    if kind == "hf":
        with quiet_transformers():
            return open_clip.tokenizer.HFTokenizer(resolve(spec["name"]), context_length=context_length)
    if kind == "open_clip":
        return open_clip.get_tokenizer(spec["name"], context_length=context_length)
    raise UsageError(f"unknown tokenizer type {kind!r}; choose clip, hf or open_clip")
