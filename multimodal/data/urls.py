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
