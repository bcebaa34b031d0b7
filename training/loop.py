"""The plain training loop every trainer shares (CLIP, fine-tuning, decoder, prior), by composition:

    loop = TrainLoop(model, objective, data, cfg, evaluate=..., on_log=...)
    metrics = loop.run(resume="latest")

`model` is the module whose parameters are trained, `objective(batch)` returns one optimizer step's loss,
and `data` is an iterable of batches with `state_dict()`/`load_state_dict()` (its stream position). The
loop does the rest: AdamW with decoupled weight decay, cosine schedule with warmup, gradient clipping, the
NaN guard, tqdm + TensorBoard + metrics.jsonl + curves.png, periodic evaluation, atomic checkpoints (last
N kept) and exact resume (model, optimizer, schedule, RNG, objective and data state of every rank). Under
torchrun the caller sets up the process group and the DDP wrapper (`distributed.session`, `wrap_ddp`).
"""

from __future__ import annotations

import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from multimodal.distributed import barrier, current
from multimodal.errors import TrainingStopped, UsageError
from multimodal.precision import bf16_is_fast
from multimodal_train.checkpoint import (
    all_finite,
    find_checkpoint,
    list_checkpoints,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from multimodal_train.config import TrainConfig, to_yaml
from multimodal_train.distributed import all_reduce_mean
from multimodal_train.metrics import MetricsLog, plot_curves
from multimodal_train.objectives import Objective

TOWER_PREFIXES = ("model.visual.trunk.", "model.text.transformer.")  # pretrained towers' own layers, not projections


def param_groups(model: nn.Module, weight_decay: float, tower_lr_scale: float = 1.0) -> list[dict]:
    """Weight decay on matrices only: never on norms, biases, the temperature or SigLIP's bias (open_clip's rule).
    The trained layers of pretrained towers learn at `tower_lr_scale` times the rate of the rest, so that unlocking
    more of a tower changes its features less (each group's "lr_scale" multiplies optim.lr)."""
    groups: dict[tuple[bool, bool], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        exclude = p.ndim < 2 or "bn" in name or "ln" in name or "norm" in name or "bias" in name \
            or "logit_scale" in name
        tower = tower_lr_scale != 1.0 and name.startswith(TOWER_PREFIXES)
        groups.setdefault((tower, not exclude), []).append(p)
    if tower_lr_scale != 1.0 and not any(tower for tower, _ in groups):
        raise UsageError(f"optim.tower_lr_scale={tower_lr_scale}: the model trains no layer of a pretrained tower "
                         f"({', '.join(TOWER_PREFIXES)}); unlock some, or leave the scale at 1")
    return [{"params": params, "weight_decay": weight_decay if decay else 0.0,
             "lr_scale": tower_lr_scale if tower else 1.0} for (tower, decay), params in sorted(groups.items())]


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


def autocast(device: torch.device, precision: str):
    """bf16 autocast, except on a CPU without bf16 kernels (AVX2 only), where it runs ~10x slower than fp32."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16" and bf16_is_fast(device))


class TrainLoop:
    def __init__(self, model: nn.Module, objective: Objective, data: Iterable, cfg: TrainConfig, *,
                 evaluate: Callable[[], dict] | None = None, on_log: Callable[[int], None] | None = None):
        self.model, self.objective, self.data, self.cfg = model, objective, data, cfg
        self.evaluate, self.on_log = evaluate, on_log
        self.info = current(next(model.parameters()).device)
        self.run_dir = Path(cfg.run_dir)
        groups = param_groups(model, cfg.optim.weight_decay, cfg.optim.tower_lr_scale)
        for group in groups:
            group["lr"] = cfg.optim.lr * group["lr_scale"]
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.optim.lr, betas=tuple(cfg.optim.betas), eps=cfg.optim.eps,
                                           fused=cfg.optim.fused or None)  # None: torch's foreach
        self.scheduler = cosine_with_warmup(self.optimizer, cfg.optim.warmup_steps, cfg.steps)
        self.step = 0
        self.nan_skips = 0

    # --- checkpoints ----------------------------------------------------------------------------------------
    def gather(self, obj) -> list:
        if not self.info.distributed:
            return [obj]
        out = [None] * self.info.world_size
        torch.distributed.all_gather_object(out, obj)
        return out

    def save(self) -> None:
        extra = {"data": self.data.state_dict(), "objective": self.objective.state_dict()}
        extras, rngs = self.gather(extra), self.gather(rng_state())
        if not self.info.is_main:
            return
        if not all_finite(self.model):
            raise TrainingStopped(f"step {self.step}: the weights hold NaN/inf; no checkpoint was written"
                                  + self._last_good())
        state = {"step": self.step, "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "extra": extras, "rng": rngs,
                 "nan_skips": self.nan_skips, "config": dataclasses.asdict(self.cfg)}
        save_checkpoint(self.run_dir / "checkpoints", self.step, state, self.cfg.keep_checkpoints)

    def load(self, path: Path) -> None:
        state = load_checkpoint(path)
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        extra = state["extra"][self.info.rank]
        self.data.load_state_dict(extra["data"])
        self.objective.load_state_dict(extra["objective"])
        set_rng_state(state["rng"][self.info.rank])
        self.step = int(state["step"])
        self.nan_skips = int(state.get("nan_skips", 0))

    def _last_good(self) -> str:
        found = list_checkpoints(self.run_dir / "checkpoints")
        return f"; the last good checkpoint is {found[-1]}" if found else "; no checkpoint had been written yet"

    # --- the loop -------------------------------------------------------------------------------------------
    def run_evaluation(self) -> dict:
        results = {}
        if self.evaluate is not None and self.info.is_main:
            self.model.eval()
            try:
                results = self.evaluate()
            finally:
                self.model.train()
        barrier()
        return results

    def run(self, resume: str | None = None) -> dict:
        """Train to `cfg.steps` (continuing a checkpoint if `resume` finds one); returns the final evaluation."""
        from tqdm.auto import tqdm

        cfg, info = self.cfg, self.info
        resume_path = find_checkpoint(self.run_dir, resume) if resume else None
        if resume == "auto" and resume_path is None and (self.run_dir / "final").exists():
            print(f"{self.run_dir} already holds a finished run; training again from the start", file=sys.stderr)
        if resume_path:
            self.load(resume_path)
        if info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.yaml").write_text(to_yaml(cfg))
        log = MetricsLog(self.run_dir, enabled=info.is_main, resume_step=self.step if resume_path else None)
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not info.is_main, file=sys.stderr, unit="step",
                   desc=f"train {self.run_dir.name}")
        batches = iter(self.data)
        self.model.train()
        samples_per_step = cfg.data.batch_size * cfg.optim.accum_steps * info.world_size
        window_start, window_steps = time.perf_counter(), 0
        try:
            while self.step < cfg.steps:
                if not self.train_step(next(batches)):
                    continue
                bar.update(1)
                window_steps += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    elapsed = time.perf_counter() - window_start
                    values = {"loss": all_reduce_mean(self.last_loss, info), "lr": self.scheduler.get_last_lr()[0],
                              "samples_per_s": window_steps * samples_per_step / max(elapsed, 1e-9),
                              **self.objective.log_values(), **getattr(self.data, "log_values", dict)()}
                    log.log(self.step, values)
                    bar.set_postfix({k: f"{v:.4g}" if isinstance(v, float) else v for k, v in values.items()})
                    if info.is_main and self.on_log is not None:
                        self.on_log(self.step)
                    window_start, window_steps = time.perf_counter(), 0
                if cfg.eval.every and self.step % cfg.eval.every == 0 and self.step < cfg.steps:
                    log.log(self.step, self.run_evaluation(), prefix="eval")
                if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                    self.save()
            final = self.run_evaluation()
            log.log(self.step, final, prefix="eval")
        finally:
            bar.close()
            log.close()
        if info.is_main:
            plot_curves(self.run_dir)
        return final

    def train_step(self, batch) -> bool:
        """One optimizer step; False when the NaN guard skipped it. An objective that runs its own backward
        passes (gradient caching across micro-batches) returns its loss detached."""
        loss = self.objective(batch)
        if loss.requires_grad:
            loss.backward()
        if not self.finite_everywhere(loss.detach()):
            self.optimizer.zero_grad(set_to_none=True)
            return False
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.objective.after_step()
        self.step += 1
        self.last_loss = loss.item()
        return True

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
            raise TrainingStopped(f"step {self.step + 1}: {self.nan_skips} non-finite losses in a row; stopping"
                                  + self._last_good())
        return False
