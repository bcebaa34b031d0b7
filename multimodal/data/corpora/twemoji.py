"""Twemoji: the 64x64 PNGs of npm's emoji-datasource-twitter, captioned with the emoji's name (no skin tones)."""

from __future__ import annotations

import json
from pathlib import Path

from multimodal.data.corpora import drop_duplicate_files, require
from multimodal.data.corpora.emoji_keys import char_of, emoji_key, has_skin_tone
from multimodal.data.corpora.npm import NPM_CACHE, npm_package, pack_command
from multimodal.data.sources import SourceItem, humanize

NAME = "twemoji"
PACKAGE, VERSION = "emoji-datasource-twitter", "16.0.0"
LICENSE = (f"CC-BY-4.0 (Twemoji graphics, Copyright Twitter, Inc. and other contributors; npm {PACKAGE} {VERSION}; "
           "names from emoji-data, MIT)")
SOURCE = f"{pack_command(PACKAGE, VERSION)}, unpacked into {NPM_CACHE}/{PACKAGE} (done on the first build)"
IMAGES = "img/twitter/64"


def entry_meta(entry: dict, png: Path, name: str) -> dict:
    keywords = [humanize(s) for s in entry.get("short_names", []) if humanize(s) != name]
    return {"source": str(png), "char": char_of(entry["unified"]), "unified": entry["unified"],
            "category": entry.get("category"), "subcategory": entry.get("subcategory"), "keywords": keywords}


def items(root: Path | None = None, cache: Path = NPM_CACHE) -> list[SourceItem]:
    root = Path(root) if root else npm_package(PACKAGE, VERSION, cache)
    entries = json.loads(require(root / "emoji.json", "emoji.json", SOURCE).read_text(encoding="utf-8"))
    by_png = {root / IMAGES / e["image"]: e for e in entries
              if e.get("has_img_twitter") and not has_skin_tone(char_of(e["unified"]))}
    out = []
    for png in drop_duplicate_files(list(by_png)):
        entry = by_png[png]
        name = entry["name"].lower()
        out.append(SourceItem(emoji_key(char_of(entry["unified"]), name), name, str(png), [name],
                              entry_meta(entry, png, name)))
    return sorted(out, key=lambda item: item.key)
