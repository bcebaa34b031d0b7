"""Contrastive training of the CLIP pair: a module that returns its loss, driven by a plain loop.

    multimodal train clip --config tiny-ci                        # one process
    torchrun --nproc_per_node 2 -m multimodal train clip ...      # DDP: gloo on CPU, NCCL on GPU

The contrastive batch is the global batch: features are gathered across ranks with open_clip's
`gather_with_grad` + `local_loss`, and with `optim.accum_steps > 1` across micro-batches too (features
are cached, then each micro-batch is recomputed with gradients, as open_clip's trainer does).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from multimodal_train.checkpoint import (
    all_finite,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from multimodal_train.config import TrainConfig, to_yaml
from multimodal_train.distributed import DistInfo, all_reduce_mean, barrier, cleanup, init_distributed
from multimodal_train.metrics import MetricsLog, plot_curves
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP


class NonFiniteLoss(RuntimeError):
    pass


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: never on norms, biases, the temperature or SigLIP's bias (open_clip's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def make_loss(kind: str, info: DistInfo):
    from open_clip.loss import ClipLoss, SigLipLoss

    if kind == "clip":
        return ClipLoss(local_loss=True, gather_with_grad=True, cache_labels=True, rank=info.rank,
                        world_size=info.world_size)
    if kind == "siglip":
        return SigLipLoss(rank=info.rank, world_size=info.world_size)
    raise ValueError(f"unknown loss {kind!r}; choose clip or siglip")


def loss_from_outputs(loss_fn, out: dict) -> torch.Tensor:
    args = [out["image_features"], out["text_features"], out["logit_scale"]]
    if "logit_bias" in out:
        args.append(out["logit_bias"])
    return loss_fn(*args)


def contrastive_step(model: nn.Module, micro_batches: list[tuple[torch.Tensor, torch.Tensor]], loss_fn,
                     autocast) -> torch.Tensor:
    """Forward + backward for one optimizer step; returns the loss (of the whole step's batch)."""
    if len(micro_batches) == 1:
        images, tokens = micro_batches[0]
        with autocast():
            loss = loss_from_outputs(loss_fn, model(images, tokens))
        loss.backward()
        return loss.detach()
    with torch.no_grad(), autocast():  # 1) features of every micro-batch, no graph
        cached = [model(images, tokens) for images, tokens in micro_batches]
    for j, (images, tokens) in enumerate(micro_batches):  # 2) recompute one micro-batch with grad at a time
        sync = contextlib.nullcontext() if j == len(micro_batches) - 1 or not hasattr(model, "no_sync") \
            else model.no_sync()
        with sync, autocast():
            live = model(images, tokens)
            out = dict(live)
            for key in ("image_features", "text_features"):
                out[key] = torch.cat([c[key] for c in cached[:j]] + [live[key]] + [c[key] for c in cached[j + 1:]])
            if j < len(micro_batches) - 1:  # the temperature (and bias) get their full gradient once, not J times
                out.update({k: v.detach() for k, v in out.items() if k in ("logit_scale", "logit_bias")})
            loss = loss_from_outputs(loss_fn, out)
            loss.backward()
    return loss.detach()


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig):
    from multimodal.models import create_model, get_config

    config = get_config(cfg.model.name)
    if cfg.model.image_size:
        config.model_cfg["vision_cfg"]["image_size"] = cfg.model.image_size
        config.preprocess_cfg["size"] = cfg.model.image_size
    for tower, settings in cfg.model.towers.items():
        config.towers[tower] = {**config.towers.get(tower, {}), **settings}
    overrides = {}
    if cfg.loss == "siglip" and "init_logit_bias" not in config.model_cfg:
        overrides = {"init_logit_scale": math.log(10), "init_logit_bias": -10.0}  # SigLIP's initialisation
    return create_model(config, pretrained_towers=cfg.model.pretrained_towers, **overrides)


