"""Emoji and icon sets in npm's Iconify JSON packages (SVG bodies inside icons.json), rendered with rsvg-convert and
captioned with their names. One `IconSet` per package; each is a corpus (see `CORPORA`). Skin tones are left out;
an icon set can keep only the categories (its metadata.json) that hold things, and leave out names that mark an
interface glyph ('airplane-off', 'beaker-plus')."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from multimodal.data.corpora import require
from multimodal.data.corpora.emoji import emoji_name
from multimodal.data.corpora.emoji_keys import chars_by_name, emoji_key, qualified
from multimodal.data.corpora.npm import NPM_CACHE, npm_package, pack_command
from multimodal.data.corpora.svg import RENDER_SIZE, render_svg, require_rsvg
from multimodal.data.sources import SourceItem, make_key
from multimodal.errors import UsageError

SVG = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="{left} {top} {width} {height}">{body}</svg>'
BOX_DEFAULTS = {"left": 0, "top": 0, "width": 16, "height": 16}  # Iconify's defaults
VARIANT = re.compile(r"-\d+$")  # Streamline's 'baby-1', 'baby-2': drawings of the same emoji


def icon_svg(icon: dict, icon_set: dict) -> bytes:
    """A standalone SVG document from an Iconify icon; its box falls back to the set's, then Iconify's defaults."""
    box = {k: icon.get(k, icon_set.get(k, default)) for k, default in BOX_DEFAULTS.items()}
    return SVG.format(body=icon["body"], **box).encode()


def categories(root: Path) -> dict[str, str]:
    path = root / "metadata.json"
    cats = json.loads(path.read_text(encoding="utf-8")).get("categories", {}) if path.is_file() else {}
    return {icon: cat for cat, icons in cats.items() for icon in icons}


def icons_in(root: Path, wanted: tuple[str, ...]) -> set[str]:
    """The icons listed under any of the `wanted` categories of metadata.json (an icon may be in several)."""
    path = require(root / "metadata.json", "metadata.json (the icons' categories)", f"npm pack the package into {root}")
    cats = json.loads(path.read_text(encoding="utf-8")).get("categories", {})
    missing = sorted(set(wanted) - set(cats))
    if missing:
        raise UsageError(f"{path}: no categories {missing}; it has {sorted(cats)}")
    return {icon for cat in wanted for icon in cats[cat]}


def is_interface_glyph(icon_name: str, words: frozenset[str]) -> bool:
    """A name with one of `words` ('airplane-off', 'beaker-plus') draws an interface glyph, not a thing."""
    return not words.isdisjoint(icon_name.split("-"))


def compact(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=1)
def chars_by_compact_name() -> dict[str, str]:
    """Emoji by their CLDR name, their `emoji` package aliases and (one code point) their Unicode character name,
    each without spaces or punctuation: how sets that glue words ('alarmclock') name their icons."""
    out: dict[str, str] = {}
    for char, data in qualified().values():
        names = [emoji_name(data), *(alias.strip(":") for alias in data.get("alias", []))]
        base = char.replace("\ufe0f", "")
        if len(base) == 1:
            names.append(unicodedata.name(base, ""))
        for name in names:
            out.setdefault(compact(name), char)
    return out


@dataclass(frozen=True)
class IconSet:
    NAME: str
    PACKAGE: str
    VERSION: str
    LICENSE: str
    loose_names: bool = True  # False keeps EmojiOne 2.3's exact-name keys, so its published split stays as it is
    categories: tuple[str, ...] = ()  # keep only icons in these categories (all when empty)
    skip_words: frozenset[str] = frozenset()  # a name with one of these words is an interface glyph: left out
    style_words: tuple[str, ...] = ()  # 'cat-outline' draws the concept of 'cat': the word leaves name and caption
    glued_names: bool = True  # a one-word name that is no emoji may glue words ('americasglobe'): left out
    aliases: bool = True  # match emoji by alias and glued name too; False: by exact CLDR name only ('wave' is no 👋)

    @property
    def SOURCE(self) -> str:  # noqa: N802 - the corpus-module interface's name
        return (f"{pack_command(self.PACKAGE, self.VERSION)}, unpacked into {NPM_CACHE}/{self.PACKAGE} (done on the "
                "first build); apt-get install librsvg2-bin")

    def base(self, icon_name: str) -> str:
        """The concept an icon draws: its name less a variant number ('baby-2') and style words ('cat-outline')."""
        if not self.loose_names:
            return icon_name
        return VARIANT.sub("", "-".join(w for w in icon_name.split("-") if w not in self.style_words))

    def wanted(self, icon_name: str, things: set[str] | None) -> bool:
        """In one of the set's categories (`things`: their icons; None: no filter), and no interface glyph."""
        return (things is None or icon_name in things) and not is_interface_glyph(icon_name, self.skip_words)

    def match(self, icon_name: str) -> tuple[str | None, str | None]:
        """(emoji, caption) of an icon name; the caption is None when the name is unreadable and matches no emoji."""
        name = icon_name.replace("-", " ")
        if not self.loose_names:
            return chars_by_name().get(name), name
        base = self.base(icon_name)
        char = chars_by_name().get(base.replace("-", " ")) or (
            chars_by_compact_name().get(compact(base)) if self.aliases else None)
        if char:
            return char, emoji_name(qualified()[char.replace("\ufe0f", "")][1]).lower()
        return None, base.replace("-", " ") if "-" in base or not self.glued_names else None

    def items(self, root: Path | None = None, cache: Path = NPM_CACHE, size: int = RENDER_SIZE) -> list[SourceItem]:
        require_rsvg()
        root = Path(root) if root else npm_package(self.PACKAGE, self.VERSION, cache)
        icon_set = json.loads(require(root / "icons.json", "icons.json", self.SOURCE).read_text(encoding="utf-8"))
        category = categories(root)
        things = icons_in(root, self.categories) if self.categories else None
        seen: set[str] = set()
        out = []
        for icon_name, icon in sorted(icon_set["icons"].items()):
            svg = icon_svg(icon, icon_set)
            digest = hashlib.sha1(svg).hexdigest()
            char, caption = self.match(icon_name)
            if ("skin-tone" in icon_name or icon.get("hidden") or digest in seen or caption is None
                    or not self.wanted(icon_name, things)):
                continue
            seen.add(digest)
            # an emoji's key is the `emoji` corpus's, and so is its split; a variant ('baby-2') splits with its emoji
            base = self.base(icon_name)
            split_key = emoji_key(char, caption) if char else make_key(base)
            variant = (icon_name[len(base) + 1:] if icon_name.startswith(f"{base}-")
                       else "-".join(w for w in icon_name.split("-") if w in self.style_words))  # 'horse-variant-fast'
            key = split_key if base == icon_name else f"{split_key}_{variant}"
            meta = {"source": f"{root / 'icons.json'}#{icon_name}", "icon": icon_name, "char": char,
                    "category": category.get(icon_name), "split_key": split_key}
            out.append(SourceItem(key, caption, functools.partial(render_svg, svg, size), [caption], meta))
        return sorted(out, key=lambda item: item.key)


