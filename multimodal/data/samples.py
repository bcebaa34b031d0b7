"""One shard sample, sorted out: which file is the image, the caption, the metadata, and what is wrong with it.

`parse_sample` is the one place that knows the sample layout; the reader, the checker and `iter_decoded`
(plain in-order iteration for evaluation and one-off passes) all go through it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field

from PIL import Image

from multimodal.data.images import SHARD_IMAGE_KEYS, ImageError, open_image
from multimodal.data.urls import expand_urls


@dataclass
class RawSample:
    key: str
    image_ext: str | None  # e.g. "png"; None when the sample has no image file
    image: bytes | None
    caption: str  # stripped; "" when missing or empty
    meta: dict  # {} when missing or not valid JSON
    problems: list[tuple[str, str]] = field(default_factory=list)  # (kind, message), kinds as `shards check`


def parse_sample(files: dict[str, bytes], key: str) -> RawSample:
    """The files of one sample (extension -> bytes, as webdataset groups them) -> a `RawSample`."""
    problems = []
    image_ext = next((e for e in SHARD_IMAGE_KEYS if e in files), None)
    if image_ext is None:
        problems.append(("missing_image", f"no image file (looked for {SHARD_IMAGE_KEYS})"))
    raw_caption = files.get("txt")
    caption = raw_caption.decode("utf-8", errors="replace").strip() if raw_caption is not None else ""
    if not caption:
        problems.append(("missing_caption", "no .txt caption" if raw_caption is None else "empty caption"))
    meta = {}
    if "json" in files:
        try:
            meta = json.loads(files["json"])
        except ValueError as e:
            problems.append(("bad_json", f"metadata is not valid JSON ({e})"))
        if not isinstance(meta, dict):
            problems.append(("bad_json", f"metadata is a JSON {type(meta).__name__}, not an object"))
            meta = {}
    return RawSample(key, image_ext, files.get(image_ext) if image_ext else None, caption, meta, problems)


@dataclass
class Sample:
    key: str
    caption: str
    image: Image.Image  # RGB
    meta: dict


def iter_raw(url: str) -> Iterator[RawSample]:
    """The samples of one shard, in order, parsed. No node splitting (webdataset's `WebDataset` refuses to run
    inside a torchrun process group without one): the caller has already chosen its shards."""
    import webdataset as wds

    for files in wds.tarfile_to_samples()(iter([{"url": url}])):
        yield parse_sample(files, files["__key__"])


def iter_decoded(spec) -> Iterator[Sample]:
    """Every readable, captioned sample of the shards in `spec`, in shard order; unreadable ones are passed over."""
    for url in expand_urls(spec):
        for raw in iter_raw(url):
            if raw.image is None or not raw.caption:
                continue
            try:
                image = open_image(raw.image)
            except ImageError:
                continue
            yield Sample(raw.key, raw.caption, image, raw.meta)
