"""Tux Paint stamps: photo cut-outs and drawings, each `X.png` beside `X.txt` whose first line is an English caption."""

from __future__ import annotations

import re
from pathlib import Path

from multimodal.data.corpora import drop_duplicate_files, require
from multimodal.data.sources import SourceItem, make_key, read_caption

NAME = "tuxpaint"
LICENSE = "GPL-2.0 (Debian package tuxpaint-stamps-default)"
SOURCE = "apt-get install tuxpaint-stamps-default"
ROOT = Path("/usr/share/tuxpaint/stamps")


def label_from_caption(caption: str) -> str:
    """'A moon wrasse.' -> 'moon wrasse'"""
    text = re.sub(r"^(a|an|the|some)\s+", "", caption.strip().rstrip(".!").strip(), flags=re.I)
    return text.lower()


def items(root: Path = ROOT) -> list[SourceItem]:
    require(root, "Tux Paint stamps", SOURCE)
    out = []
    for png in drop_duplicate_files(sorted(root.rglob("*.png"))):
        txt = png.with_suffix(".txt")
        if not txt.is_file():  # alternates such as X_mirror.png share the stamp's caption file
            continue
        caption = read_caption(txt)
        rel = png.relative_to(root)
        labels = [label_from_caption(caption)] if caption else []
        out.append(SourceItem(make_key(str(rel.with_suffix(""))), caption, str(png), labels,
                              {"source": str(png), "category": str(rel.parent)}))
    return out
