"""Builders that turn the offline sources (Debian and PyPI packages) into captioned shards.

Each builder (a module, or an `IconSet` for the Iconify emoji packages) exposes `NAME`, `LICENSE`,
`SOURCE` (what to install) and `items()`, which returns `SourceItem`s with the license in their
metadata. `build_corpus` splits the items by a stable hash of their key (or of `meta["split_key"]`;
see `multimodal.data.split`) and writes OUT/NAME/train and OUT/NAME/eval.
"""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

from multimodal.data.images import DEFAULT_MAX_PIXELS
from multimodal.data.sources import dedupe_keys
from multimodal.data.split import EVAL_FRACTION, split_of
from multimodal.data.writer import WriteReport, write_shards
from multimodal.errors import MissingError, UsageError

PHOTO, DRAWING = "photo", "drawing"  # meta["kind"] where a corpus holds both (GCompris, Scratch)
KINDS = (PHOTO, DRAWING)

CORPORA = {
    "openclipart": "multimodal.data.corpora.openclipart",
    "tuxpaint": "multimodal.data.corpora.tuxpaint",
    "emoji": "multimodal.data.corpora.emoji",
    "fashion-mnist": "multimodal.data.corpora.fashion_mnist",
    "gcompris": "multimodal.data.corpora.gcompris",
    "scratch": "multimodal.data.corpora.scratch",
    "twemoji": "multimodal.data.corpora.twemoji",
    "openmoji": "multimodal.data.corpora.openmoji",
    "emojione": "multimodal.data.corpora.iconify:EMOJIONE",
    "icons": "multimodal.data.corpora.icons",
    "emojione-v1": "multimodal.data.corpora.iconify:EMOJIONE_V1",
    "noto-v1": "multimodal.data.corpora.iconify:NOTO_V1",
    "fxemoji": "multimodal.data.corpora.iconify:FXEMOJI",
    "streamline-emojis": "multimodal.data.corpora.iconify:STREAMLINE_EMOJIS",
    "emojione-monotone": "multimodal.data.corpora.iconify:EMOJIONE_MONOTONE",
    "mdi-things": "multimodal.data.corpora.iconify:MDI_THINGS",
}


def corpus_module(name: str):
    """The builder of a corpus: a module, or an object in one ("module:ATTR"), with NAME, LICENSE, SOURCE, items()."""
    if name not in CORPORA:
        raise UsageError(f"unknown corpus {name!r}; choose from {list(CORPORA)}")
    module, _, attr = CORPORA[name].partition(":")
    module = importlib.import_module(module)
    return getattr(module, attr) if attr else module


def require(path: Path, what: str, install: str) -> Path:
    if not path.exists():
        raise MissingError(f"{what} not found at {path}; install it with: {install}")
    return path


def drop_duplicate_files(paths: list[Path]) -> list[Path]:
    """Keep the first of byte-identical files: a copy in both splits would leak the held-out set."""
    seen: set[str] = set()
    kept = []
    for path in paths:
        digest = hashlib.sha1(path.read_bytes()).hexdigest()
        if digest not in seen:
            seen.add(digest)
            kept.append(path)
    return kept


def build_corpus(name: str, out: str | Path, *, max_side: int | None = 256, shard_size: int = 1000,
                 workers: int = 1, progress: bool = True, overwrite: bool = False,
                 **source_options) -> dict[str, WriteReport]:
    module = corpus_module(name)
    items = dedupe_keys(module.items(**source_options))  # two source names can map to one key (FxEmoji's)
    for item in items:
        item.meta.setdefault("license", module.LICENSE)
        item.meta.setdefault("corpus", name)
    splits = {"train": [], "eval": []}
    for item in items:
        splits[split_of(item.meta.get("split_key", item.key))].append(item)  # variants split with their original
    reports = {}
    for split, split_items in splits.items():
        extra = {"corpus": name, "split": split, "license": module.LICENSE, "source": module.SOURCE,
                 "split_rule": f"sha256(salt:key) < {EVAL_FRACTION} -> eval"}
        reports[split] = write_shards(split_items, Path(out) / name / split, shard_size=shard_size,
                                      max_side=max_side, workers=workers, prefix=f"{name}-{split}",
                                      max_pixels=getattr(module, "MAX_PIXELS", DEFAULT_MAX_PIXELS),
                                      index_extra=extra, progress=progress, overwrite=overwrite)
    return reports
