"""The parts of the text-to-image pipeline besides the CLIP pair (`multimodal.models.CLIPModel`), as diffusers
components: the prior and the denoiser.

    text --CLIP text tower--> text embedding --prior--> image embedding --denoiser + scheduler--> image
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import torch
from diffusers import ConfigMixin, DDPMScheduler, DPMSolverMultistepScheduler, ModelMixin, UNet2DConditionModel
from diffusers.configuration_utils import register_to_config
from torch import nn
from torch.nn import functional as F

from multimodal.errors import UsageError

DECODER_CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs" / "decoder"
# read by this module
OWN_CONFIG_KEYS = ("condition_scale", "condition_mean", "condition_std", "low_res_size", "retrieval_top_k",
                   "retrieval_scale")


class _OwnConfigKeys(logging.Filter):
    """diffusers warns at every load that a UNet's config has keys its __init__ does not take, printing their values
    (two lists of 384 floats for a standardised condition); these keys are ours, so that warning says nothing."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not ("but are not expected" in message and any(f"'{k}'" in message for k in OWN_CONFIG_KEYS))


logging.getLogger("diffusers.configuration_utils").addFilter(_OwnConfigKeys())


class EmbeddingPrior(ModelMixin, ConfigMixin):
    """Maps a CLIP text embedding to the CLIP image embedding of a matching image (DALL-E 2's prior),
    here as a residual MLP trained with a cosine loss: [B, D] -> [B, D], L2-normalized."""

    @register_to_config
    def __init__(self, embed_dim: int = 384, hidden_dim: int = 1024, num_layers: int = 3, dropout: float = 0.1):
        super().__init__()
        self.inp = nn.Linear(embed_dim, hidden_dim)
        self.blocks = nn.ModuleList(nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, hidden_dim),
                                                  nn.GELU(), nn.Dropout(dropout)) for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, embed_dim))

    @classmethod
    def identity(cls, embed_dim: int) -> EmbeddingPrior:
        """A prior that returns the text embedding itself (its residual branch zeroed): GLIDE-style conditioning."""
        prior = cls(embed_dim, 8, 0)
        nn.init.zeros_(prior.out[1].weight)
        nn.init.zeros_(prior.out[1].bias)
        return prior

    def forward(self, text_embeds: torch.Tensor) -> torch.Tensor:
        h = self.inp(text_embeds)  # [B, H]
        for block in self.blocks:
            h = h + block(h)
        return F.normalize(text_embeds + self.out(h), dim=-1)  # a residual on the text embedding itself


def decoder_config(name_or_path: str) -> dict:
    path = Path(name_or_path)
    if not path.is_file():
        path = DECODER_CONFIG_DIR / f"{name_or_path}.json"
    if not path.is_file():
        names = sorted(p.stem for p in DECODER_CONFIG_DIR.glob("*.json"))
        raise UsageError(f"unknown decoder config {name_or_path!r}; choose from {names} or give a JSON file")
    return json.loads(path.read_text())


def create_decoder(name_or_path: str, embed_dim: int) -> tuple[UNet2DConditionModel, DDPMScheduler]:
    """The denoiser (diffusers UNet2DConditionModel) and its training scheduler, conditioned on [B, embed_dim].

    How the embedding enters is the UNet's own config: `class_embed_type: "projection"` (a linear added to the
    timestep embedding), or Kandinsky 2.2's `addition_embed_type: "image"` (linear -> LayerNorm, added to it) with
    `encoder_hid_dim_type: "image_proj"` (LayerNormed context tokens for CrossAttn blocks). The JSON's
    `condition_scale` multiplies the unit-norm embedding before it enters; stored in the UNet's config unless 1.
    `condition_norm: true` standardises each dimension by the training embeddings' mean and std instead, as
    diffusers' `StableUnCLIPImageNormalizer` does (the statistics come from `set_condition_stats`)."""
    config = decoder_config(name_or_path)
    unet_config = {"cross_attention_dim": embed_dim, **config["unet"]}
    if unet_config.get("encoder_hid_dim_type"):
        unet_config["encoder_hid_dim"] = embed_dim
    unet = UNet2DConditionModel(**unet_config, projection_class_embeddings_input_dim=embed_dim)
    if config.get("condition_scale", 1.0) != 1.0:  # stored only when it is not the default
        unet.register_to_config(condition_scale=float(config["condition_scale"]))
    if config.get("condition_norm"):
        unet.register_to_config(condition_mean=[0.0] * embed_dim, condition_std=[1.0] * embed_dim)
    if config.get("low_res_size"):  # an upsampler: in_channels = its noisy image + the low-res image, upscaled
        unet.register_to_config(low_res_size=int(config["low_res_size"]))
    if config.get("retrieval_top_k"):  # in_channels = its noisy image + a retrieved neighbour (retrieval.py)
        unet.register_to_config(retrieval_top_k=int(config["retrieval_top_k"]))
        if config.get("retrieval_scale", 1.0) != 1.0:
            unet.register_to_config(retrieval_scale=float(config["retrieval_scale"]))
    if unet.config.in_channels != 3 * (1 + bool(config.get("low_res_size") or config.get("retrieval_top_k"))):
        raise UsageError(f"decoder config {name_or_path!r}: in_channels must be 6 with low_res_size or "
                         "retrieval_top_k (the noisy image and the image beside it), else 3")
    return unet, DDPMScheduler(**config["scheduler"])


