"""Embed a whole evaluation set once: images, captions and labels from shards or an ImageFolder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from multimodal.errors import UsageError


@dataclass
class EmbeddedSet:
    image_features: torch.Tensor  # [N, D], L2-normalized
    captions: list[str]
    labels: list[str | None]  # first label of each sample, if any
    keys: list[str]


def eval_batches(model, data: str | Path, batch_size: int = 64, num_workers: int = 0):
    """Batches with images preprocessed for `model`: shard specs, or an ImageFolder (one subfolder per class)."""
    from multimodal.data.sources import detect_kind

    kind = detect_kind(data)
    if kind == "imagefolder":
        yield from _imagefolder_batches(model, Path(data), batch_size)
        return
    if kind != "shards":
        raise UsageError(f"{data}: evaluation reads shards or an ImageFolder; this looks like a {kind} source, "
                         "write it into shards first (multimodal shards write)")
    from multimodal.data.reader import ShardReader

    reader = ShardReader(data, image_transform=model.preprocess, tokenizer=None, batch_size=batch_size,
                         train=False, num_workers=num_workers, return_meta=True)
    for batch in reader:
        batch["labels"] = [(m.get("labels") or [None])[0] for m in batch["meta"]]
        yield batch


def _imagefolder_batches(model, root: Path, batch_size: int):
    from multimodal.data.images import open_image
    from multimodal.data.sources import dedupe_keys, image_folder

    # cat.jpg beside cat.png: one key each, or a paired report loses one; salted by the path inside the folder, so
    # that reports of one folder reached by two spellings (./set, /data/set) still pair up
    items = dedupe_keys(image_folder(root), lambda item: item.meta["source"])
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        yield {"image": torch.stack([model.preprocess(open_image(it.image)) for it in chunk]),
               "caption": [it.caption for it in chunk], "labels": [it.labels[0] for it in chunk],
               "key": [it.key for it in chunk]}


def embed_set(model, data, batch_size: int = 64, num_workers: int = 0, autocast: bool = False,
              max_samples: int | None = None) -> EmbeddedSet:
    """Embed the images of `data` (in file order; the first `max_samples` if given)."""
    feats, captions, labels, keys = [], [], [], []
    for batch in eval_batches(model, data, batch_size, num_workers):
        if max_samples and len(captions) >= max_samples:
            break
        feats.append(model.embed_images(batch["image"], batch_size=batch_size, autocast=autocast).cpu())
        captions += batch["caption"]
        labels += batch["labels"]
        keys += batch["key"]
    if not feats:
        raise UsageError(f"no samples could be read from {data}")
    return EmbeddedSet(torch.cat(feats), captions, labels, keys)
