"""Contrastive training of the CLIP pair.

    multimodal train clip --config tiny-ci                        # one process
    torchrun --nproc_per_node 2 -m multimodal train clip ...      # DDP: gloo on CPU, NCCL on GPU

The contrastive batch is the global batch: features are gathered across ranks with open_clip's
`gather_with_grad` + `local_loss`, and with `optim.accum_steps > 1` across micro-batches too (features
are cached, then each micro-batch is recomputed with gradients, as open_clip's trainer does).
"""

from __future__ import annotations

import copy
import functools
import math
import random
from pathlib import Path

import torch

from multimodal.distributed import DistInfo, session
from multimodal.errors import UsageError
from multimodal.precision import bf16_is_fast
from multimodal_train.config import TrainConfig
from multimodal_train.distributed import all_reduce_mean, wrap_ddp
from multimodal_train.imagenet import ImageNetPairs
from multimodal_train.loop import TrainLoop, autocast, seed_everything
from multimodal_train.objectives import ContrastiveObjective, make_contrastive_loss


def build_model(cfg: TrainConfig):
    from multimodal.models import create_model, from_pretrained, get_config

    if cfg.model.init:  # continue from saved weights; their config (towers, locks, image size) comes with them
        return from_pretrained(cfg.model.init).train()
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


class StepBatches:
    """What one optimizer step takes from the shard reader: `accum_steps` micro-batches; resumable."""

    def __init__(self, reader, accum_steps: int, info: DistInfo):
        self.reader, self.accum_steps, self.info = reader, accum_steps, info

    def __iter__(self):
        batches = iter(self.reader)
        while True:
            yield [next(batches) for _ in range(self.accum_steps)]

    def state_dict(self) -> dict:
        return self.reader.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.reader.load_state_dict(state)

    def log_values(self) -> dict:
        skipped = all_reduce_mean(float(self.reader.stats.num_skipped), self.info) * self.info.world_size
        return {"skipped": int(skipped)}


def make_data(cfg: TrainConfig, model, info: DistInfo) -> StepBatches:
    from multimodal.data.reader import ShardReader

    if not cfg.data.train:
        raise UsageError("data.train is empty: give the training shards, e.g. data.train=data/corpus/emoji/train")
    transform = model.image_transform(train=cfg.data.augment, aug_cfg=cfg.data.augment_cfg or None)
    reader = ShardReader(cfg.data.train, image_transform=transform,
                         tokenizer=model.tokenizer, batch_size=cfg.data.batch_size, train=True, seed=cfg.seed,
                         num_workers=cfg.data.num_workers, shuffle_buffer=cfg.data.shuffle_buffer, rank=info.rank,
                         world_size=info.world_size, device=info.device,
                         upsampling_factors=cfg.data.upsampling_factors or None, background_p=cfg.data.background_p,
                         monochrome_p=cfg.data.monochrome_p,
                         return_meta=bool(cfg.data.imagenet_distill_kinds),
                         caption_transform=caption_templater(cfg.data.caption_templates, cfg.data.caption_template_p))
    return StepBatches(reader, cfg.optim.accum_steps, info)


def evaluate(model, cfg: TrainConfig) -> dict:
    """Zero-shot and retrieval metrics on the configured held-out sets (rank 0, model in eval mode)."""
    from multimodal.evaluation import retrieval_metrics, zeroshot_metrics
    from multimodal.evaluation.embed import embed_set

    results, bf16 = {}, cfg.precision == "bf16" and bf16_is_fast(model.device)
    for name in sorted(set(cfg.eval.zeroshot) | set(cfg.eval.retrieval)):
        spec = cfg.eval.zeroshot.get(name) or cfg.eval.retrieval.get(name)
        embedded = embed_set(model, spec, batch_size=cfg.eval.batch_size, autocast=bf16)
        if name in cfg.eval.zeroshot:
            zs = zeroshot_metrics(model, embedded=embedded, autocast=bf16)
            results[f"{name}/top1"], results[f"{name}/top5"] = zs["top1"], zs["top5"]
        if name in cfg.eval.retrieval:
            rt = retrieval_metrics(model, embedded=embedded, autocast=bf16)
            results.update({f"{name}/{k}": v for k, v in rt.items() if k != "num_samples"})
    return results


def fit(cfg: TrainConfig, info: DistInfo, resume: str | None = None, model=None):
    """Train inside an existing distributed session; returns (the trained model, the final metrics)."""
    seed_everything(cfg.seed + info.rank)
    model = (model or build_model(cfg)).to(info.device)
    if cfg.model.grad_checkpointing:
        model.model.set_grad_checkpointing(True)
    memory_format = torch.channels_last if cfg.model.channels_last else torch.contiguous_format
    model.model.visual.to(memory_format=memory_format)
    data = make_data(cfg, model, info)
    forward = wrap_ddp(model, info)
    objective = ContrastiveObjective(
        model, torch.compile(forward) if cfg.model.compile else forward,
        make_contrastive_loss(cfg.loss, info.rank, info.world_size),
        functools.partial(autocast, info.device, cfg.precision),
        extra_pairs=ImageNetPairs(model, cfg.data.imagenet_pairs, cfg.data.imagenet_distill, cfg.data.imagenet_glosses,
                                  cfg.data.imagenet_distill_min_p, cfg.data.imagenet_distill_kinds)
        if cfg.data.imagenet_pairs else None,
        memory_format=memory_format)
    loop = TrainLoop(model, objective, data, cfg, evaluate=functools.partial(evaluate, model, cfg))
    return model, loop.run(resume)


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    """One training run of the CLIP pair; the trained model goes to RUN_DIR/final. Returns the final metrics."""
    cfg = copy.deepcopy(cfg)
    with session(cfg.device) as info:
        model, metrics = fit(cfg, info, resume)
        if info.is_main:
            model.save_pretrained(Path(cfg.run_dir) / "final")
    return metrics
