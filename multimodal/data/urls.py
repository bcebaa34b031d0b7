"""Turn a shard spec into a list of shard URLs.

A spec is a folder (all its `.tar` files), a glob (`data/*.tar`), a brace pattern
(`data/shard-{000000..000009}.tar`), a remote URL or a `pipe:` command, or several of these
joined by `::` (webdataset's separator).
"""

from __future__ import annotations

import glob
import os
from pathlib import Path

import braceexpand

from multimodal.errors import MissingError

REMOTE_PREFIXES = ("pipe:", "http://", "https://", "s3://", "gs://", "hf://")


def expand_urls(spec: str | os.PathLike | list) -> list[str]:
    if isinstance(spec, (list, tuple)):
        return [url for part in spec for url in expand_urls(part)]
    urls: list[str] = []
    for part in str(spec).split("::"):
        for url in braceexpand.braceexpand(part):
            if url.startswith(REMOTE_PREFIXES):
                urls.append(url)
            elif Path(url).is_dir():
                urls.extend(sorted(str(p) for p in Path(url).glob("*.tar")))
            elif glob.has_magic(url):
                urls.extend(sorted(glob.glob(url)))
            else:
                urls.append(url)
    if not urls:
        raise MissingError(f"no shards match {spec!r}")
    return urls


def shard_dir(urls: list[str]) -> Path | None:
    """The local folder of the shards if they all live in one, else None."""
    parents = {Path(u).parent for u in urls if not u.startswith(REMOTE_PREFIXES)}
    return parents.pop() if len(parents) == 1 and len(urls) and not urls[0].startswith(REMOTE_PREFIXES) else None
