"""Training the CLIP-conditioned decoder (`multimodal train decoder`).

It reads a precomputed embedding cache (training/embedding_cache.py) and runs on the shared loop: YAML +
overrides, torchrun DDP, bf16 autocast, atomic checkpoints, exact resume, NaN guard, TensorBoard and
curves. It keeps an EMA of the denoiser's weights and saves a grid of samples for fixed prompts and
seeds every `decoder.sample_every` steps.
"""

from __future__ import annotations

import copy
import functools
import json
import sys
from pathlib import Path

import numpy as np
import torch

from multimodal.distributed import DistInfo, session
from multimodal.errors import UsageError
from multimodal_train.config import DecoderSection, TrainConfig, refuse_clip_only_keys
from multimodal_train.distributed import wrap_ddp
from multimodal_train.embedding_cache import LazyClip, load_or_build
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


def load_cache(clip: LazyClip, spec: str, cache_dir: str, run_dir: str, name: str,
               image_size: int) -> dict[str, np.ndarray]:
    if not spec:
        raise UsageError("data.train is empty: give the training shards")
    return load_or_build(clip, spec, cache_dir or Path(run_dir) / "cache", name, image_size)


def load_init(unet, folder: str, keep_stats: bool = True) -> bool:
    """Start from a trained decoder's weights (RUN_DIR/final/decoder): a warm start with a fresh optimizer.
    True if it also brought the condition statistics its weights were trained with (not with keep_stats=False: a
    warm start on another CLIP's embeddings, which the run then standardises afresh). A 3-channel decoder can start
    a 6-channel one (a retrieval decoder): the new input channels start at zero weights, so the warm start first
    computes what the trained decoder did and learns to use the image beside it (as inpainting UNets are made)."""
    try:
        trained = type(unet).from_pretrained(folder, torch_dtype=torch.float32)
        weights = trained.state_dict()
        mine, theirs = unet.conv_in.weight, weights["conv_in.weight"]
        if theirs.shape[1] < mine.shape[1] and theirs.shape[0] == mine.shape[0]:
            weights["conv_in.weight"] = torch.cat([theirs, theirs.new_zeros(
                (mine.shape[0], mine.shape[1] - theirs.shape[1], *mine.shape[2:]))], dim=1)
        elif unet.config.get("retrieval_top_k"):  # the same function under another retrieval_scale
            ratio = trained.config.get("retrieval_scale", 1.0) / unet.config.get("retrieval_scale", 1.0)
            weights["conv_in.weight"] = torch.cat([theirs[:, :3], ratio * theirs[:, 3:]], dim=1)
        unet.load_state_dict(weights)
        if ("condition_mean" in trained.config) != ("condition_mean" in unet.config):
            raise ValueError("one of the two standardises its condition (condition_norm) and the other does not")
        inherited = "condition_mean" in trained.config and keep_stats
        if inherited:
            unet.register_to_config(condition_mean=trained.config.condition_mean,
                                    condition_std=trained.config.condition_std)
    except (OSError, RuntimeError, ValueError) as e:
        raise UsageError(f"decoder.init={folder}: cannot start from it ({str(e).splitlines()[0]}); give a "
                         "RUN_DIR/final/decoder folder of the architecture that decoder.config names") from None
    print(f"decoder: starting from the weights in {folder}", file=sys.stderr)
    return inherited


def check_section(unet, section: DecoderSection) -> None:
    """Checked before minutes of cache loading: a retrieval decoder's bank size divides its image size; an upsampler
    needs decoder.base (the pipeline it completes, whose decoder makes its low-res size) and no prior or held-out
    diagnostics; a decoder that is not an upsampler takes no decoder.base, and one that does not retrieve takes no
    neighbour knobs."""
    from multimodal.generation.retrieval import check_bank_size

    if unet.config.get("retrieval_top_k"):
        check_bank_size(unet.config.sample_size, section.bank_size or unet.config.sample_size)
    else:
        knobs = [f"decoder.{key}" for key in ("neighbour_pool", "neighbour_drop", "neighbour_other_concepts")
                 if getattr(section, key)]
        if knobs:
            raise UsageError(f"{', '.join(knobs)}: for retrieval decoders, and {section.config} has no "
                             "retrieval_top_k")
    size = unet.config.get("low_res_size")
    if not size:
        if section.base:
            raise UsageError(f"decoder.base is for upsamplers, and {section.config} has no low_res_size")
        return
    if section.prior or section.eval_data or not section.base:
        raise UsageError("an upsampler (low_res_size in its decoder config) trains without decoder.prior and "
                         "decoder.eval_data, and needs decoder.base: the pipeline whose images it doubles")
    config = Path(section.base) / "decoder" / "config.json"
    if not config.is_file():
        raise UsageError(f"decoder.base={section.base}: not a pipeline folder (no decoder/config.json)")
    if json.loads(config.read_text())["sample_size"] != size:
        raise UsageError(f"decoder.base={section.base}: its decoder does not make the {size} px images this "
                         "upsampler takes")


