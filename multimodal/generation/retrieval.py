"""Retrieval for a semi-parametric decoder: the training images the decoder may look at, found by CLIP embedding.

A decoder with `retrieval_top_k` in its config also sees, beside its noisy input, one training image whose CLIP
image embedding is among the `retrieval_top_k` nearest to its condition (the concatenation the upsampler uses for
its low-res image). It then learns what tells the condition apart from a neighbour that already has the
condition's subject and layout, instead of drawing every object from scratch: the retrieval-augmented diffusion of
Blattmann et al. 2022 (RDM) and Sheynin et al. 2022 (kNN-Diffusion), which reach a given image quality with a
fraction of a parametric model's size and training. The bank holds only training-split images.

    bank = NeighbourBank.from_arrays(images_uint8, image_embeddings)   # [N, S, S, 3], [N, D]
    extra = bank.lookup(cond, top_k=4, generator=g)                    # [B, 3, S, S] in [-1, 1]; zeros for null rows
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import ConfigMixin, ModelMixin
from diffusers.configuration_utils import register_to_config
from PIL import Image
from torch.nn import functional as F

from multimodal.errors import UsageError

PASSED_OVER = -2.0  # below any cosine: what `nearest` fills in for the bank entries it passes over


def check_bank_size(decoder_size: int, bank_size: int) -> None:
    """A bank's images are upscaled by a whole factor to the decoder's size, so its size must divide the decoder's."""
    if bank_size <= 0 or decoder_size % bank_size:
        raise UsageError(f"the bank holds {bank_size} px images and the decoder makes {decoder_size} px images: the "
                         f"bank's size must divide the decoder's (e.g. decoder.bank_size=32 for a 64 px decoder)")


class NeighbourBank(ModelMixin, ConfigMixin):
    """Training images [N, S, S, 3] uint8 and their unit CLIP image embeddings [N, D], as buffers, so that the bank
    saves and loads like any diffusers model (config.json beside its safetensors). The embeddings are rounded to
    float16 (what ship.py stores) but held as float32, the dtype a loaded bank has: a float16 buffer would make
    diffusers call the whole pipeline float16 and warn that it cannot run on the CPU."""

    @register_to_config
    def __init__(self, num_images: int = 1, image_size: int = 32, embed_dim: int = 384, clip_fingerprint: str = ""):
        super().__init__()
        self.register_buffer("images", torch.zeros(num_images, image_size, image_size, 3, dtype=torch.uint8))
        self.register_buffer("embeddings", torch.zeros(num_images, embed_dim))

    @classmethod
    def from_arrays(cls, images: np.ndarray | torch.Tensor, embeddings: np.ndarray | torch.Tensor,
                    clip_fingerprint: str = "") -> NeighbourBank:
        images, embeddings = torch.as_tensor(images), torch.as_tensor(embeddings).float()
        if images.ndim != 4 or images.shape[-1] != 3 or images.shape[1] != images.shape[2]:
            raise UsageError(f"bank images must be [N, S, S, 3] uint8, got {tuple(images.shape)}")
        if embeddings.shape[0] != images.shape[0]:
            raise UsageError(f"{images.shape[0]} bank images but {embeddings.shape[0]} embeddings")
        bank = cls(images.shape[0], images.shape[1], embeddings.shape[1], clip_fingerprint)
        bank.images.copy_(images.to(torch.uint8))
        bank.embeddings.copy_(F.normalize(embeddings, dim=-1).half().float())
        return bank

    def nearest(self, cond: torch.Tensor, k: int, exclude_above: float | None = None,
                exclude_same: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """[B, D] -> [B, k] bank indices, nearest first; with `exclude_above`, bank entries whose cosine exceeds it
        (the query image itself and its near-copies, for training) are passed over; with `exclude_same` = (query
        group ids [B], bank group ids [N]), so are the entries of the query's own group (e.g. its concept)."""
        sims = F.normalize(cond.float(), dim=-1) @ self.embeddings.float().T  # [B, N]
        if exclude_above is not None:
            sims = sims.masked_fill(sims > exclude_above, PASSED_OVER)
        if exclude_same is not None:
            query, bank = exclude_same
            if len(query) != len(cond) or len(bank) != len(self.embeddings):
                raise UsageError(f"exclude_same needs one group id per query ({len(cond)}) and per bank image "
                                 f"({len(self.embeddings)}), got {len(query)} and {len(bank)}")
            sims = sims.masked_fill(query[:, None].to(sims.device) == bank[None].to(sims.device), PASSED_OVER)
        if exclude_above is not None or exclude_same is not None:
            left = (sims > PASSED_OVER).sum(dim=1)  # [B] entries not passed over
            if (left < k).any():
                row = int(left.argmin())
                raise UsageError(f"query {row} has only {int(left[row])} bank images left once its near-copies and its "
                                 f"own group are passed over, fewer than the {k} nearest asked for")
        return sims.topk(min(k, len(self.embeddings)), dim=1).indices

    def pixels(self, index: torch.Tensor) -> torch.Tensor:
        """Bank indices [B] -> images [B, 3, S, S] in [-1, 1]."""
        return self.images[index.to(self.images.device)].permute(0, 3, 1, 2).float().div(127.5).sub(1)

    @torch.no_grad()
    def lookup(self, cond: torch.Tensor, top_k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """[B, D] conditions -> [B, 3, S, S]: for each, one of its `top_k` nearest images drawn by `generator`
        (top_k 1: the nearest); an all-zero (null) condition gets the zero image, the unconditional input."""
        candidates = self.nearest(cond, top_k)  # [B, k]
        pick = torch.randint(0, candidates.shape[1], (len(cond),), generator=generator)
        out = self.pixels(candidates[torch.arange(len(cond)), pick])
        null = (cond == 0).all(dim=-1).to(out.device)
        return out.masked_fill(null[:, None, None, None], 0.0)

    @torch.no_grad()
    def copy_distance(self, images) -> torch.Tensor:
        """PIL images -> [N]: each one's RMS pixel distance (0..1) to its nearest bank image, both at the bank's
        size. Near 0 means a copy of a training image; held-out real images give the scale of a new image."""
        size = self.config.image_size
        pixels = torch.stack([torch.from_numpy(np.array(im.convert("RGB").resize((size, size), Image.LANCZOS)))
                              for im in images]).flatten(1).float().div(255)  # [N, S*S*3]
        best = torch.full((len(pixels),), float("inf"))
        for i in range(0, len(self.images), 4096):  # a chunk of the bank at a time: [4096, S*S*3] float
            chunk = self.images[i:i + 4096].flatten(1).float().div(255).cpu()
            best = torch.minimum(best, torch.cdist(pixels, chunk).min(dim=1).values)
        return best / (pixels.shape[1] ** 0.5)
