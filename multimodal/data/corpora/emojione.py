"""EmojiOne 2.3: the SVG bodies in npm's @iconify-json/emojione rendered with rsvg-convert, captioned with the
icon name ('red-apple' -> 'red apple'). Skin tones are left out."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path

from multimodal.data.corpora import require
from multimodal.data.corpora.emoji_keys import chars_by_name, emoji_key
from multimodal.data.corpora.npm import NPM_CACHE, npm_package, pack_command
from multimodal.data.corpora.svg import RENDER_SIZE, render_svg, require_rsvg
from multimodal.data.sources import SourceItem, make_key

NAME = "emojione"
PACKAGE, VERSION = "@iconify-json/emojione", "1.2.3"
LICENSE = f"CC-BY-4.0 (EmojiOne 2.3 by Emoji One; npm {PACKAGE} {VERSION})"
SOURCE = (f"{pack_command(PACKAGE, VERSION)}, unpacked into {NPM_CACHE}/{PACKAGE} (done on the first build); "
          "apt-get install librsvg2-bin")
SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="{left} {top} {width} {height}">{body}</svg>'
BOX_DEFAULTS = {"left": 0, "top": 0, "width": 16, "height": 16}  # Iconify's defaults


def icon_svg(icon: dict, icon_set: dict) -> bytes:
    """A standalone SVG document from an Iconify icon; its box falls back to the set's, then Iconify's defaults."""
    box = {k: icon.get(k, icon_set.get(k, default)) for k, default in BOX_DEFAULTS.items()}
    return SVG.format(body=icon["body"], **box).encode()


def categories(root: Path) -> dict[str, str]:
    path = root / "metadata.json"
    cats = json.loads(path.read_text(encoding="utf-8")).get("categories", {}) if path.is_file() else {}
    return {icon: cat for cat, icons in cats.items() for icon in icons}


def items(root: Path | None = None, cache: Path = NPM_CACHE, size: int = RENDER_SIZE) -> list[SourceItem]:
    require_rsvg()
    root = Path(root) if root else npm_package(PACKAGE, VERSION, cache)
    icon_set = json.loads(require(root / "icons.json", "icons.json", SOURCE).read_text(encoding="utf-8"))
    category = categories(root)
    seen: set[str] = set()
    out = []
    for icon_name, icon in sorted(icon_set["icons"].items()):
        svg = icon_svg(icon, icon_set)
        digest = hashlib.sha1(svg).hexdigest()
        if "skin-tone" in icon_name or icon.get("hidden") or digest in seen:
            continue
        seen.add(digest)
        name = icon_name.replace("-", " ")
        char = chars_by_name().get(name)  # shares the `emoji` corpus's key (and so its split) when the names agree
        meta = {"source": f"{root / 'icons.json'}#{icon_name}", "icon": icon_name, "char": char,
                "category": category.get(icon_name)}
        out.append(SourceItem(emoji_key(char, name) if char else make_key(icon_name), name,
                              functools.partial(render_svg, svg, size), [name], meta))
    return sorted(out, key=lambda item: item.key)