NEAR_COPY = 0.98  # CLIP cosine above which two training images count as copies of one another


def neighbour_bank(unet, section: DecoderSection, cache: dict):
    """For a retrieval decoder: the bank of its training images, and each image's K nearest others [N, K] (itself
    and its near-copies left out, so that it learns to change a neighbour, not to copy it; K is `neighbour_pool`, or
    the decoder's `retrieval_top_k` as it samples; with `neighbour_other_concepts`, none of them has the image's own
    caption, as a held-out concept's neighbours never do); else (None, None)."""
    from multimodal.generation import NeighbourBank

    if not unet.config.get("retrieval_top_k"):
        return None, None
    k = section.neighbour_pool or unet.config.retrieval_top_k
    if section.condition != "image":
        raise UsageError("a retrieval decoder finds its neighbours by CLIP image embedding: decoder.condition=image")
    bank = NeighbourBank.from_arrays(cache["images"], cache["image_emb"], str(cache.get("clip_hash", "")))
    emb = torch.from_numpy(cache["image_emb"]).float()
    if k >= len(emb):
        raise UsageError(f"{k} nearest others per image (decoder.neighbour_pool, else retrieval_top_k): the pool "
                         f"must be smaller than the {len(emb)} training images")
    concepts = concept_ids(cache["captions"]) if section.neighbour_other_concepts else None
    neighbours = torch.cat([bank.nearest(emb[i:i + 1024], k, exclude_above=NEAR_COPY,
                                         exclude_same=None if concepts is None else (concepts[i:i + 1024], concepts))
                            for i in range(0, len(emb), 1024)])
    return bank, neighbours


def concept_ids(captions) -> torch.Tensor:
    """Captions [N] -> [N] ids, equal for captions equal up to case and spacing: one concept drawn in several styles."""
    ids: dict[str, int] = {}
    return torch.tensor([ids.setdefault(" ".join(str(c).split()).casefold(), len(ids)) for c in captions])


def pipeline(clip: LazyClip, section: DecoderSection, unet, noise_scheduler, device, bank=None):
    """The text-to-image pipeline of this decoder (an identity prior when none is trained yet), or for an upsampler,
    the `decoder.base` pipeline completed by it."""
    from multimodal.generation import EmbeddingPrior, TextToImagePipeline, sampling_scheduler

    sampler = sampling_scheduler(noise_scheduler.config)
    if unet.config.get("low_res_size"):
        base = TextToImagePipeline.from_pretrained(section.base)
        pipe = TextToImagePipeline(base.clip, base.prior, base.decoder, base.scheduler, unet, sampler, base.bank)
    else:
        if section.condition == "text" or not section.prior:  # the text embedding itself (GLIDE-style)
            prior = EmbeddingPrior.identity(clip.embed_dim)
        else:
            prior = EmbeddingPrior.from_pretrained(section.prior)
        pipe = TextToImagePipeline(clip.model, prior, unet, sampler, bank=bank)
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


