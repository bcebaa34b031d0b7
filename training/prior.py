"""Training the prior (`multimodal train prior`): CLIP text embedding -> CLIP image embedding, on the
same embedding cache as the decoder, on the shared loop."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch.nn import functional as F

from multimodal.distributed import session
from multimodal_train.config import TrainConfig, refuse_clip_only_keys
from multimodal_train.decoder import CachedBatches, load_cache
from multimodal_train.distributed import wrap_ddp
from multimodal_train.embedding_cache import LazyClip
from multimodal_train.loop import TrainLoop, autocast, seed_everything
from multimodal_train.objectives import PriorObjective


@torch.inference_mode()
def prior_metrics(prior, text: torch.Tensor, image: torch.Tensor) -> dict:
    """Cosine to the true image embedding, and image retrieval top-1, for the prior vs the raw text embedding."""
    pred = prior(text)
    out = {}
    for name, emb in (("prior", pred), ("text_baseline", text)):
        out[f"{name}/cosine"] = F.cosine_similarity(emb, image).mean().item()
        out[f"{name}/retrieval_top1"] = ((emb @ image.T).argmax(1) == torch.arange(len(image))).float().mean().item()
    return out


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train the prior; RUN_DIR/final holds it. Returns the final held-out metrics (if prior.eval_data is set)."""
    from multimodal.generation import EmbeddingPrior

    cfg, section = copy.deepcopy(cfg), cfg.prior
    refuse_clip_only_keys(cfg, "prior")
    with session(cfg.device) as info:
        clip = LazyClip(section.clip)
        seed_everything(cfg.seed + info.rank)
        prior = EmbeddingPrior(clip.embed_dim, section.hidden, section.layers).to(info.device)
        cache = functools.partial(load_cache, clip, cache_dir=section.cache_dir, run_dir=cfg.run_dir,
                                  image_size=section.cache_image_size)
        train_cache = cache(cfg.data.train, name="train")
        data = CachedBatches({"text": torch.from_numpy(train_cache["text_emb"]).float(),  # [N, T, D]
                              "image": torch.from_numpy(train_cache["image_emb"]).float()},  # [N, D]
                             cfg.data.batch_size, cfg.seed, info)
        heldout = cache(section.eval_data, name="eval") if section.eval_data else None

        def evaluate() -> dict:
            if heldout is None:
                return {}
            return prior_metrics(prior, torch.from_numpy(heldout["text_emb"][:, 0]).float(),
                                 torch.from_numpy(heldout["image_emb"]).float())

        objective = PriorObjective(wrap_ddp(prior, info), functools.partial(autocast, info.device, cfg.precision))
        metrics = TrainLoop(prior, objective, data, cfg, evaluate=evaluate).run(resume)
        if info.is_main:
            prior.save_pretrained(Path(cfg.run_dir) / "final")
    return metrics
