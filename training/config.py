"""Typed training configs: a dataclass filled from a YAML recipe plus `key=value` overrides.

    multimodal train clip --config lit-default optim.lr=3e-4 steps=2000 data.batch_size=128

A recipe is a YAML file, or the name of one in training/configs/. Override values are parsed as
YAML (so `1e-3`, `true`, `[a, b]` get their types) and then checked against the field's type.
A recipe can start from another with `base: OTHER` and list only what it changes.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields

import yaml

from multimodal.errors import UsageError
from multimodal_train.recipe_files import apply_override, read_recipe


@dataclass
class ModelSection:
    name: str = "tiny"  # an architecture (create_model) or, for fine-tuning, weights (from_pretrained)
    init: str = ""  # start from these weights (a saved model folder) instead of the architecture's initialisation
    pretrained_towers: bool = True
    towers: dict = field(default_factory=dict)  # overrides of the config's tower lock settings
    grad_checkpointing: bool = False
    channels_last: bool = False  # conv image towers run faster on CPU (oneDNN) in channels-last layout
    image_size: int = 0  # 0 keeps the architecture's; e.g. 160 trains a 224 px EfficientNet 2x faster on a CPU
    compile: bool = False  # torch.compile the forward pass (the saved weights are unaffected)


@dataclass
class DataSection:
    train: str = ""  # shard spec: folder, glob, brace pattern, '::'-joined list
    upsampling_factors: list = field(default_factory=list)  # one per "::" part of train: x3 = its samples 3x as likely
    batch_size: int = 64  # per rank, per micro-batch
    num_workers: int = 2
    shuffle_buffer: int = 1000
    augment: bool = True  # open_clip's training transform (random resized crop)
    # open_clip's AugmentationCfg on top (scale, color_jitter, color_jitter_prob, gray_scale_prob, re_prob, use_timm);
    # empty keeps open_clip's default, a random resized crop of scale (0.9, 1.0)
    augment_cfg: dict = field(default_factory=dict)
    caption_templates: list = field(default_factory=list)  # e.g. ["a photo of a {}"]; applied with caption_template_p
    caption_template_p: float = 0.0
    imagenet_pairs: int = 0  # LiT on the packaged EfficientNet: N (ImageNet class vector, class name) pairs a step
    imagenet_distill: float = 0.0  # weight of distilling the ImageNet classifier on the batch (needs imagenet_pairs)
    imagenet_distill_min_p: float = 0.0  # distil only images whose teacher top-1 probability is at least this
    imagenet_distill_kinds: list = field(default_factory=list)  # distil only samples whose meta "kind" is one of these
    imagenet_glosses: bool = False  # the pairs' captions also use WordNet synonyms and glosses, not only the name
    background_p: float = 0.0  # share of transparent images put on a random background instead of white
    monochrome_p: float = 0.0  # share of images (captions naming no colour) shown grey, as a silhouette or as lines


@dataclass
class OptimSection:
    lr: float = 1e-3
    weight_decay: float = 0.1  # never on norms, biases, the temperature and the bias of SigLIP
    tower_lr_scale: float = 1.0  # LR multiplier for the trained layers of pretrained towers (not the projections)
    betas: list = field(default_factory=lambda: [0.9, 0.98])
    eps: float = 1e-6
    warmup_steps: int = 100
    grad_clip: float = 1.0  # 0 disables
    accum_steps: int = 1  # micro-batches per step; the contrastive loss sees all of them (feature caching)
    fused: bool = True  # torch's fused AdamW kernel: 10 % faster than foreach on 2 CPU cores (bench_train.py)


@dataclass
class EvalSection:
    every: int = 0  # steps; 0 = only at the end
    zeroshot: dict = field(default_factory=dict)  # name -> shard spec or ImageFolder with labels
    retrieval: dict = field(default_factory=dict)  # name -> caption shard spec
    batch_size: int = 128


SAMPLE_PROMPTS = ["a red apple", "a smiling face", "a blue car", "a green tree", "a yellow star", "a black cat",
                  "a birthday cake", "a house", "a pizza", "a red heart", "a dog", "a rocket", "a sun",
                  "a fish", "a guitar", "a flower"]


@dataclass
class DecoderSection:
    clip: str = "builtin"  # the frozen CLIP whose embeddings condition the decoder
    config: str = "unet-64px"  # decoder architecture: a name in model_configs/decoder/ or a JSON file
    condition: str = "image"  # what conditions the decoder: image (CLIP image embedding) | text (GLIDE-style)
    snr_gamma: float = 0.0  # min-SNR-gamma loss weighting (Hang et al. 2023), e.g. 5; 0 = plain MSE
    eval_data: str = ""  # held-out shards: condition sensitivity and reconstruction re-tag at every eval
    eval_images: int = 64  # held-out images those diagnostics use
    cache_dir: str = ""  # where the embedding caches go; default RUN_DIR/cache
    cond_drop: float = 0.15  # share of steps trained unconditionally, for classifier-free guidance
    self_neighbour: float = 0.0  # retrieval decoders: share of samples whose neighbour is a jittered copy of itself
    neighbour_drop: float = 0.0  # retrieval decoders: share of conditioned samples that see the zero image beside
    neighbour_pool: int = 0  # retrieval decoders: train beside one of this many nearest others; 0: retrieval_top_k
    neighbour_other_concepts: bool = False  # retrieval decoders: no drawn neighbour has the image's caption
    jitter_scale: float = 0.1  # that copy's random scale, 1 +- this
    jitter_shift: float = 0.06  # its random shift, up to +- this share of the image's side
    jitter_flip: bool = True  # and a random left-right flip
    bank_size: int = 0  # retrieval decoders: the bank's image size, upscaled on use (32 for a 64 px decoder: a
    # quarter of the bytes in the shipped folder); 0 = the decoder's
    ema_decay: float = 0.999
    sample_every: int = 500  # 0: no sample grids (the run then never loads its CLIP if its caches exist)
    sample_prompts: list = field(default_factory=lambda: list(SAMPLE_PROMPTS))
    sample_steps: int = 20
    guidance_scale: float = 3.0
    prior: str = ""  # a trained prior folder: used for the sample grids and to assemble the pipeline
    init: str = ""  # a trained decoder folder (RUN_DIR/final/decoder) to start from; empty = random init
    restandardise: bool = False  # with init trained on another CLIP: standardise the condition on this run's CLIP
    base: str = ""  # upsampler runs: the pipeline whose decoder it doubles; final/pipeline = it + this upsampler


@dataclass
class PriorSection:
    clip: str = "builtin"  # the frozen CLIP (the one the decoder is conditioned on)
    eval_data: str = ""  # held-out shards for the prior metrics
    cache_dir: str = ""  # where the embedding caches go; default RUN_DIR/cache
    cache_image_size: int = 64  # the cache file is shared with a decoder of this size (its images go unused here)
    hidden: int = 1024
    layers: int = 3


@dataclass
class FinetuneSection:
    base: str = "builtin"  # shipped name, saved folder, or open_clip ARCH:TAG
    data: str = ""  # ImageFolder, CSV/JSONL, or labelled shards
    eval_data: str = ""  # held-out split; empty = hash split of `data` (10%)
    reference: dict = field(default_factory=dict)  # name -> labelled shards from the pretraining corpus
    templates: list = field(default_factory=lambda: ["a photo of a {}."])
    wise_alphas: list = field(default_factory=lambda: [0.0, 0.25, 0.5, 0.75, 1.0])
    max_eval_samples: int = 0  # 0 = all


@dataclass
class TrainConfig:
    run_dir: str = "runs/tiny-ci"
    seed: int = 0
    steps: int = 100
    loss: str = "clip"  # clip | siglip
    precision: str = "bf16"  # bf16 (autocast on CPU and GPU) | fp32
    device: str = "auto"  # auto | cpu | cuda
    log_every: int = 10
    checkpoint_every: int = 100
    keep_checkpoints: int = 3
    max_nan_skips: int = 5  # consecutive non-finite losses skipped before the run stops
    threads: int = 0  # torch CPU threads per process; 0 = leave as is
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    eval: EvalSection = field(default_factory=EvalSection)
    finetune: FinetuneSection = field(default_factory=FinetuneSection)  # `train finetune`
    decoder: DecoderSection = field(default_factory=DecoderSection)  # `train decoder`
    prior: PriorSection = field(default_factory=PriorSection)  # `train prior`


class ConfigTypeError(UsageError, TypeError):
    """A config value of the wrong type."""


def _check_type(value, annotation, where: str):
    if isinstance(annotation, str):
        annotation = eval(annotation, vars(typing) | {"dict": dict, "list": list})  # noqa: S307 - our own annotations
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(annotation):
            try:
                return _check_type(value, option, where)
            except TypeError:
                continue
        raise ConfigTypeError(f"{where}: {value!r} does not fit {annotation}")
    target = origin or annotation
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if target is float and isinstance(value, str):  # YAML 1.1 reads "5e-4" (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if target is type(None) and value is None:
        return None
    if target is tuple and isinstance(value, (list, tuple)):  # YAML has no tuples: a list of the right shape is one
        args = typing.get_args(annotation)
        if len(args) == 2 and args[1] is Ellipsis:
            args = (args[0],) * len(value)
        if args and len(args) != len(value):
            raise ConfigTypeError(f"{where}: expected {len(args)} values, got {value!r}")
        args = args or (object,) * len(value)
        return tuple(_check_type(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigTypeError(f"{where}: expected {getattr(target, '__name__', target)}, got {value!r}")
    return value


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass `cls` from a nested dict, refusing unknown keys and wrong types."""
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise UsageError(f"unknown config key(s) {sorted(where + k for k in unknown)}; "
                         f"valid here: {sorted(known)}")
    kwargs = {}
    hints = typing.get_type_hints(cls)
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigTypeError(f"{where}{name}: expected a mapping, got {value!r}")
            kwargs[name] = from_dict(hint, value, f"{where}{name}.")
        else:
            kwargs[name] = _check_type(value, hint, where + name)
    return cls(**kwargs)


