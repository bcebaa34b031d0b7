"""Training the CLIP-conditioned decoder and the prior (`multimodal train decoder|prior`).

Both read a precomputed embedding cache (training/embedding_cache.py) and share the CLIP trainer's
loop: YAML + overrides, torchrun DDP, bf16 autocast, atomic checkpoints, exact resume, NaN guard,
TensorBoard and curves. The decoder keeps an EMA of its weights and saves a grid of samples for fixed
prompts and seeds every `decoder.sample_every` steps.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from multimodal_train.config import TrainConfig, from_dict
from multimodal_train.loop import TrainLoop

SAMPLE_PROMPTS = ["a red apple", "a smiling face", "a blue car", "a green tree", "a yellow star", "a black cat",
                  "a birthday cake", "a house", "a pizza", "a red heart", "a dog", "a rocket", "a sun",
                  "a fish", "a guitar", "a flower"]


@dataclass
class DecoderSection:
    clip: str = "builtin"  # the frozen CLIP whose embeddings condition the decoder
    config: str = "unet-64px"  # decoder architecture: a name in model_configs/decoder/ or a JSON file
    eval_data: str = ""  # held-out shards (prior evaluation)
    cache_dir: str = ""  # where the embedding caches go; default RUN_DIR/cache
    cond_drop: float = 0.15  # share of steps trained unconditionally, for classifier-free guidance
    ema_decay: float = 0.999
    sample_every: int = 500
    sample_prompts: list = field(default_factory=lambda: list(SAMPLE_PROMPTS))
    sample_steps: int = 20
    guidance_scale: float = 3.0
    prior: str = ""  # a trained prior folder: used for the sample grids and to assemble the pipeline
    prior_hidden: int = 1024
    prior_layers: int = 3


class CachedData:
    """Seeded, resumable batches of cache rows: an epoch is a permutation shared by all ranks, split by rank."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int, world_size: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.epoch, self.pos = 0, 0

    def __iter__(self):
        while True:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
            mine = order[self.rank::self.world_size]
            while self.pos + self.batch_size <= len(mine):
                idx = mine[self.pos:self.pos + self.batch_size]
                self.pos += self.batch_size
                yield idx
            self.epoch, self.pos = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


