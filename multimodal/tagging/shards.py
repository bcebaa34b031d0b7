"""Embedding and tagging straight from webdataset shards, split over processes and machines with torchrun.

    multimodal index data/corpus/emoji/train --out emoji-index
    torchrun --nproc_per_node 2 -m multimodal tag 'shards/{000000..000099}.tar' --labels-file L --out tags.parquet

Rank r of N takes shards r, r + N, r + 2N, ... of the spec's list. Each shard is embedded on its own (batches never
cross a shard), so a sample's vector does not depend on how the shards were split, and the merged result equals
the one-process result exactly. Each rank writes its part under a temporary name and renames it when complete;
rank 0 waits for every part (a barrier on the torchrun process group: gloo on CPU) and merges them in shard order.
A rank that dies leaves at most a temporary file, never a part under its final name. clip-retrieval's `inference`
does this job with Spark; here it is torchrun, as for training.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from multimodal.data.samples import iter_raw
from multimodal.data.urls import REMOTE_PREFIXES, expand_urls, shard_dir


@dataclass
class ShardEmbeddings:
    ids: list[str]  # "SHARD#KEY": the shard's name under `root` (its full URL when remote)
    vectors: np.ndarray  # [N, D] float32 unit vectors, row i for ids[i]
    shard: np.ndarray  # [N] int: the index in the spec's shard list of each row's shard (the merge order)
    skipped: list[dict] = field(default_factory=list)  # {"file", "reason", "message"}
    root: str = "."  # the shards' folder (local shards in one folder), else "."


def shard_name(url: str, root: Path | None) -> str:
    return os.path.relpath(url, root) if root is not None and not url.startswith(REMOTE_PREFIXES) else url


def read_shard(url: str, name: str, skipped: list[dict]) -> tuple[list[str], list[bytes]]:
    """(keys, encoded images) of one shard, in order; samples without an image and a broken tail are recorded."""
    keys, images = [], []
    try:
        for raw in iter_raw(url):
            if raw.image is None:
                skipped.append({"file": f"{name}#{raw.key}", "reason": "missing_image",
                                "message": f"{name}#{raw.key}: no image file"})
                continue
            keys.append(raw.key)
            images.append(raw.image)
    except Exception as e:  # noqa: BLE001 - a truncated or unreadable shard ends there; the rest still counts
        skipped.append({"file": name, "reason": "broken_shard", "message": f"{name}: unreadable after "
                        f"{len(keys)} samples ({type(e).__name__}: {e})"})
    return keys, images


def embed_shards(tagger, spec, rank: int = 0, world_size: int = 1, progress: bool = False) -> ShardEmbeddings:
    """The image embeddings of every sample in this rank's shards of `spec`."""
    from tqdm.auto import tqdm

    urls = expand_urls(spec)
    root = shard_dir(urls)
    ids, vectors, shard, skipped = [], [], [], []
    mine = list(range(len(urls)))[rank::world_size]
    for i in tqdm(mine, desc=f"embedding shards (rank {rank})", unit="shard", disable=not progress, file=sys.stderr):
        name = shard_name(urls[i], root)
        keys, images = read_shard(urls[i], name, skipped)
        feats, indices, errors = tagger.encode_images(images, on_error="skip") if images else ([], [], [])
        ids += [f"{name}#{keys[j]}" for j in indices]
        if len(indices):
            vectors.append(feats.numpy())
        shard += [i] * len(indices)
        skipped += [{"file": f"{name}#{keys[j]}", "reason": e.reason, "message": f"{name}#{keys[j]}: {e}"}
                    for j, e in errors]
    dim = tagger.model.embed_dim
    return ShardEmbeddings(ids, np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                           np.asarray(shard, dtype=np.int64), skipped, str(root) if root is not None else ".")


def embed_shards_distributed(tagger, spec, out: str | Path, progress: bool = False) -> ShardEmbeddings | None:
    """`embed_shards` on every torchrun rank (or in this one process); the merged result on rank 0, None elsewhere.
    The parts live in a hidden folder beside `out` until rank 0 has merged them."""
    from multimodal.distributed import barrier, session

    out = Path(out)
    with session(tagger.device.type) as info:
        part = embed_shards(tagger, spec, info.rank, info.world_size, progress=progress)
        if info.world_size == 1:
            return part
        parts = out.parent / f".{out.name}.parts"
        parts.mkdir(parents=True, exist_ok=True)
        write_part(parts / f"part-{info.rank:05d}-of-{info.world_size:05d}.npz", part)
        barrier()
        if not info.is_main:
            return None
        merged = merge([read_part(parts / f"part-{r:05d}-of-{info.world_size:05d}.npz")
                        for r in range(info.world_size)])
        shutil.rmtree(parts, ignore_errors=True)
        return merged


def write_part(path: Path, part: ShardEmbeddings) -> None:
    import json

    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npz")
    np.savez(tmp, vectors=part.vectors, shard=part.shard, ids=np.asarray(part.ids, dtype=str),
             extra=np.asarray(json.dumps({"skipped": part.skipped, "root": part.root})))
    os.replace(tmp, path)


def read_part(path: Path) -> ShardEmbeddings:
    import json

    with np.load(path) as data:
        extra = json.loads(str(data["extra"]))
        return ShardEmbeddings(data["ids"].tolist(), data["vectors"], data["shard"], extra["skipped"], extra["root"])


def merge(parts: list[ShardEmbeddings]) -> ShardEmbeddings:
    """Rows of all parts in shard order (a stable sort keeps each shard's own order)."""
    shard = np.concatenate([p.shard for p in parts])
    order = np.argsort(shard, kind="stable")
    ids = [i for p in parts for i in p.ids]
    return ShardEmbeddings([ids[k] for k in order], np.concatenate([p.vectors for p in parts])[order], shard[order],
                           [s for p in parts for s in p.skipped], parts[0].root)
