"""Training the CLIP-conditioned decoder (`multimodal train decoder`).

It reads a precomputed embedding cache (training/embedding_cache.py) and runs on the shared loop: YAML +
overrides, torchrun DDP, bf16 autocast, atomic checkpoints, exact resume, NaN guard, TensorBoard and
curves. It keeps an EMA of the denoiser's weights and saves a grid of samples for fixed prompts and
seeds every `decoder.sample_every` steps.
"""

from __future__ import annotations

import copy
import functools
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multimodal.errors import UsageError
from multimodal_train.config import DecoderSection, TrainConfig
from multimodal_train.distributed import DistInfo, session, wrap_ddp
from multimodal_train.loop import TrainLoop, autocast, seed_everything
from multimodal_train.objectives import DiffusionObjective


class CachedBatches:
    """Seeded, resumable batches of cache rows: an epoch is a permutation shared by all ranks, split by rank."""

    def __init__(self, tensors: dict[str, torch.Tensor], batch_size: int, seed: int, info: DistInfo):
        self.tensors, self.batch_size, self.seed = tensors, batch_size, seed
        self.n = len(next(iter(tensors.values())))
        self.rank, self.world_size = info.rank, info.world_size
        self.epoch, self.pos = 0, 0

    def __iter__(self):
        while True:
            order = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 100003 + self.epoch))
            mine = order[self.rank::self.world_size]
            while self.pos + self.batch_size <= len(mine):
                idx = mine[self.pos:self.pos + self.batch_size]
                self.pos += self.batch_size
                yield {name: t[idx] for name, t in self.tensors.items()}
            self.epoch, self.pos = self.epoch + 1, 0

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.pos = int(state["epoch"]), int(state["pos"])


def load_cache(clip, spec: str, cache_dir: str, run_dir: str, name: str, image_size: int) -> dict[str, np.ndarray]:
    from multimodal_train.embedding_cache import load_or_build

    if not spec:
        raise UsageError("data.train is empty: give the training shards")
    folder = Path(cache_dir or Path(run_dir) / "cache")
    return load_or_build(clip, spec, folder / f"{name}-{image_size}px.npz", image_size)


def pipeline(clip, section: DecoderSection, unet, noise_scheduler, device):
    """The text-to-image pipeline of this decoder (an identity prior when none is trained yet)."""
    from multimodal.generation import EmbeddingPrior, TextToImagePipeline, sampling_scheduler

    if section.prior:
        prior = EmbeddingPrior.from_pretrained(section.prior)
    else:  # no prior yet: an identity prior (the text embedding itself) for the sample grids
        prior = EmbeddingPrior(clip.embed_dim, 8, 0)
        nn.init.zeros_(prior.out[1].weight)
        nn.init.zeros_(prior.out[1].bias)
    pipe = TextToImagePipeline(clip, prior, unet, sampling_scheduler(noise_scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def save_grid(pipe, section: DecoderSection, path: Path, seed: int = 0) -> Path:
    """One image per fixed prompt, fixed seeds, as a captioned grid PNG."""
    from multimodal.generation.grid import captioned_grid

    prompts = section.sample_prompts
    images = pipe(prompts, num_inference_steps=section.sample_steps, guidance_scale=section.guidance_scale,
                  generator=torch.Generator().manual_seed(seed)).images
    path.parent.mkdir(parents=True, exist_ok=True)
    captioned_grid(images, prompts).save(path)
    return path


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train the denoiser; RUN_DIR/final holds its EMA weights, its scheduler and (with a prior) the pipeline."""
    from multimodal.generation import create_decoder
    from multimodal.models import from_pretrained

    cfg, section = copy.deepcopy(cfg), cfg.decoder
    with session(cfg.device) as info:
        clip = from_pretrained(section.clip).eval()
        seed_everything(cfg.seed + info.rank)
        unet, noise_scheduler = create_decoder(section.config, clip.embed_dim)
        unet = unet.to(info.device)
        cache = load_cache(clip, cfg.data.train, section.cache_dir, cfg.run_dir, "train", unet.config.sample_size)
        data = CachedBatches({"images": torch.from_numpy(cache["images"]),  # [N, S, S, 3] uint8
                              "cond": torch.from_numpy(cache["image_emb"]).float()},  # [N, D]
                             cfg.data.batch_size, cfg.seed, info)
        objective = DiffusionObjective(unet, wrap_ddp(unet, info), noise_scheduler, section.cond_drop,
                                       section.ema_decay, functools.partial(autocast, info.device, cfg.precision))
        run_dir = Path(cfg.run_dir)

        def on_log(step: int) -> None:
            if section.sample_every and step % section.sample_every == 0:
                pipe = pipeline(clip, section, objective.ema_unet(), noise_scheduler, info.device)
                save_grid(pipe, section, run_dir / "samples" / f"step-{step:08d}.png")

        metrics = TrainLoop(unet, objective, data, cfg, on_log=on_log).run(resume)
        if info.is_main:
            final, ema = run_dir / "final", objective.ema_unet()
            ema.save_pretrained(final / "decoder")
            noise_scheduler.save_pretrained(final / "scheduler")
            pipe = pipeline(clip, section, ema, noise_scheduler, info.device)
            save_grid(pipe, section, run_dir / "samples" / "final.png")
            if section.prior:
                pipe.save_pretrained(final / "pipeline")
                print(f"wrote the text-to-image pipeline to {final / 'pipeline'}", file=sys.stderr)
    return metrics
