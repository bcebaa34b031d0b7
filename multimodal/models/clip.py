"""`CLIPModel`: open_clip's image/text towers together with their config, tokenizer and preprocessing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from multimodal.models.config import ModelConfig


class CLIPModel(nn.Module):
    """A contrastive image/text encoder pair.

    `self.model` is the open_clip module (`CLIP` or `CustomTextCLIP`); this wrapper adds what must travel
    with the weights: the config, the tokenizer and the image preprocessing.
    """

    def __init__(self, config: ModelConfig, model: nn.Module, tokenizer: Callable[[Sequence[str]], torch.Tensor]):
        super().__init__()
        self.config = config
        self.model = model
        self.tokenizer = tokenizer

    # --- encoders ---------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images [B, 3, H, W] (preprocessed) -> [B, D]"""
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """tokens [B, L] -> [B, D]"""
        return self.model.encode_text(tokens, normalize=normalize)

    def forward(self, images: torch.Tensor | None = None, tokens: torch.Tensor | None = None) -> dict:
        """-> {"image_features": [B, D], "text_features": [B, D], "logit_scale": [], "logit_bias": [] (SigLIP)}"""
        out = {"logit_scale": self.model.logit_scale.exp()}
        if images is not None:
            out["image_features"] = self.encode_image(images)
        if tokens is not None:
            out["text_features"] = self.encode_text(tokens)
        if getattr(self.model, "logit_bias", None) is not None:
            out["logit_bias"] = self.model.logit_bias
        return out

    def tokenize(self, texts: str | Sequence[str]) -> torch.Tensor:
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts))

    @torch.inference_mode()
    def similarity(self, images: torch.Tensor, texts: Sequence[str]) -> torch.Tensor:
        """Cosine similarities [B_images, N_texts]."""
        return self.encode_image(images) @ self.encode_text(self.tokenize(texts)).T

    # --- preprocessing ----------------------------------------------------------------------------
    @property
    def image_size(self) -> int:
        return self.config.image_size

    def image_transform(self, train: bool = False, aug_cfg: dict | None = None) -> Callable:
        """PIL image -> [3, H, W] tensor, as this model was trained (open_clip's transform)."""
        from open_clip.transform import PreprocessCfg, image_transform_v2

        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.config.preprocess_cfg.items()}
        cfg = PreprocessCfg(**fields)
        return image_transform_v2(cfg, is_train=train, aug_cfg=aug_cfg)

    @property
    def preprocess(self) -> Callable:
        if not hasattr(self, "_preprocess"):
            self._preprocess = self.image_transform(train=False)
        return self._preprocess

    # --- persistence --------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, *, include_packaged_towers: bool = False) -> Path:
        from multimodal.models.io import save_pretrained

        return save_pretrained(self, directory, include_packaged_towers=include_packaged_towers)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, allow_pickle: bool = False,
                        device: str | torch.device = "cpu") -> CLIPModel:
        from multimodal.models.factory import from_pretrained

        return from_pretrained(name_or_path, allow_pickle=allow_pickle, device=device)

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    def extra_repr(self) -> str:
        return f"name={self.config.name!r}, embed_dim={self.config.embed_dim}, image_size={self.image_size}"


def clip_logits(image_features: torch.Tensor, text_features: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """[B, D] x [N, D] -> [B, N] scaled cosine logits."""
    return logit_scale * F.normalize(image_features, dim=-1) @ F.normalize(text_features, dim=-1).T