CHOICES = {"loss": ("clip", "siglip"), "precision": ("bf16", "fp32"), "device": ("auto", "cpu", "cuda"),
           "decoder.condition": ("image", "text")}
AT_LEAST_ONE = ("steps", "log_every", "checkpoint_every", "data.batch_size", "optim.accum_steps", "eval.batch_size",
                "decoder.sample_steps", "prior.layers", "prior.hidden", "prior.cache_image_size")
NON_NEGATIVE = ("seed", "threads", "keep_checkpoints", "max_nan_skips", "model.image_size", "data.num_workers",
                "data.shuffle_buffer", "data.imagenet_pairs", "data.imagenet_distill", "optim.weight_decay",
                "optim.warmup_steps", "optim.grad_clip", "eval.every", "decoder.sample_every", "decoder.guidance_scale",
                "decoder.snr_gamma", "decoder.eval_images", "decoder.neighbour_pool")
POSITIVE = ("optim.lr", "optim.eps", "optim.tower_lr_scale")
BELOW_ONE = ("decoder.jitter_scale",)  # a scale of 1 - 1 = 0 would divide by zero
UNIT_INTERVAL = ("data.caption_template_p", "data.background_p", "data.monochrome_p", "data.imagenet_distill_min_p",
                 "decoder.cond_drop", "decoder.ema_decay", "decoder.self_neighbour", "decoder.neighbour_drop",
                 "decoder.jitter_shift")