EMOJIONE = IconSet("emojione", "@iconify-json/emojione", "1.2.3",
                   "CC-BY-4.0 (EmojiOne 2.3 by Emoji One; npm @iconify-json/emojione 1.2.3)", loose_names=False)
EMOJIONE_V1 = IconSet("emojione-v1", "@iconify-json/emojione-v1", "1.2.3",
                      "CC-BY-SA-4.0 (EmojiOne v1 by Emoji One; npm @iconify-json/emojione-v1 1.2.3)")
NOTO_V1 = IconSet("noto-v1", "@iconify-json/noto-v1", "1.2.5",
                  "Apache-2.0 (Noto Emoji v1 by Google Inc; npm @iconify-json/noto-v1 1.2.5)")
FXEMOJI = IconSet("fxemoji", "@iconify-json/fxemoji", "1.2.2",
                  "Apache-2.0 (FxEmoji, Firefox OS emoji, by Mozilla; npm @iconify-json/fxemoji 1.2.2)")
STREAMLINE_EMOJIS = IconSet("streamline-emojis", "@iconify-json/streamline-emojis", "1.2.4",
                            "CC-BY-4.0 (Streamline Emojis by Streamline; npm @iconify-json/streamline-emojis 1.2.4)")
EMOJIONE_MONOTONE = IconSet("emojione-monotone", "@iconify-json/emojione-monotone", "1.2.1",
                            "CC-BY-4.0 (EmojiOne 2.2.7 Monotone by Emoji One; npm "
                            "@iconify-json/emojione-monotone 1.2.1)")
MDI_THINGS = IconSet(
    "mdi-things", "@iconify-json/mdi", "1.2.3",
    "Apache-2.0 (Material Design Icons by Pictogrammers; npm @iconify-json/mdi 1.2.3)",
    categories=("Animal", "Agriculture", "Clothing", "Food / Drink", "Hardware / Tools", "Health / Beauty", "Holiday",
                "Music", "Nature", "Places", "Science", "Sport", "Transportation + Flying", "Transportation + Other",
                "Transportation + Road", "Transportation + Water", "People / Family", "Gaming / RPG", "Religion",
                "Drawing / Art", "Photography"),
    skip_words=frozenset("off plus minus check remove alert lock edit cog search sync clock question cancel marker "
                         "settings arrow multiple account circle box file folder archive bookmark network refresh "
                         "on".split()),
    style_words=("outline", "variant"), glued_names=False, aliases=False)
