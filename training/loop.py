"""The plain training loop every trainer shares (CLIP, decoder, prior).

A subclass builds its model and data and computes one step's loss; this base does the rest:
AdamW with decoupled weight decay, cosine schedule with warmup, gradient clipping, bf16 autocast,
the NaN guard, tqdm + TensorBoard + metrics.jsonl + curves.png, periodic evaluation, atomic
checkpoints (last N kept) and exact resume (model, optimizer, schedule, RNG and data position of
every rank), under torchrun DDP or in one process.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from multimodal_train.checkpoint import (
    all_finite,
    find_checkpoint,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from multimodal_train.config import TrainConfig, to_yaml
from multimodal_train.distributed import all_reduce_mean, barrier, cleanup, init_distributed
from multimodal_train.metrics import MetricsLog, plot_curves


class NonFiniteLoss(RuntimeError):
    pass


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices only: never on norms, biases, the temperature or SigLIP's bias (open_clip's rule)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "norm" in name or "bias" in name \
            or "logit_scale" in name
        (no_decay if exclude else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def cosine_with_warmup(optimizer, warmup_steps: int, total_steps: int):
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


class TrainLoop:
    """Subclasses implement `build_model`, `batches`, `train_step`, and optionally the other hooks."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None):
        self.cfg = cfg
        self.info = init_distributed(cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.run_dir = Path(cfg.run_dir)
        self.resume_path = find_checkpoint(self.run_dir, resume) if resume else None
        if resume == "auto" and self.resume_path is None and (self.run_dir / "final").exists():
            print(f"{self.run_dir} already holds a finished run; training again from the start", file=sys.stderr)
        seed_everything(cfg.seed + self.info.rank)
        self.model = self.build_model().to(self.info.device)  # the module whose parameters are trained
        self.ddp = DDP(self.model, device_ids=[self.info.device] if self.info.device.type == "cuda" else None) \
            if self.info.distributed else self.model
        self.optimizer = torch.optim.AdamW(param_groups(self.model, cfg.optim.weight_decay), lr=cfg.optim.lr,
                                           betas=tuple(cfg.optim.betas), eps=cfg.optim.eps)
        self.scheduler = cosine_with_warmup(self.optimizer, cfg.optim.warmup_steps, cfg.steps)
        self.step = 0
        self.nan_skips = 0
        self.setup()
        if self.resume_path:
            self.load(self.resume_path)

    # --- hooks ------------------------------------------------------------------------------------------
    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def setup(self) -> None:
        """Data and anything else that needs the built model."""

    def batches(self) -> Iterator:
        raise NotImplementedError

    def train_step(self, batches: Iterator) -> tuple[torch.Tensor, int]:
        """Take what one optimizer step needs from `batches`, run forward + backward.

        Returns (the detached loss, the number of samples this rank used)."""
        raise NotImplementedError

    def after_step(self) -> None:
        """After each optimizer step (e.g. clamp the temperature, update an EMA)."""

    def log_values(self) -> dict:
        return {}

    def extra_state(self) -> dict:
        """This rank's extra resume state (e.g. its data position)."""
        return {}

    def load_extra_state(self, state: dict) -> None:
        pass

    def evaluate(self) -> dict:
        return {}

    def on_log(self, log: MetricsLog) -> None:
        """Every log step, on rank 0 (e.g. save a sample grid)."""

    def finish(self) -> None:
        """Rank 0, after the last step: write the final model."""

    # --- helpers ------------------------------------------------------------------------------------------
    def autocast(self):
        return torch.autocast(self.info.device.type, dtype=torch.bfloat16, enabled=self.cfg.precision == "bf16")

    def gather(self, obj) -> list:
        if not self.info.distributed:
            return [obj]
        out = [None] * self.info.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    # --- checkpoints ----------------------------------------------------------------------------------------
    def save(self) -> None:
        extras, rngs = self.gather(self.extra_state()), self.gather(rng_state())
        if not self.info.is_main:
            return
        if not all_finite(self.model):
            raise NonFiniteLoss(f"step {self.step}: the weights hold NaN/inf; no checkpoint was written, "
                                "the last good one is kept")
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "extra": extras, "rng": rngs,
                 "nan_skips": self.nan_skips, "config": dataclasses.asdict(self.cfg)}
        save_checkpoint(self.run_dir / "checkpoints", self.step, state, self.cfg.keep_checkpoints)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.load_extra_state(state["extra"][self.info.rank])
        set_rng_state(state["rng"][self.info.rank])
        self.step = int(state["step"])
        self.nan_skips = int(state.get("nan_skips", 0))

    # --- the loop -------------------------------------------------------------------------------------------
    def run_evaluation(self) -> dict:
        results = self.evaluate() if self.info.is_main else {}
        barrier()
        return results

    def run(self) -> dict:
        from tqdm.auto import tqdm

        cfg, info = self.cfg, self.info
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        log = MetricsLog(self.run_dir, enabled=info.is_main, resume_step=self.step if self.resume_path else None)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not info.is_main, file=sys.stderr, unit="step",
                   desc=f"train {type(self).__name__.removesuffix('Trainer').lower()}")
        batches = self.batches()
        self.model.train()
        window_start, window_samples = time.perf_counter(), 0
        final = {}
        try:
            while self.step < cfg.steps:
                loss, samples = self.train_step(batches)
                if not self.finite_everywhere(loss):
                    self.optimizer.zero_grad(set_to_none=True)
                    continue
                if cfg.optim.grad_clip > 0:
                    torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.optim.grad_clip)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.after_step()
                self.step += 1
                bar.update(1)
                window_samples += samples * info.world_size
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    values = {"loss": all_reduce_mean(loss.item(), info), "lr": self.scheduler.get_last_lr()[-1],
                              "samples_per_s": window_samples / max(elapsed, 1e-9), **self.log_values()}
                    log.log(self.step, values)
                    bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()})
                    if info.is_main:
                        self.on_log(log)
                    window_start, window_samples = time.perf_counter(), 0
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                    log.log(self.step, self.run_evaluation(), prefix="eval")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
            final = self.run_evaluation()
            log.log(self.step, final, prefix="eval")
            if info.is_main:
                self.finish()
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
