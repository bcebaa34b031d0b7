"""One sample key per emoji across every emoji corpus (the key the `emoji` corpus gives it), so that an emoji
held out in one style is held out in all of them: the split hashes the key."""

from __future__ import annotations

import functools

from multimodal.data.corpora.emoji import SKIN_TONES, emoji_name
from multimodal.data.sources import make_key

VS16 = "\ufe0f"  # emoji presentation selector: OpenMoji's code points leave it out


def char_of(hexcode: str) -> str:
    """'0023-FE0F-20E3' -> '#️⃣'"""
    return "".join(chr(int(part, 16)) for part in hexcode.split("-"))


def has_skin_tone(char: str) -> bool:
    return any(ord(c) in SKIN_TONES for c in char)


def emoji_key(char: str, fallback_name: str) -> str:
    """make_key('NAME_CODEPOINTS') with the Unicode CLDR name and fully-qualified code points when the `emoji`
    package knows the emoji (with or without its U+FE0F variation selectors), else with `fallback_name`."""
    data = qualified().get(char.replace(VS16, ""))
    name, char = (emoji_name(data[1]), data[0]) if data else (fallback_name, char)
    return make_key(f"{name}_{'-'.join(f'{ord(c):04x}' for c in char)}")


@functools.lru_cache(maxsize=1)
def qualified() -> dict[str, tuple[str, dict]]:
    """The `emoji` package's fully-qualified emoji by their code points without U+FE0F: (emoji, its data)."""
    import emoji

    return {char.replace(VS16, ""): (char, data) for char, data in emoji.EMOJI_DATA.items()
            if data["status"] == emoji.STATUS["fully_qualified"]}


@functools.lru_cache(maxsize=1)
def chars_by_name() -> dict[str, str]:
    """Lower-case CLDR name -> emoji, for sources that name their emoji but give no code points."""
    return {emoji_name(data).lower(): char for char, data in qualified().values()}