def validate(cfg: TrainConfig) -> TrainConfig:
    """Values of the right type can still be impossible (steps=-5, precision=fp8): refuse them by name."""
    def get(key: str):
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        return value

    for key, options in CHOICES.items():
        if get(key) not in options:
            raise UsageError(f"{key}={get(key)!r} is not one of {list(options)}")
    rules = [(AT_LEAST_ONE, lambda v: v >= 1, "at least 1"), (NON_NEGATIVE, lambda v: v >= 0, "0 or more"),
             (POSITIVE, lambda v: v > 0, "above 0"), (UNIT_INTERVAL, lambda v: 0 <= v <= 1, "from 0 to 1"),
             (BELOW_ONE, lambda v: 0 <= v < 1, "from 0 to below 1")]
    for keys, ok, wanted in rules:
        for key in keys:
            value = get(key)
            if not ok(value) or value != value:  # NaN fails every comparison but the second
                raise UsageError(f"{key}={value!r}: must be {wanted}")
    for key in ("imagenet_distill", "imagenet_glosses"):
        if getattr(cfg.data, key) and not cfg.data.imagenet_pairs:
            raise UsageError(f"data.{key} needs data.imagenet_pairs (how many ImageNet classes a step), e.g. 64")
    for key in ("imagenet_distill_min_p", "imagenet_distill_kinds"):
        if getattr(cfg.data, key) and not cfg.data.imagenet_distill:
            raise UsageError(f"data.{key} gates the distillation: it needs data.imagenet_distill, e.g. 1")
    if cfg.data.imagenet_distill_kinds:
        from multimodal.data.corpora import KINDS

        unknown = sorted(set(cfg.data.imagenet_distill_kinds) - set(KINDS))
        if unknown:
            raise UsageError(f"data.imagenet_distill_kinds={unknown}: the corpora mark samples as one of {list(KINDS)}")
    if cfg.data.imagenet_pairs and cfg.optim.accum_steps > 1:
        raise UsageError("data.imagenet_pairs needs optim.accum_steps=1")
    if cfg.data.augment_cfg:
        from open_clip.transform import AugmentationCfg

        checked = from_dict(AugmentationCfg, cfg.data.augment_cfg, "data.augment_cfg.")  # unknown keys, wrong types
        cfg.data.augment_cfg = {key: getattr(checked, key) for key in cfg.data.augment_cfg}  # "8e-1" -> 0.8
    return cfg


CLIP_ONLY_DATA = ("augment", "augment_cfg", "shuffle_buffer", "upsampling_factors", "caption_templates",
                  "caption_template_p", "imagenet_pairs", "imagenet_distill", "imagenet_distill_min_p",
                  "imagenet_distill_kinds", "imagenet_glosses", "background_p", "monochrome_p")


def refuse_clip_only_keys(cfg: TrainConfig, trainer: str) -> None:
    """The decoder and prior train on a cache of images and embeddings, which these CLIP reader options never reach:
    setting one would change nothing, so it is an error, not a silent no-op."""
    defaults = DataSection()
    changed = [f"data.{key}" for key in CLIP_ONLY_DATA if getattr(cfg.data, key) != getattr(defaults, key)]
    if changed:
        raise UsageError(f"{', '.join(changed)}: CLIP training option(s); the {trainer} trainer reads its images from "
                         "an embedding cache and would ignore them")


def load_config(name_or_path: str | None, overrides: list[str] = (), cls=TrainConfig):
    data = read_recipe(name_or_path) if name_or_path else {}
    for override in overrides:
        apply_override(data, override)
    config = from_dict(cls, data)
    return validate(config) if isinstance(config, TrainConfig) else config


def to_yaml(config) -> str:
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)
