"""Shard reader throughput, side by side: ours vs open_clip_train's webdataset pipeline vs a plain
`webdataset.WebDataset(..., handler=warn_and_continue)` pipeline.

Same shards, same image transform (open_clip's eval preprocessing at --image-size), same tokenizer,
same batch size and worker count; each pipeline reads the whole set once. Run once on clean shards
and once on a copy where 1% of the images are truncated.

    python bench/bench_reader.py --shards 'data/corpus/{openclipart,tuxpaint,emoji}/train' --workers 2
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import open_clip
import torch
import webdataset as wds

from multimodal.data.reader import ShardReader
from multimodal.data.urls import expand_urls


def corrupt_copy(urls: list[str], out: Path, fraction: float, seed: int = 0) -> list[str]:
    """Copy the shards, truncating the image bytes of `fraction` of the samples."""
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    new_urls, corrupted = [], 0
    for url in urls:
        dst = out / Path(url).name
        with wds.TarWriter(str(dst)) as sink:
            for sample in wds.WebDataset(url, shardshuffle=False):
                sample = {k: v for k, v in sample.items() if k != "__url__" and k != "__local_path__"}
                if rng.random() < fraction:
                    for ext in ("png", "jpg", "webp"):
                        if ext in sample:
                            sample[ext] = sample[ext][: len(sample[ext]) // 3]
                    corrupted += 1
                sink.write(sample)
        new_urls.append(str(dst))
    print(f"corrupted {corrupted} samples", file=sys.stderr)
    return new_urls


def run_ours(urls, transform, tokenizer, args):
    reader = ShardReader(urls, image_transform=transform, tokenizer=tokenizer, batch_size=args.batch_size,
                         train=False, num_workers=args.workers)
    n = sum(len(b["caption"]) for b in reader)
    return n, dict(reader.stats.skipped)


def run_open_clip(urls, transform, tokenizer, args):
    from open_clip_train.data import get_wds_dataset

    logging.getLogger().setLevel(logging.ERROR)  # its handler logs every bad sample
    oc_args = SimpleNamespace(val_data="::".join(urls), train_data=None, val_num_samples=None,
                              batch_size=args.batch_size, workers=args.workers, world_size=1,
                              dataset_resampled=False, train_data_upsampling_factors=None, seed=0)
    info = get_wds_dataset(oc_args, transform, is_train=False, tokenizer=tokenizer)
    return sum(len(images) for images, _ in info.dataloader), {}


def run_plain(urls, transform, tokenizer, args):
    h = wds.warn_and_continue
    dataset = (wds.WebDataset(urls, handler=h, shardshuffle=False, nodesplitter=wds.split_by_node,
                              workersplitter=wds.split_by_worker)
               .decode("pilrgb", handler=h).to_tuple("jpg;png;webp", "txt", handler=h)
               .map_tuple(transform, lambda text: tokenizer(text)[0], handler=h)
               .batched(args.batch_size, partial=True))
    loader = wds.WebLoader(dataset, batch_size=None, num_workers=args.workers)
    return sum(len(images) for images, _ in loader), {}


PEERS = {"multimodal": run_ours, "open_clip_train": run_open_clip, "plain webdataset": run_plain}


def measure(urls, transform, tokenizer, args, label):
    print(f"\n== {label}: {len(urls)} shards, batch {args.batch_size}, {args.workers} workers, "
          f"{args.image_size}px ==")
    rates = {}
    for name, fn in PEERS.items():
        best = 0.0
        for _ in range(args.repeats):
            started = time.perf_counter()
            n, skipped = fn(urls, transform, tokenizer, args)
            elapsed = time.perf_counter() - started
            best = max(best, n / elapsed)
        rates[name] = best
        print(f"{name:<18} {n:>7} samples  {best:8.1f} samples/s" + (f"  skipped {skipped}" if skipped else ""))
    fastest_peer = max(rates["open_clip_train"], rates["plain webdataset"])
    print(f"ratio vs open_clip_train: {rates['multimodal'] / rates['open_clip_train']:.2f}x   "
          f"vs plain webdataset: {rates['multimodal'] / rates['plain webdataset']:.2f}x   "
          f"vs faster peer: {rates['multimodal'] / fastest_peer:.2f}x")
    return rates


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="data/corpus/{openclipart,tuxpaint,emoji}/train")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--corrupt-fraction", type=float, default=0.01)
    args = parser.parse_args()
    torch.set_num_threads(1)
    urls = expand_urls(args.shards)
    transform = open_clip.image_transform(args.image_size, is_train=False)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    measure(urls, transform, tokenizer, args, "clean shards")
    tmp = Path(tempfile.mkdtemp(prefix="bench-corrupt-"))
    try:
        bad_urls = corrupt_copy(urls, tmp, args.corrupt_fraction)
        measure(bad_urls, transform, tokenizer, args, f"{args.corrupt_fraction:.0%} corrupt samples")
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
