"""OpenMoji: the colour SVGs of npm's openmoji rendered with rsvg-convert, captioned with their CLDR annotation.

About a fifth are OpenMoji's own extras (concepts outside Unicode, in the private use area). Skin tones are left out.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

from multimodal.data.corpora import drop_duplicate_files, require
from multimodal.data.corpora.emoji_keys import char_of, emoji_key, has_skin_tone
from multimodal.data.corpora.npm import NPM_CACHE, npm_package, pack_command
from multimodal.data.corpora.svg import RENDER_SIZE, render_svg, require_rsvg
from multimodal.data.sources import SourceItem

NAME = "openmoji"
PACKAGE, VERSION = "openmoji", "17.0.0"
LICENSE = f"CC-BY-SA-4.0 (OpenMoji, https://openmoji.org, author per sample; npm {PACKAGE} {VERSION})"
SOURCE = (f"{pack_command(PACKAGE, VERSION)}, unpacked into {NPM_CACHE}/{PACKAGE} (done on the first build); "
          "apt-get install librsvg2-bin")


def keywords(row: dict, name: str) -> list[str]:
    """Unicode's tags, then OpenMoji's own, without repeats or the name itself."""
    out: list[str] = []
    for word in f"{row.get('tags', '')},{row.get('openmoji_tags', '')}".split(","):
        word = word.strip()
        if word and word.lower() != name.lower() and word not in out:
            out.append(word)
    return out


def row_meta(row: dict, svg: Path, name: str) -> dict:
    return {"source": str(svg), "char": char_of(row["hexcode"]), "hexcode": row["hexcode"],
            "category": row.get("group"), "subcategory": row.get("subgroups"), "keywords": keywords(row, name),
            "author": row.get("openmoji_author")}


def items(root: Path | None = None, cache: Path = NPM_CACHE, size: int = RENDER_SIZE) -> list[SourceItem]:
    require_rsvg()
    root = Path(root) if root else npm_package(PACKAGE, VERSION, cache)
    with open(require(root / "data" / "openmoji.csv", "openmoji.csv", SOURCE), encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    by_svg = {root / "color" / "svg" / f"{row['hexcode']}.svg": row for row in rows
              if not row.get("skintone") and not has_skin_tone(char_of(row["hexcode"]))}
    out = []
    for svg in drop_duplicate_files(list(by_svg)):
        row = by_svg[svg]
        name = row["annotation"].strip()
        out.append(SourceItem(emoji_key(char_of(row["hexcode"]), name), name,
                              functools.partial(render_svg, str(svg), size), [name], row_meta(row, svg, name)))
    return sorted(out, key=lambda item: item.key)
