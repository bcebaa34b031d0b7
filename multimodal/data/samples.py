"""Plain in-order iteration over the decoded samples of shards, for evaluation and one-off passes
(training uses the batched, parallel `ShardReader`)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from PIL import Image

from multimodal.data.images import SHARD_IMAGE_KEYS, ImageError, open_image
from multimodal.data.urls import expand_urls


@dataclass
class Sample:
    key: str
    caption: str
    image: Image.Image  # RGB
    meta: dict


def iter_decoded(spec) -> Iterator[Sample]:
    """Every readable, captioned sample of the shards in `spec`, in shard order; unreadable ones are passed over."""
    import webdataset as wds

    for url in expand_urls(spec):
        for raw in wds.WebDataset(url, shardshuffle=False, empty_check=False):
            ext = next((e for e in SHARD_IMAGE_KEYS if e in raw), None)
            caption = raw.get("txt", b"").decode("utf-8", errors="replace").strip()
            if ext is None or not caption:
                continue
            try:
                image = open_image(raw[ext])
            except ImageError:
                continue
            try:
                meta = json.loads(raw["json"]) if "json" in raw else {}
            except ValueError:
                meta = {}
            yield Sample(raw["__key__"], caption, image, meta)
