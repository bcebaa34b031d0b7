"""What each trainer minimises: `loss = objective(batch)`, one optimizer step's loss, for `TrainLoop`.

    ContrastiveObjective   CLIP pretraining and FLYP fine-tuning (open_clip's ClipLoss / SigLipLoss)
    DiffusionObjective     the CLIP-conditioned denoiser (diffusers' noise schedule), with an EMA of its weights
    PriorObjective         text embedding -> image embedding, cosine loss
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from multimodal.errors import UsageError
from multimodal.generation import decoder_condition, upsampler_input, with_beside


class Objective:
    """The loss of one step, plus what the loop calls around it; all but `__call__` are optional."""

    def __call__(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def after_step(self) -> None:
        """After each optimizer step (e.g. clamp the temperature, update an EMA)."""

    def log_values(self) -> dict:
        return {}

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def make_contrastive_loss(kind: str, rank: int, world_size: int):
    from open_clip.loss import ClipLoss, SigLipLoss

    if kind == "clip":
        return ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True, rank=rank, world_size=world_size)
    if kind == "siglip":
        return SigLipLoss(rank=rank, world_size=world_size)
    raise UsageError(f"unknown loss {kind!r}; choose clip or siglip")


def loss_from_outputs(loss_fn, out: dict) -> torch.Tensor:
    args = [out["image_features"], out["text_features"], out["logit_scale"]]
    if "logit_bias" in out:
        args.append(out["logit_bias"])
    return loss_fn(*args)


class ContrastiveObjective(Objective):
    """The batch is a list of micro-batches `{"image": [B,3,H,W], "text": [B,L]}`; their union is the contrastive
    batch (open_clip's gradient caching: features of all, then each recomputed with gradients)."""

    def __init__(self, model, forward: nn.Module, loss_fn, autocast: Callable,
                 extra_pairs: Callable | None = None, memory_format=torch.contiguous_format):
        self.model, self.forward, self.loss_fn, self.autocast = model, forward, loss_fn, autocast
        self.extra_pairs, self.memory_format = extra_pairs, memory_format

    def __call__(self, micro_batches: list[dict]) -> torch.Tensor:
        device = self.model.device
        pairs = [(b["image"].to(device).contiguous(memory_format=self.memory_format), b["text"].to(device))
                 for b in micro_batches]
        if len(pairs) == 1:
            return self._single(*pairs[0], kinds=[m.get("kind") for m in micro_batches[0].get("meta", [])] or None)
        if self.extra_pairs is not None:
            raise UsageError("data.imagenet_pairs needs optim.accum_steps=1")
        return self._cached(pairs)

    def _single(self, images: torch.Tensor, tokens: torch.Tensor, kinds: list | None = None) -> torch.Tensor:
        with self.autocast():
            out = self.forward(images, tokens)
            if self.extra_pairs is None:
                return loss_from_outputs(self.loss_fn, out)
            extra_image, extra_text, extra_loss = self.extra_pairs(images, out["image_features"], out["logit_scale"],
                                                                   kinds=kinds)
            out["image_features"] = torch.cat([out["image_features"], extra_image])
            out["text_features"] = torch.cat([out["text_features"], extra_text])
            return loss_from_outputs(self.loss_fn, out) + extra_loss

    def _cached(self, pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """Runs its own backward passes (one per micro-batch), so the loss it returns is detached."""
        with torch.no_grad(), self.autocast():
            cached = [self.forward(images, tokens) for images, tokens in pairs]
        for j, (images, tokens) in enumerate(pairs):
            last = j == len(pairs) - 1
            sync = contextlib.nullcontext() if last or not hasattr(self.forward, "no_sync") else self.forward.no_sync()
            with sync, self.autocast():
                out = dict(self.forward(images, tokens))
                for key in ("image_features", "text_features"):
                    out[key] = torch.cat([c[key] for c in cached[:j]] + [out[key]] + [c[key] for c in cached[j + 1:]])
                if not last:  # the temperature (and bias) get their full gradient once, not J times
                    out.update({k: v.detach() for k, v in out.items() if k in ("logit_scale", "logit_bias")})
                loss = loss_from_outputs(self.loss_fn, out)
                loss.backward()
        return loss.detach()

    def after_step(self) -> None:
        with torch.no_grad():
            self.model.model.logit_scale.clamp_(0, math.log(100))

    def log_values(self) -> dict:
        scale = self.model.model.logit_scale.exp().item()
        values = {"logit_scale": scale, "temperature": 1.0 / scale}
        if getattr(self.extra_pairs, "distill", 0):
            values["distill"] = self.extra_pairs.last_distill
            values["distilled_share"] = self.extra_pairs.last_distilled_share
        return values


class DiffusionObjective(Objective):
    """Batches `{"images": uint8 [B,S,S,3], "cond": [B,D] or [B,T,D] (T caption templates: one drawn per sample)}`;
    the condition is dropped (zeroed) for a share of samples so that the same network also predicts
    unconditionally (classifier-free guidance). `snr_gamma` > 0 weights the loss by min-SNR-gamma.
    An upsampler (`low_res_size` in the UNet's config) also sees the image downscaled to that size and upscaled
    back, with Gaussian noise of a random std up to LOW_RES_NOISE: the base decoder's images are not clean
    downscales, and the noise keeps the upsampler from copying their artefacts (Imagen's augmentation, without
    telling the network the level).
    A retrieval decoder (`retrieval_top_k`) takes batches with `"neighbours": [B, K]` indices into `bank` (each
    image's K nearest others, never itself): one of them, drawn per sample, is the image it sees beside its noisy
    input, and it is dropped together with the condition. For a share `self_neighbour` of the samples it is the
    image itself, slightly scaled, shifted and flipped at random (`jitter`): with other images alone the gradient
    on that input is mostly noise (its weights grew to rms 0.004 in 1,000 steps), and an aligned copy gives it a
    signal to learn to carry the structure of the image beside it (training/recipes/README.md, decoder v4). A share
    `neighbour_drop` of the conditioned samples sees the zero image instead: it has to draw from the condition
    alone."""

    LOW_RES_NOISE = 0.1

    def __init__(self, unet, forward: nn.Module, noise_scheduler, cond_drop: float, ema_decay: float,
                 autocast: Callable, snr_gamma: float = 0.0, bank=None, self_neighbour: float = 0.0,
                 jitter_kw: dict | None = None, neighbour_drop: float = 0.0):
        from diffusers.training_utils import EMAModel

        if bool(unet.config.get("retrieval_top_k")) != (bank is not None):
            raise UsageError("a retrieval decoder (retrieval_top_k) trains with a bank of training images, and "
                             "only it does")
        self.unet, self.forward, self.noise_scheduler, self.bank = unet, forward, noise_scheduler, bank
        self.self_neighbour, self.jitter_kw, self.neighbour_drop = self_neighbour, jitter_kw or {}, neighbour_drop
        self.cond_drop, self.autocast, self.snr_gamma = cond_drop, autocast, snr_gamma
        self.ema = EMAModel(unet.parameters(), decay=ema_decay)

    def __call__(self, batch: dict) -> torch.Tensor:
        device = self.unet.device
        x0 = batch["images"].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [B, 3, S, S] in [-1, 1]
        cond = batch["cond"]
        if cond.ndim == 3:  # text embeddings under T caption templates: one at random per sample
            cond = cond[torch.arange(len(cond)), torch.randint(0, cond.shape[1], (len(cond),))]
        cond = cond.to(device)
        keep = (torch.rand(len(x0), 1, device=device) >= self.cond_drop).float()
        cond = cond * keep  # the null condition is the zero vector
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(x0),), device=device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        target = noise if self.noise_scheduler.config.prediction_type == "epsilon" \
            else self.noise_scheduler.get_velocity(x0, noise, t)
        if self.unet.config.get("low_res_size"):
            noisy = with_beside(self.unet, noisy, self.low_res(x0))  # [B, 6, S, S]
        elif self.bank is not None:
            neighbours = batch["neighbours"]  # [B, K]
            drawn = neighbours[torch.arange(len(x0)), torch.randint(0, neighbours.shape[1], (len(x0),))]
            beside = self.bank.pixels(drawn).to(device)  # [B, 3, s, s], s the bank's size (<= S)
            itself = torch.rand(len(x0), device=device) < self.self_neighbour
            copy = F.interpolate(jitter(x0, **self.jitter_kw), size=beside.shape[-2:], mode="area")
            beside = torch.where(itself[:, None, None, None], copy, beside)
            seen = keep  # [B, 1]; the draw only when asked, so that the recorded runs' random streams stay as they were
            if self.neighbour_drop:
                seen = keep * (torch.rand(len(x0), 1, device=device) >= self.neighbour_drop).float()
            noisy = with_beside(self.unet, noisy, beside * seen[:, :, None, None])
        with self.autocast():
            pred = self.forward(noisy, t, **decoder_condition(self.unet, cond)).sample
        loss = F.mse_loss(pred.float(), target, reduction="none").mean(dim=(1, 2, 3))  # [B]
        return (loss * self.loss_weights(t)).mean()

    def low_res(self, x0: torch.Tensor) -> torch.Tensor:
        """[B, 3, S, S] -> the same images at low_res_size (area), upscaled back and noised: [B, 3, S, S]."""
        small = F.interpolate(x0, size=self.unet.config.low_res_size, mode="area")
        sigma = torch.rand(len(x0), 1, 1, 1, device=x0.device) * self.LOW_RES_NOISE
        return upsampler_input(small + sigma * torch.randn_like(small), x0.shape[-1])

    def loss_weights(self, t: torch.Tensor) -> torch.Tensor:
        """[B] per-sample weights: ones, or min-SNR-gamma's min(SNR, gamma) / SNR (epsilon) or / (SNR + 1) (v)."""
        if not self.snr_gamma:
            return torch.ones(len(t), device=t.device)
        from diffusers.training_utils import compute_snr

        snr = compute_snr(self.noise_scheduler, t)
        clipped = snr.clamp(max=self.snr_gamma)
        return clipped / (snr + 1) if self.noise_scheduler.config.prediction_type == "v_prediction" else clipped / snr

    def after_step(self) -> None:
        self.ema.step(self.unet.parameters())

    def state_dict(self) -> dict:
        return {"ema": self.ema.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.ema.load_state_dict(state["ema"])

    def ema_unet(self):
        unet = copy.deepcopy(self.unet)
        self.ema.copy_to(unet.parameters())
        return unet.eval()


def jitter(images: torch.Tensor, scale: float = 0.1, shift: float = 0.06, flip: bool = True) -> torch.Tensor:
    """[B, 3, S, S] -> each image scaled by 1 ± `scale`, shifted by up to ± `shift` of its size and (with `flip`)
    flipped left-right at random, its edge pixels (white for the drawing corpora) filling the border."""
    b = len(images)
    s = 1 + (torch.rand(b, device=images.device) * 2 - 1) * scale
    flip = torch.where(torch.rand(b, device=images.device) < 0.5 * flip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=images.device)
    theta[:, 0, 0], theta[:, 1, 1] = flip / s, 1 / s
    theta[:, :, 2] = (torch.rand(b, 2, device=images.device) * 2 - 1) * shift * 2
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, padding_mode="border", align_corners=False)


class PriorObjective(Objective):
    """Batches `{"text": [B, T, D] (T prompt templates), "image": [B, D]}`; one random template per sample."""

    def __init__(self, forward: nn.Module, autocast: Callable):
        self.forward, self.autocast = forward, autocast

    def __call__(self, batch: dict) -> torch.Tensor:
        device = next(self.forward.parameters()).device
        text, image = batch["text"].to(device), batch["image"].to(device)
        template = torch.randint(0, text.shape[1], (len(text),))
        with self.autocast():
            pred = self.forward(text[torch.arange(len(text)), template])
        return (1 - F.cosine_similarity(pred.float(), image)).mean()
