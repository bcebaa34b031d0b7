"""Open Clip Art Library (public domain): the Debian PNG renders, captioned from the matching SVG's metadata."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from pathlib import Path

from multimodal.data.corpora import drop_duplicate_files, require
from multimodal.data.sources import SourceItem, make_key

NAME = "openclipart"
LICENSE = "Public domain (Open Clip Art Library; Debian packages openclipart-png, openclipart-svg)"
SOURCE = "apt-get install openclipart-png openclipart-svg"
ROOT = Path("/usr/share/openclipart")
# The collection holds families of near-identical drawings (1,378 generated stars, one title each
# family); more than this many per title would dominate training and the held-out split.
MAX_PER_TITLE = 25
MAX_KEYWORDS = 8
# A trusted source with a few 10k x 16k drawings (milk, bread, cheese...): admit them, they are downscaled on write.
MAX_PIXELS = 250_000_000
NS = {"dc": "http://purl.org/dc/elements/1.1/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
      "cc": "http://web.resource.org/cc/"}
_JUNK_TITLE = re.compile(r"^(clipart by .*? - |svg .*collection.*|various cliparts?|untitled.*)", re.I)
_JUNK_KEYWORDS = {"", "clip art", "clipart", "public domain", "image", "media", "png", "svg", "externalsource",
                  "unsorted", "special", "openclipart", "ocal"}


def read_svg_metadata(svg: Path) -> tuple[str, list[str], str]:
    """(title, keywords, creator) from the SVG's Dublin Core block; empty strings when absent."""
    try:
        root = ET.parse(svg).getroot()
    except ET.ParseError:
        return "", [], ""
    work = root.find(".//cc:Work", NS)
    if work is None:
        return "", [], ""
    title = (work.findtext("dc:title", "", NS) or "").strip()
    creator = (work.findtext("dc:creator/cc:Agent/dc:title", "", NS) or "").strip()
    keywords = [(li.text or "").strip() for li in work.findall("dc:subject/rdf:Bag/rdf:li", NS)]
    return title, keywords, creator


def clean_title(title: str, stem: str = "") -> str:
    """'Clipart by Nicu Buculei - arrow08_4' -> 'arrow'; falls back to the file name."""
    text = _JUNK_TITLE.sub("", title).strip() or stem
    text = re.sub(r"\(.*?\)", " ", text)
    text = re.sub(r"\d+(pt|step|px)?", " ", text)  # numbering: 01, 08_4, 37pt16step
    text = re.sub(r"[^A-Za-z' ]+", " ", text)
    return " ".join(text.split()).lower()


def caption_for(title: str, keywords: list[str], creator: str) -> str:
    creator_words = set(creator.lower().split())
    extra = []
    for kw in keywords:
        k = kw.lower().strip()
        if k in _JUNK_KEYWORDS or k in title or (creator_words and set(k.split()) <= creator_words):
            continue
        if k not in extra:
            extra.append(k)
    return f"{title}, {', '.join(extra[:MAX_KEYWORDS])}" if extra else title


def items(root: Path = ROOT) -> list[SourceItem]:
    require(root / "png", "Open Clip Art PNGs", SOURCE)
    require(root / "svg", "Open Clip Art SVGs", SOURCE)
    records = []
    for png in drop_duplicate_files(sorted((root / "png").rglob("*.png"))):
        rel = png.relative_to(root / "png")
        svg = root / "svg" / rel.with_suffix(".svg")
        raw_title, keywords, creator = read_svg_metadata(svg) if svg.is_file() else ("", [], "")
        records.append((png, rel, svg, raw_title, keywords, creator, clean_title(raw_title, png.stem)))
    # a title shared by many files names a collection ("lemon svg theme"), not the drawing: use the file name
    title_counts = Counter(r[-1] for r in records)
    per_title: dict[str, int] = defaultdict(int)
    out = []
    for png, rel, svg, raw_title, keywords, creator, title in records:
        if title_counts[title] > MAX_PER_TITLE or title == creator.lower():
            title = clean_title(png.stem) or title
        if not title or per_title[title] >= MAX_PER_TITLE:
            continue
        per_title[title] += 1
        meta = {"source": str(png), "svg": str(svg) if svg.is_file() else None, "title": raw_title,
                "keywords": [k for k in keywords if k], "category": str(rel.parent)}
        out.append(SourceItem(make_key(str(rel.with_suffix(""))), caption_for(title, keywords, creator), str(png),
                              [title], meta))
    return out