def diagnostics(pipe, clip, heldout: dict, section: DecoderSection, noise_scheduler, path: Path) -> dict:
    """Condition sensitivity per timestep and reconstruction re-tag on held-out cache rows; saves real-vs-decoded."""
    from PIL import Image

    from multimodal.evaluation.generation import decoder_sensitivities, reconstruction_metrics
    from multimodal.generation.grid import captioned_grid

    n = len(heldout["images"])
    pick = np.sort(np.random.default_rng(0).choice(n, min(section.eval_images, n), replace=False))
    pixels = torch.from_numpy(heldout["images"][pick]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
    cond = torch.from_numpy(heldout[f"{section.condition}_emb"][pick]).float()
    cond = cond[:, 0] if cond.ndim == 3 else cond  # text: the bare caption
    pipe.eval_mode()
    metrics = decoder_sensitivities(pipe, noise_scheduler, pixels, cond)
    captions = [str(c) for c in heldout["captions"]]
    real = [Image.fromarray(a) for a in heldout["images"][pick]]  # at the decoder's size: the fair ceiling
    recon, images = reconstruction_metrics(pipe, clip, real, [captions[i] for i in pick], captions, cond,
                                           steps=section.sample_steps, guidance_scale=section.guidance_scale)
    pairs = [im for pair in zip(real[:16], images[:16]) for im in pair]
    path.parent.mkdir(parents=True, exist_ok=True)
    captioned_grid(pairs, [t for i in pick[:16] for t in (captions[i], "decoded")], cols=8).save(path)
    return {**metrics, **{k: v for k, v in recon.items() if k != "recon_retag_hits"}}  # the log takes numbers


def train(cfg: TrainConfig, resume: str | None = None) -> dict:
    """Train the denoiser; RUN_DIR/final holds its EMA weights, its scheduler and (with a prior) the pipeline."""
    from multimodal.generation import create_decoder, set_condition_stats

    cfg, section = copy.deepcopy(cfg), cfg.decoder
    refuse_clip_only_keys(cfg, "decoder")
    with session(cfg.device) as info:
        clip = LazyClip(section.clip)
        seed_everything(cfg.seed + info.rank)
        unet, noise_scheduler = create_decoder(section.config, clip.embed_dim)
        check_section(unet, section)
        inherited = load_init(unet, section.init, not section.restandardise) if section.init else False
        unet = unet.to(info.device)
        cache = load_cache(clip, cfg.data.train, section.cache_dir, cfg.run_dir, "train", unet.config.sample_size)
        bank_size = section.bank_size or unet.config.sample_size
        bank_cache = cache if bank_size == unet.config.sample_size else \
            load_cache(clip, cfg.data.train, section.cache_dir, cfg.run_dir, "train", bank_size)  # same rows
        bank, neighbours = neighbour_bank(unet, section, bank_cache)
        data = CachedBatches({"images": torch.from_numpy(cache["images"]),  # [N, S, S, 3] uint8
                              "cond": torch.from_numpy(cache[f"{section.condition}_emb"]).float(),  # [N, (T,) D]
                              **({"neighbours": neighbours} if bank is not None else {})},  # [N, K]
                             cfg.data.batch_size, cfg.seed, info)
        if "condition_mean" in unet.config and not inherited:  # a warm start keeps the statistics it learned with
            set_condition_stats(unet, data.tensors["cond"].flatten(0, -2))
        heldout = load_cache(clip, section.eval_data, section.cache_dir, cfg.run_dir, "eval",
                             unet.config.sample_size) if section.eval_data else None
        objective = DiffusionObjective(unet, wrap_ddp(unet, info), noise_scheduler, section.cond_drop,
                                       section.ema_decay, functools.partial(autocast, info.device, cfg.precision),
                                       section.snr_gamma, bank, section.self_neighbour,
                                       {"scale": section.jitter_scale, "shift": section.jitter_shift,
                                        "flip": section.jitter_flip}, section.neighbour_drop)
        run_dir = Path(cfg.run_dir)

        def evaluate() -> dict:
            if heldout is None:
                return {}
            pipe = pipeline(clip, section, objective.ema_unet(), noise_scheduler, info.device, bank)
            path = run_dir / "samples" / f"reconstruction-{loop.step:08d}.png"
            return diagnostics(pipe, clip.model, heldout, section, noise_scheduler, path)

        def on_log(step: int) -> None:
            if section.sample_every and step % section.sample_every == 0:
                pipe = pipeline(clip, section, objective.ema_unet(), noise_scheduler, info.device, bank)
                save_grid(pipe, section, run_dir / "samples" / f"step-{step:08d}.png")

        loop = TrainLoop(unet, objective, data, cfg, evaluate=evaluate, on_log=on_log)
        metrics = loop.run(resume)
        if info.is_main:
            final, ema = run_dir / "final", objective.ema_unet()
            ema.save_pretrained(final / "decoder")
            noise_scheduler.save_pretrained(final / "scheduler")
            if section.sample_every or section.prior or section.base:
                pipe = pipeline(clip, section, ema, noise_scheduler, info.device, bank)
            if section.sample_every:
                save_grid(pipe, section, run_dir / "samples" / "final.png")
            if section.prior or section.base:
                pipe.save_pretrained(final / "pipeline")
                print(f"wrote the text-to-image pipeline to {final / 'pipeline'}", file=sys.stderr)
    return metrics
