"""The training and evaluation reader: a webdataset pipeline that counts what it skips.

    shard URLs ─► (resampled | split by node, then by worker) ─► tar → samples ─► seeded shuffle
        ─► skip to the resume position ─► guarded decode + model preprocessing ─► batch + tokenize

Differences from a stock `webdataset.WebDataset(..., handler=warn_and_continue)` pipeline:
- a bad sample (broken shard, corrupt image, bomb, missing caption) is skipped and *counted*, with no
  0.5 s sleep per error; every batch carries the counts its worker saw since its last batch, and
  `ShardReader.stats` adds them up in the main process so that a training log can show them;
- the pixel count is checked from the image header before decoding;
- given a seed the order is reproducible, and `state_dict()`/`load_state_dict()` resume the stream
  exactly where it stopped (same samples, same order), for exact training resume.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice

import torch
import webdataset as wds
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from multimodal.data.backgrounds import on_background
from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image
from multimodal.data.monochrome import monochrome
from multimodal.data.samples import parse_sample
from multimodal.data.transforms import split_transform, to_uint8_tensor
from multimodal.data.urls import expand_urls, read_index, shard_dir, shard_weights
from multimodal.distributed import current
from multimodal.errors import UsageError


def derive_seed(*parts: int) -> int:
    """A stable seed from integers (webdataset's make_seed hashes strings, which varies per process)."""
    return int.from_bytes(hashlib.sha256(repr(parts).encode()).digest()[:8], "little")


@dataclass
class ReaderStats:
    """Counts gathered from all workers, in the main process."""

    samples: int = 0
    batches: int = 0
    skipped: Counter = field(default_factory=Counter)
    consumed: dict[int, int] = field(default_factory=dict)  # logical worker -> samples taken past the shuffle

    @property
    def num_skipped(self) -> int:
        return sum(self.skipped.values())


class ShardDataset(IterableDataset):
    """Yields ready batches (dicts) from inside each DataLoader worker; see the module docstring."""

    def __init__(self, urls: list[str], *, image_transform: Callable, tokenizer: Callable | None, batch_size: int,
                 resampled: bool, shuffle_buffer: int, seed: int, epoch: int, rank: int, world_size: int,
                 max_pixels: int | None, draft_size: int | None, return_meta: bool,
                 caption_transform: Callable[[str], str] | None = None, weights: list[float] | None = None,
                 worker_offset: int = 0, resume_consumed: dict[int, int] | None = None, background_p: float = 0.0,
                 monochrome_p: float = 0.0):
        super().__init__()
        self.urls = urls
        self.weights = weights
        self.image_transform = image_transform
        self.pil_transform, self.mean, self.std = split_transform(image_transform)
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.resampled = resampled
        self.shuffle_buffer = shuffle_buffer
        self.seed, self.epoch = seed, epoch
        self.rank, self.world_size = rank, world_size
        self.max_pixels = max_pixels
        self.draft_size = (draft_size, draft_size) if draft_size else None
        self.return_meta = return_meta
        self.caption_transform = caption_transform
        self.worker_offset = worker_offset
        self.resume_consumed = resume_consumed or {}
        self.background_p = background_p
        self.monochrome_p = monochrome_p

    def _worker(self) -> tuple[int, int]:
        info = get_worker_info()
        if info is None:
            return 0, 1
        # after a resume the loader starts at physical worker 0, but it must continue with the
        # logical worker whose turn it was, so every stream keeps its identity (seed, shards, position)
        return (info.id + self.worker_offset) % info.num_workers, info.num_workers

    def _shard_stream(self, worker: int, num_workers: int) -> Iterator[dict]:
        if self.resampled:
            rng = random.Random(derive_seed(self.seed, self.epoch, self.rank, worker))
            while True:
                yield {"url": rng.choices(self.urls, weights=self.weights)[0]}
        urls = list(self.urls)
        if self.shuffle_buffer > 0:
            random.Random(derive_seed(self.seed, self.epoch)).shuffle(urls)  # same order on every rank
        for url in urls[self.rank::self.world_size][worker::num_workers]:
            yield {"url": url}

    def __iter__(self) -> Iterator[dict]:
        worker, num_workers = self._worker()
        skipped: Counter = Counter()
        samples = self._tar_samples(self._shard_stream(worker, num_workers), skipped)
        if self.shuffle_buffer > 0:
            seed = derive_seed(self.seed, self.epoch, self.rank, worker, 1)
            samples = wds.shuffle(self.shuffle_buffer, min(self.shuffle_buffer, 100), seed=seed)(samples)
        consumed = self.resume_consumed.get(worker, 0)
        samples = islice(samples, consumed, None)  # raw bytes only: skipping costs no decode

        batch: list[dict] = []
        for sample in samples:
            consumed += 1
            if self.resampled:  # augmentation randomness is a function of the sample's position: resumable
                sample_seed = derive_seed(self.seed, self.epoch, self.rank, worker, consumed)
                torch.manual_seed(sample_seed)
                random.seed(sample_seed)
            decoded = self.decode(sample, skipped)
            if decoded is not None:
                batch.append(decoded)
            if len(batch) == self.batch_size:
                yield self.collate(batch, worker, consumed, skipped)
                batch = []
                skipped.clear()  # cleared, not replaced: the tar stage above holds this same Counter
        if batch or skipped:
            yield self.collate(batch, worker, consumed, skipped)  # partial (eval) or stats-only

    def _tar_samples(self, shards: Iterator[dict], skipped: Counter) -> Iterator[dict]:
        """Samples of each shard in turn; a shard that breaks (truncated, unreadable) ends there and is counted once.

        An endless (resampled) stream gives up, naming the shards, once every one of them has failed to give a
        sample since the last one that did: retrying them forever would spin without output."""
        failed: set[str] = set()
        for shard in shards:
            count = 0
            try:
                for sample in wds.tarfile_to_samples()(iter([shard])):
                    count += 1
                    yield sample
            except Exception:  # noqa: BLE001 - any I/O or tar error of one shard must not stop the stream
                skipped["broken_shard"] += 1
            if count:
                failed.clear()
            elif self.resampled:
                failed.add(shard["url"])
                if len(failed) == len(set(self.urls)):
                    raise UsageError(f"none of the {len(failed)} shard(s) could be read (e.g. {sorted(failed)[:3]}); "
                                     "check them with `multimodal shards check`")

    def decode(self, sample: dict, skipped: Counter) -> dict | None:
        raw = parse_sample(sample, sample["__key__"])
        unusable = next((kind for kind, _ in raw.problems if kind in ("missing_image", "missing_caption")), None)
        if unusable:
            skipped[unusable] += 1
            return None
        caption = self.caption_transform(raw.caption) if self.caption_transform is not None else raw.caption
        try:
            image = open_image(raw.image, max_pixels=self.max_pixels, draft_size=self.draft_size, mode=None)
        except ImageError as e:
            skipped[e.reason] += 1
            return None
        image = monochrome(image, caption, self.monochrome_p)  # as it is unless training draws a one-colour style
        image = on_background(image, self.background_p)  # white unless training draws a random one
        pixels = self.pil_transform(image)
        out = {"image": to_uint8_tensor(pixels) if self.mean is not None else pixels, "caption": caption,
               "key": raw.key}
        if self.return_meta:
            out["meta"] = raw.meta
        return out

    def collate(self, batch: list[dict], worker: int, consumed: int, skipped: Counter) -> dict:
        captions = [s["caption"] for s in batch]
        out = {
            "image": torch.stack([s["image"] for s in batch]) if batch else torch.empty(0),
            "caption": captions,
            "key": [s["key"] for s in batch],
            "_worker": worker,
            "_consumed": consumed,
            "_skipped": dict(skipped),
        }
        if self.tokenizer is not None and batch:
            out["text"] = self.tokenizer(captions)
        if self.return_meta:
            out["meta"] = [s["meta"] for s in batch]
        return out


class ShardReader:
    """Batches of `{"image": [B,3,H,W], "text": [B,L], "caption": [...], "key": [...]}` from shards.

    Args:
        spec: folder, glob, brace pattern, URL or `pipe:` command (see `multimodal.data.urls`).
        image_transform: the model's own preprocessing (PIL image -> tensor).
        tokenizer: captions -> [B, L] token ids; None to return captions only.
        train: True for an endless resampled, shuffled stream; False for one exact, ordered pass
            split across ranks and workers, each sample seen once.
        seed: the order is a function of (seed, epoch, rank, worker) alone.
        device: where batches are normalized; with a standard torchvision transform, workers send uint8
            pixels and the ToTensor/Normalize arithmetic runs here, once per batch.
        caption_transform: applied to each caption before tokenization (e.g. random prompt templates);
            in training, `random` and torch's RNG are seeded per sample, so it stays reproducible.
        upsampling_factors: training only: one per `::` part of `spec` (3 = its samples 3x as likely).
        background_p: training only: the share of transparent images composited onto a random background
            (`multimodal.data.backgrounds`) instead of white.
        monochrome_p: training only: the share of images whose caption names no colour shown in one colour
            (`multimodal.data.monochrome`: grey, a black silhouette or black lines on white).
    """

    def __init__(self, spec, *, image_transform: Callable, tokenizer: Callable | None = None, batch_size: int = 64,
                 train: bool = True, seed: int = 0, epoch: int = 0, num_workers: int = 0,
                 shuffle_buffer: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                 draft_size: int | None = None, return_meta: bool = False, rank: int | None = None,
                 world_size: int | None = None, prefetch_factor: int = 4, device: str | torch.device = "cpu",
                 caption_transform: Callable[[str], str] | None = None,
                 upsampling_factors: Sequence[float] | None = None, background_p: float = 0.0,
                 monochrome_p: float = 0.0):
        if batch_size < 1:
            raise UsageError(f"batch_size must be at least 1, got {batch_size}")
        for name, share in (("background_p", background_p), ("monochrome_p", monochrome_p)):
            if not 0 <= share <= 1:
                raise UsageError(f"{name} is a share of the images: from 0 to 1, got {share}")
            if share and not train:
                raise UsageError(f"{name}={share} is a training augmentation (train=True); evaluation reads the "
                                 "images as they are, transparent ones on white")
        self.urls = expand_urls(spec)
        self.train = train
        self.image_transform = image_transform
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        joined = current(torch.device("cpu"))  # this process's place under torchrun, else rank 0 of 1
        self._dataset_kwargs = dict(
            image_transform=image_transform, tokenizer=tokenizer, batch_size=batch_size, resampled=train,
            shuffle_buffer=(1000 if train else 0) if shuffle_buffer is None else shuffle_buffer, seed=seed,
            epoch=epoch, rank=joined.rank if rank is None else rank,
            world_size=joined.world_size if world_size is None else world_size, max_pixels=max_pixels,
            draft_size=draft_size, return_meta=return_meta, caption_transform=caption_transform,
            weights=shard_weights(spec, upsampling_factors) if train else None, background_p=background_p,
            monochrome_p=monochrome_p)
        self.stats = ReaderStats()
        self._resume: dict | None = None
        self.device = torch.device(device)
        _, mean, std = split_transform(image_transform)
        self.mean = None if mean is None else mean.to(self.device)
        self.std = None if std is None else std.to(self.device)

    @property
    def num_samples(self) -> int | None:
        """Sample count from `index.json` (or open_clip's `sizes.json`), if the shards have one."""
        folder = shard_dir(self.urls)
        index = read_index(folder) if folder else None
        if index is None:
            return None
        counts = {s["name"]: s["count"] for s in index["shards"]}
        names = [u.rsplit("/", 1)[-1] for u in self.urls]
        return sum(counts.get(n, 0) for n in names) if all(n in counts for n in names) else None

    def state_dict(self) -> dict:
        return {"batches": self.stats.batches, "consumed": dict(self.stats.consumed), "num_workers": self.num_workers}

    def load_state_dict(self, state: dict) -> None:
        if state["num_workers"] != self.num_workers:
            raise UsageError(f"cannot resume the data stream exactly: it was read with {state['num_workers']} "
                             f"workers, this run has {self.num_workers}")
        self._resume = state
        self.stats.batches = state["batches"]
        self.stats.consumed = {int(k): v for k, v in state["consumed"].items()}

    def _loader(self) -> DataLoader:
        resume = self._resume or {"batches": 0, "consumed": {}}
        dataset = ShardDataset(self.urls, **self._dataset_kwargs,
                               worker_offset=resume["batches"] % max(1, self.num_workers),
                               resume_consumed={int(k): v for k, v in resume["consumed"].items()})
        extra = {"prefetch_factor": self.prefetch_factor} if self.num_workers > 0 else {}
        # its own generator, so that creating the loader never draws from the global RNG (exact resume)
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(self._dataset_kwargs["seed"]), **extra)

    def __iter__(self) -> Iterator[dict]:
        for batch in self._loader():
            self.stats.skipped.update(batch.pop("_skipped"))
            self.stats.consumed[batch.pop("_worker")] = batch.pop("_consumed")
            if not batch["caption"]:
                continue  # stats-only tail of a worker
            if self.mean is not None:  # workers send uint8 (4x less to copy); ToTensor + Normalize happen here
                images = batch["image"].to(self.device, non_blocking=True)
                batch["image"] = images.float().div_(255).sub_(self.mean).div_(self.std)
            self.stats.samples += len(batch["caption"])
            self.stats.batches += 1
            yield batch
