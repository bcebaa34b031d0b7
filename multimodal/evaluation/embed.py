"""Embed a whole evaluation set once: images, captions and labels from shards or an ImageFolder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn import functional as F


@dataclass
class EmbeddedSet:
    image_features: torch.Tensor  # [N, D], L2-normalized
    captions: list[str]
    labels: list[str | None]  # first label of each sample, if any
    keys: list[str]


def eval_batches(model, data: str | Path, batch_size: int = 64, num_workers: int = 0):
    """Batches with images preprocessed for `model`: shard specs, or an ImageFolder (one subfolder per class)."""
    path = Path(str(data))
    if path.is_dir() and not any(path.glob("*.tar")) and any(p.is_dir() for p in path.iterdir()):
        yield from _imagefolder_batches(model, path, batch_size)
        return
    from multimodal.data.reader import ShardReader

    reader = ShardReader(data, image_transform=model.preprocess, tokenizer=None, batch_size=batch_size,
                         train=False, num_workers=num_workers, return_meta=True)
    for batch in reader:
        batch["labels"] = [(m.get("labels") or [None])[0] for m in batch["meta"]]
        yield batch


def _imagefolder_batches(model, root: Path, batch_size: int):
    from multimodal.data.images import open_image
    from multimodal.data.sources import image_folder

    items = image_folder(root)
    for i in range(0, len(items), batch_size):
        chunk = items[i:i + batch_size]
        yield {"image": torch.stack([model.preprocess(open_image(it.image)) for it in chunk]),
               "caption": [it.caption for it in chunk], "labels": [it.labels[0] for it in chunk],
               "key": [it.key for it in chunk]}


@torch.inference_mode()
def embed_set(model, data, batch_size: int = 64, num_workers: int = 0, autocast: bool = False,
              max_samples: int | None = None) -> EmbeddedSet:
    """Embed the images of `data` (in file order; the first `max_samples` if given)."""
    device = next(model.parameters()).device
    feats, captions, labels, keys = [], [], [], []
    for batch in eval_batches(model, data, batch_size, num_workers):
        if max_samples and len(captions) >= max_samples:
            break
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            f = model.encode_image(batch["image"].to(device))
        feats.append(F.normalize(f.float(), dim=-1).cpu())
        captions += batch["caption"]
        labels += batch["labels"]
        keys += batch["key"]
    if not feats:
        raise ValueError(f"no samples could be read from {data}")
    return EmbeddedSet(torch.cat(feats), captions, labels, keys)


@torch.inference_mode()
def embed_texts(model, texts: list[str], batch_size: int = 256, autocast: bool = False) -> torch.Tensor:
    """[N] strings -> [N, D] L2-normalized text embeddings."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(texts), batch_size):
        tokens = model.tokenize(texts[i:i + batch_size]).to(device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    return torch.cat(out) if out else torch.empty(0)