class EmbeddingTrainerBase(TrainLoop):
    """Shared by the decoder and the prior: the frozen CLIP, the caches and the resumable sampler."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        self.section = from_dict(DecoderSection, cfg.decoder, "decoder.")
        from multimodal.models import from_pretrained

        self.clip = from_pretrained(self.section.clip).eval()
        super().__init__(cfg, resume)

    def cache(self, spec: str, name: str, image_size: int) -> dict[str, np.ndarray]:
        from multimodal_train.embedding_cache import load_or_build

        folder = Path(self.section.cache_dir or Path(self.cfg.run_dir) / "cache")
        return load_or_build(self.clip, spec, folder / f"{name}-{image_size}px.npz", image_size)

    def setup_data(self, n: int) -> None:
        self.data = CachedData(n, self.cfg.data.batch_size, self.cfg.seed, self.info.rank, self.info.world_size)

    def batches(self):
        return iter(self.data)

    def extra_state(self) -> dict:
        return {"data": self.data.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.data.load_state_dict(state["data"])


class DecoderTrainer(EmbeddingTrainerBase):
    def build_model(self) -> nn.Module:
        from multimodal.generation import create_decoder

        self.unet, self.noise_scheduler = create_decoder(self.section.config, self.clip.config.embed_dim)
        return self.unet

    def setup(self) -> None:
        from diffusers.training_utils import EMAModel

        if not self.cfg.data.train:
            raise ValueError("data.train is empty: give the training shards")
        size = self.unet.config.sample_size
        train = self.cache(self.cfg.data.train, "train", size)
        self.images = torch.from_numpy(train["images"])  # [N, S, S, 3] uint8
        self.conditions = torch.from_numpy(train["image_emb"]).float()  # [N, D]
        self.setup_data(len(self.images))
        self.ema = EMAModel(self.unet.parameters(), decay=self.section.ema_decay)

    def train_step(self, batches) -> tuple[torch.Tensor, int]:
        idx = next(batches)
        device = self.info.device
        x0 = self.images[idx].to(device).permute(0, 3, 1, 2).float().div(127.5).sub(1)  # [B, 3, S, S] in [-1, 1]
        cond = self.conditions[idx].to(device)
        keep = (torch.rand(len(idx), 1, device=device) >= self.section.cond_drop).float()
        cond = cond * keep  # the null condition is the zero vector
        noise = torch.randn_like(x0)
        t = torch.randint(0, self.noise_scheduler.config.num_train_timesteps, (len(idx),), device=device)
        noisy = self.noise_scheduler.add_noise(x0, noise, t)
        target = noise if self.noise_scheduler.config.prediction_type == "epsilon" \
            else self.noise_scheduler.get_velocity(x0, noise, t)
        with self.autocast():
            pred = self.ddp(noisy, t, encoder_hidden_states=None, class_labels=cond).sample
        loss = F.mse_loss(pred.float(), target)
        loss.backward()
        return loss.detach(), len(idx)

    def after_step(self) -> None:
        self.ema.step(self.unet.parameters())

    def extra_state(self) -> dict:
        return {**super().extra_state(), "ema": self.ema.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        super().load_extra_state(state)
        self.ema.load_state_dict(state["ema"])

    def ema_unet(self):
        unet = copy.deepcopy(self.unet)
        self.ema.copy_to(unet.parameters())
        return unet.eval()

    def pipeline(self):
        from multimodal.generation import CLIPEncoder, EmbeddingPrior, TextToImagePipeline, sampling_scheduler

        if self.section.prior:
            prior = EmbeddingPrior.from_pretrained(self.section.prior)
        else:  # no prior yet: an identity prior (the text embedding itself) for the sample grids
            prior = EmbeddingPrior(self.clip.config.embed_dim, 8, 0)
            nn.init.zeros_(prior.out[1].weight)
            nn.init.zeros_(prior.out[1].bias)
        scheduler = sampling_scheduler(self.noise_scheduler.config)
        pipe = TextToImagePipeline(CLIPEncoder(self.clip), prior, self.ema_unet(), scheduler)
        pipe.set_progress_bar_config(disable=True)
        return pipe.to(self.info.device)

    def on_log(self, log) -> None:
        if self.section.sample_every and self.step % self.section.sample_every == 0:
            save_grid(self.pipeline(), self.section, self.run_dir / "samples" / f"step-{self.step:08d}.png")

    def finish(self) -> None:
        final = self.run_dir / "final"
        self.ema_unet().save_pretrained(final / "decoder")
        self.noise_scheduler.save_pretrained(final / "scheduler")
        save_grid(self.pipeline(), self.section, self.run_dir / "samples" / "final.png")
        if self.section.prior:
            self.pipeline().save_pretrained(final / "pipeline")
            print(f"wrote the text-to-image pipeline to {final / 'pipeline'}", file=sys.stderr)


def save_grid(pipe, section: DecoderSection, path: Path, seed: int = 0) -> Path:
    """One image per fixed prompt, fixed seeds, as a captioned grid PNG."""
    from multimodal.generation.grid import captioned_grid

    prompts = section.sample_prompts
    images = pipe(prompts, num_inference_steps=section.sample_steps, guidance_scale=section.guidance_scale,
                  generator=torch.Generator().manual_seed(seed)).images
    path.parent.mkdir(parents=True, exist_ok=True)
    captioned_grid(images, prompts).save(path)
    return path


class PriorTrainer(EmbeddingTrainerBase):
    def build_model(self) -> nn.Module:
        from multimodal.generation import EmbeddingPrior

        return EmbeddingPrior(self.clip.config.embed_dim, self.section.prior_hidden, self.section.prior_layers)

    def setup(self) -> None:
        if not self.cfg.data.train:
            raise ValueError("data.train is empty: give the training shards")
        size = 64  # the image part of the cache is shared with the decoder's
        train = self.cache(self.cfg.data.train, "train", size)
        self.text = torch.from_numpy(train["text_emb"]).float()  # [N, T, D]
        self.target = torch.from_numpy(train["image_emb"]).float()  # [N, D]
        self.setup_data(len(self.target))
        self.heldout = self.cache(self.section.eval_data, "eval", size) if self.section.eval_data else None

    def train_step(self, batches) -> tuple[torch.Tensor, int]:
        idx = next(batches)
        template = torch.randint(0, self.text.shape[1], (len(idx),))  # a random prompt template per sample
        text = self.text[idx, template].to(self.info.device)
        with self.autocast():
            pred = self.ddp(text)
        loss = (1 - F.cosine_similarity(pred.float(), self.target[idx].to(self.info.device))).mean()
        loss.backward()
        return loss.detach(), len(idx)

    @torch.inference_mode()
    def evaluate(self) -> dict:
        if self.heldout is None:
            return {}
        self.model.eval()
        try:
            return prior_metrics(self.model, torch.from_numpy(self.heldout["text_emb"][:, 0]).float(),
                                 torch.from_numpy(self.heldout["image_emb"]).float())
        finally:
            self.model.train()

    def finish(self) -> None:
        self.model.save_pretrained(self.run_dir / "final")


def prior_metrics(prior, text: torch.Tensor, image: torch.Tensor) -> dict:
    """Cosine to the true image embedding, and image retrieval top-1, for the prior vs the raw text embedding."""
    pred = prior(text)
    out = {}
    for name, emb in (("prior", pred), ("text_baseline", text)):
        out[f"{name}/cosine"] = F.cosine_similarity(emb, image).mean().item()
        out[f"{name}/retrieval_top1"] = ((emb @ image.T).argmax(1) == torch.arange(len(image))).float().mean().item()
    return out


def train(kind: str, cfg: TrainConfig, resume: str | None = None) -> dict:
    trainer = {"decoder": DecoderTrainer, "prior": PriorTrainer}[kind]
    return trainer(copy.deepcopy(cfg), resume=resume).run()
