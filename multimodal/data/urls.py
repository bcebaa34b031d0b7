"""Turn a shard spec into a list of shard URLs.

A spec is a folder (all its `.tar` files), a glob (`data/*.tar`), a brace pattern
(`data/shard-{000000..000009}.tar`), a remote URL or a `pipe:` command, or several of these
joined by `::` (webdataset's separator).
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from pathlib import Path

import braceexpand

from multimodal.errors import MissingError, UsageError

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://", "hf://")
CORPUS_HINT = "the offline corpora are built with: multimodal shards corpus all --out data/corpus"


def expand_urls(spec: str | os.PathLike | list) -> list[str]:
    """Every shard URL the spec names; a local path that does not exist, or matches no .tar, is an error."""
    if isinstance(spec, (list, tuple)):
        return [url for part in spec for url in expand_urls(part)]
    urls: list[str] = []
    for part in str(spec).split("::"):
        for url in braceexpand.braceexpand(part):
            if url.startswith(REMOTE_PREFIXES):
                urls.append(url)
            elif Path(url).is_dir():
                found = sorted(str(p) for p in Path(url).glob("*.tar"))
                urls.extend(found or _missing(url, spec, "holds no .tar shards"))
            elif glob.has_magic(url):
                urls.extend(sorted(glob.glob(url)) or _missing(url, spec, "matches no file"))
            elif Path(url).is_file():
                urls.append(url)
            else:
                _missing(url, spec, "does not exist")
    return urls


def _missing(url: str, spec, why: str) -> list[str]:
    where = "" if str(spec) == url else f" (from {str(spec)!r})"
    raise MissingError(f"no shards: {url}{where} {why}; {CORPUS_HINT}, or give your own with "
                       "`multimodal shards write`")


def shard_dir(urls: list[str]) -> Path | None:
    """The local folder of the shards if they all live in one, else None."""
    parents = {Path(u).parent for u in urls if not u.startswith(REMOTE_PREFIXES)}
    return parents.pop() if len(parents) == 1 and len(urls) and not urls[0].startswith(REMOTE_PREFIXES) else None


def read_index(path: str | Path) -> dict | None:
    """The index of a shard folder (or of the folder holding a shard), or None if it has none."""
    path = Path(path)
    index = (path if path.is_dir() else path.parent) / "index.json"
    return json.loads(index.read_text()) if index.is_file() else None


def shard_weights(spec, factors: Sequence[float] | None = None) -> list[float]:
    """One drawing weight per shard URL of `spec`: the factor of its `::`-joined part (open_clip's upsampling).

    A drawn shard is read whole, so plain uniform drawing already gives each sample the same chance; a factor
    of 3 makes every sample of that part three times as likely."""
    parts = str(spec).split("::") if not isinstance(spec, (list, tuple)) else list(spec)
    factors = [1.0] * len(parts) if factors is None else [float(f) for f in factors]
    if len(factors) != len(parts) or any(f < 0 for f in factors) or not any(factors):
        raise UsageError(f"upsampling factors {factors} do not fit the {len(parts)} part(s) of {spec!r}: "
                         "give one non-negative factor per `::`-joined part, not all zero")
    return [factor for part, factor in zip(parts, factors) for _ in expand_urls(part)]
