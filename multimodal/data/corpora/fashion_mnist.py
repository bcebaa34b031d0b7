"""Fashion-MNIST (Zalando, MIT): 70k 28x28 product photos in 10 classes, read from the Debian package's IDX files."""

from __future__ import annotations

import functools
import gzip
import io
from pathlib import Path

import numpy as np
from PIL import Image

from multimodal.data.corpora import require
from multimodal.data.sources import SourceItem

NAME = "fashion-mnist"
LICENSE = "MIT (Zalando Research; Debian package dataset-fashion-mnist)"
SOURCE = "apt-get install dataset-fashion-mnist"
ROOT = Path("/usr/share/datasets/fashion-mnist")
CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle boot"]
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "t10k": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}


@functools.lru_cache(maxsize=2)
def load_idx(root: str, part: str) -> tuple[np.ndarray, np.ndarray]:
    """(images [N,28,28] uint8, labels [N] uint8) from the IDX files."""
    image_file, label_file = FILES[part]
    with gzip.open(Path(root) / image_file) as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(Path(root) / label_file) as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def png_bytes(root: str, part: str, index: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(load_idx(root, part)[0][index], mode="L").save(buf, "PNG")
    return buf.getvalue()


def items(root: Path = ROOT) -> list[SourceItem]:
    require(root / FILES["train"][0], "Fashion-MNIST", SOURCE)
    out = []
    for part in FILES:
        _, labels = load_idx(str(root), part)
        for i, label in enumerate(labels):
            name = CLASSES[label]
            out.append(SourceItem(f"{part}_{i:05d}", name, functools.partial(png_bytes, str(root), part, i), [name],
                                  {"source": f"{root}/{FILES[part][0]}#{i}", "class_index": int(label)}))
    return out