def caption_templater(templates: list[str], p: float):
    if not templates or p <= 0:
        return None
    templates = list(templates)

    def apply(caption: str) -> str:  # `random` is seeded per sample by the reader
        return random.choice(templates).format(caption) if random.random() < p else caption

    return apply


class Trainer:
    """One training run of the CLIP pair; `run()` returns the final evaluation metrics."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, model=None):
        self.cfg = cfg
        self.info = init_distributed(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.run_dir = Path(cfg.run_dir)
        self.resume_path = find_checkpoint(self.run_dir, resume) if resume else None
        seed_everything(cfg.seed + self.info.rank)
        self.model = (model or build_model(cfg)).to(self.info.device)
        if cfg.model.grad_checkpointing:
            self.model.model.set_grad_checkpointing(True)
        self.memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
        self.model.model.visual.to(memory_format=self.memory_format)
        self.ddp = DDP(self.model, device_ids=[self.info.device] if self.info.device.type == "cuda" else None) \
            if self.info.distributed else self.model
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                           betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        self.scheduler = cosine_with_warmup(self.optimizer, cfg.optim.warmup_steps, cfg.steps)
        self.loss_fn = make_loss(cfg.loss, self.info)
        self.reader = self.make_reader()
        self.step = 0
        self.nan_skips = 0
        if self.resume_path:
            self.load(self.resume_path)

    # --- pieces -------------------------------------------------------------------------------------
    def make_reader(self):
        from multimodal.data.reader import ShardReader

        if not self.cfg.data.train:
            raise ValueError("data.train is empty: give the training shards, e.g. data.train=data/corpus/emoji/train")
        transform = self.model.image_transform(train=self.cfg.data.augment)
        return ShardReader(self.cfg.data.train, image_transform=transform, tokenizer=self.model.tokenizer,
                           batch_size=self.cfg.data.batch_size, train=True, seed=self.cfg.seed,
                           num_workers=self.cfg.data.num_workers, shuffle_buffer=self.cfg.data.shuffle_buffer,
                           rank=self.info.rank, world_size=self.info.world_size, device=self.info.device,
                           caption_transform=caption_templater(self.cfg.data.caption_templates,
                                                               self.cfg.data.caption_template_p))

    def autocast(self):
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=enabled)

    def gather(self, obj) -> list:
        if not self.info.distributed:
            return [obj]
        out = [None] * self.info.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    # --- checkpoints --------------------------------------------------------------------------------
    def save(self) -> None:
        readers, rngs = self.gather(self.reader.state_dict()), self.gather(rng_state())
        if not self.info.is_main:
            return
        if not all_finite(self.model):
            raise NonFiniteLoss(f"step {self.step}: the weights hold NaN/inf; no checkpoint was written, "
                                "the last good one is kept")
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "readers": readers, "rng": rngs,
                 "nan_skips": self.nan_skips, "config": dataclasses.asdict(self.cfg)}
        save_checkpoint(self.run_dir / "checkpoints", self.step, state, self.cfg.keep_checkpoints)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.reader.load_state_dict(state["readers"][self.info.rank])
        set_rng_state(state["rng"][self.info.rank])
        self.step = int(state["step"])
        self.nan_skips = int(state.get("nan_skips", 0))

    # --- evaluation ---------------------------------------------------------------------------------
    def evaluate(self) -> dict:
        from multimodal.evaluation import retrieval_metrics, zeroshot_metrics
        from multimodal.evaluation.embed import embed_set

        results = {}
        if not self.info.is_main or not (self.cfg.eval.zeroshot or self.cfg.eval.retrieval):
            barrier()
            return results
        self.model.eval()
        bf16 = self.cfg.precision == "bf16"
        try:
            for name in sorted(set(self.cfg.eval.zeroshot) | set(self.cfg.eval.retrieval)):
                spec = self.cfg.eval.zeroshot.get(name) or self.cfg.eval.retrieval.get(name)
                embedded = embed_set(self.model, spec, batch_size=self.cfg.eval.batch_size, autocast=bf16)
                if name in self.cfg.eval.zeroshot:
                    zs = zeroshot_metrics(self.model, embedded=embedded, autocast=bf16)
                    results[f"{name}/top1"], results[f"{name}/top5"] = zs["top1"], zs["top5"]
                if name in self.cfg.eval.retrieval:
                    rt = retrieval_metrics(self.model, embedded=embedded, autocast=bf16)
                    results.update({f"{name}/{k}": v for k, v in rt.items() if k != "num_samples"})
        finally:
            self.model.train()
        barrier()
        return results

    # --- the loop -----------------------------------------------------------------------------------
    def run(self) -> dict:
        from tqdm.auto import tqdm

        cfg, info = self.cfg, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        log = MetricsLog(self.run_dir, enabled=info.is_main, resume_step=self.step if self.resume_path else None)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not info.is_main, file=sys.stderr, unit="step",
                   desc=f"train {cfg.model.name}")
        batches = iter(self.reader)
        self.model.train()
        window_start, window_samples = time.perf_counter(), 0
        final = {}
        try:
            while self.step < cfg.steps:
                micro = []
                for _ in range(cfg.optim.accum_steps):
                    batch = next(batches)
                    images = batch["image"].to(info.device).contiguous(memory_format=self.memory_format)
                    micro.append((images, batch["text"].to(info.device)))
                loss = contrastive_step(self.ddp, micro, self.loss_fn, self.autocast)
                if not self.finite_everywhere(loss):
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                with torch.no_grad():
                    self.model.model.logit_scale.clamp_(0, math.log(100))
                self.step += 1
                bar.update(1)
                window_samples += sum(len(m[0]) for m in micro) * info.world_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    values = self.train_log_values(loss, window_samples / max(elapsed, 1e-9))
                    log.log(self.step, values)
                    bar.set_postfix(loss=f"{values['loss']:.4f}", lr=f"{values['lr']:.2e}",
                                    sps=f"{values['samples_per_s']:.1f}", skipped=values["skipped"])
                    window_start, window_samples = time.perf_counter(), 0
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                    log.log(self.step, self.evaluate(), prefix="eval")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
            final = self.evaluate()
            log.log(self.step, final, prefix="eval")
            if info.is_main:
                self.model.save_pretrained(self.run_dir / "final")
                plot_curves(self.run_dir)
        finally:
            bar.close()
            log.close()
            cleanup()
        return final

    def finite_everywhere(self, loss: torch.Tensor) -> bool:
        """NaN guard: every rank agrees to skip a step whose loss is not finite; too many in a row stops the run."""
        bad = torch.tensor([0.0 if torch.isfinite(loss) else 1.0], device=self.info.device)
        if self.info.distributed:
            torch.distributed.all_reduce(bad)
        if bad.item() == 0:
            self.nan_skips = 0
            return True
        self.nan_skips += 1
        print(f"step {self.step + 1}: non-finite loss, step skipped ({self.nan_skips} in a row)", file=sys.stderr)
        if self.nan_skips >= self.cfg.max_nan_skips:
            raise NonFiniteLoss(f"step {self.step + 1}: {self.nan_skips} non-finite losses in a row; stopping. "
                                f"The last checkpoint in {self.run_dir / 'checkpoints'} is good.")
        return False

    def train_log_values(self, loss: torch.Tensor, samples_per_s: float) -> dict:
        skipped = int(all_reduce_mean(float(self.reader.stats.num_skipped), self.info) * self.info.world_size)
        scale = self.model.model.logit_scale.exp().item()
        return {"loss": all_reduce_mean(loss.item(), self.info), "lr": self.scheduler.get_last_lr()[-1],
                "logit_scale": scale, "temperature": 1.0 / scale, "samples_per_s": samples_per_s,
                "skipped": skipped}


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    return Trainer(copy.deepcopy(cfg), resume=resume).run()