def upsampler_input(images: torch.Tensor, height: int, width: int | None = None) -> torch.Tensor:
    """[B, 3, h, w] images in [-1, 1] -> [B, 3, height, width], bicubic: what an upsampler sees beside its noisy
    input (SR3's concatenation)."""
    size = (height, width or height)
    return F.interpolate(images.float(), size=size, mode="bicubic", align_corners=False).clamp(-1, 1)


def denoise(unet: UNet2DConditionModel, x: torch.Tensor, t, cond: torch.Tensor,
            beside: torch.Tensor | None = None) -> torch.Tensor:
    """One denoiser call: x [B, 3, H, W] at timestep t, conditions [B, D] (zeros = null), and for an upsampler or a
    retrieval decoder the image it sees beside x (`beside` [B, 3, H, W], concatenated on channels)."""
    if beside is not None:
        x = with_beside(unet, x, beside)
    return unet(x, t, **decoder_condition(unet, cond)).sample


def with_beside(unet: UNet2DConditionModel, x: torch.Tensor, beside: torch.Tensor) -> torch.Tensor:
    """x [B, 3, H, W] and the image beside it [B, 3, h, w] -> the denoiser's input [B, 6, H, W]; a smaller one (a bank
    kept at a lower size) is upscaled first. A retrieval decoder's `retrieval_scale` multiplies its neighbour: under
    Adam that is a larger learning rate for the zero-initialised weights of that input, which otherwise stay near zero
    (training/recipes/README.md, decoder v5)."""
    scale = unet.config.get("retrieval_scale", 1.0) if unet.config.get("retrieval_top_k") else 1.0
    if beside.shape[-2:] != x.shape[-2:]:
        beside = upsampler_input(beside, *x.shape[-2:])
    return torch.cat([x, scale * beside.to(x.device, x.dtype)], dim=1)


def set_condition_stats(decoder: UNet2DConditionModel, embeddings: torch.Tensor) -> None:
    """Store the per-dimension mean and std of [N, D] training embeddings for a `condition_norm` decoder.

    CLIP embeddings of one domain share most of their direction: standardised, what tells two images apart is
    what the projection sees, instead of a small variation on a large common part."""
    if len(embeddings) < 2:
        raise UsageError(f"the condition statistics need at least 2 training embeddings, got {len(embeddings)}")
    std, mean = torch.std_mean(embeddings.float(), dim=0)
    decoder.register_to_config(condition_mean=mean.tolist(), condition_std=std.clamp(min=1e-4).tolist())


def decoder_condition(decoder: UNet2DConditionModel, cond: torch.Tensor) -> dict:
    """[B, D] CLIP embeddings (zeros = the null condition) -> the keyword arguments of the decoder's forward."""
    if "condition_mean" in decoder.config:  # standardised; the null condition stays zero (the mean embedding)
        mean, std = (torch.tensor(decoder.config[k], device=cond.device) for k in ("condition_mean", "condition_std"))
        null = (cond == 0).all(dim=-1, keepdim=True)
        cond = torch.where(null, 0.0, (cond.float() - mean) / std)
    cond = cond.to(decoder.dtype) * decoder.config.get("condition_scale", 1.0)
    if decoder.config.class_embed_type is not None:
        return {"encoder_hidden_states": None, "class_labels": cond}
    return {"encoder_hidden_states": None, "added_cond_kwargs": {"image_embeds": cond}}


def sampling_scheduler(train_config) -> DPMSolverMultistepScheduler:
    """The default sampler: DPM-Solver++ (2M) on the training schedule, with its x0 estimates clipped to the pixel
    range. Without the clip, an epsilon-model's x0 estimate at high noise (errors scaled by 1/sqrt(alpha_bar), ~18x
    at t=950) throws a 20-step trajectory far outside [-1, 1], and the images come out as saturated noise."""
    return DPMSolverMultistepScheduler.from_config(train_config, thresholding=True, sample_max_value=1.0)


def guided_steps(steps: int, cutoff: float) -> int:
    """How many of `steps` sampling steps are guided when guidance stops after the `cutoff` share of them."""
    if not 0 < cutoff <= 1:  # NaN fails too
        raise UsageError(f"guidance_cutoff is the share of the steps that are guided, above 0 and at most 1; "
                         f"got {cutoff!r}")
    return math.ceil(round(steps * cutoff, 6))  # round: 25 * 0.28 is 7.000000000000001, which is 7 steps


def strength_steps(steps: int, strength: float) -> int:
    """How many of `steps` sampling steps run from an image noised to the `strength` share of the schedule
    (diffusers' img2img count)."""
    if not 0 < strength <= 1:  # NaN fails too
        raise UsageError(f"strength is how much of the schedule the image is noised to, above 0 and at most 1 "
                         f"(1: from pure noise); got {strength!r}")
    run = int(round(steps * strength, 6))  # round: as in guided_steps
    if run < 1:
        raise UsageError(f"strength {strength} of {steps} steps leaves none to run: raise the strength or the steps")
    return run
