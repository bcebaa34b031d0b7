"""Noto Color Emoji rendered with Pillow, captioned with their Unicode names (fully-qualified, no skin tones)."""

from __future__ import annotations

import functools
import io
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from multimodal.data.corpora import require
from multimodal.data.images import ImageError
from multimodal.data.sources import SourceItem, make_key

NAME = "emoji"
LICENSE = "OFL-1.1 (Noto Color Emoji font, Debian package fonts-noto-color-emoji); names from Unicode CLDR"
SOURCE = "apt-get install fonts-noto-color-emoji; pip install emoji"
FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
FONT_SIZE = 109  # the only size of the font's CBDT bitmaps
SKIN_TONES = range(0x1F3FB, 0x1F400)


@functools.lru_cache(maxsize=1)
def _font(path: str) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, FONT_SIZE)


def glyph(char: str, font: ImageFont.FreeTypeFont, **style) -> Image.Image | None:
    """`char` drawn with `font` on a transparent canvas (`style`: ImageDraw.text's fill or embedded_color), cropped
    to its ink; None where the font draws nothing."""
    canvas = Image.new("RGBA", (FONT_SIZE * 3, FONT_SIZE * 2), (0, 0, 0, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, **style)
    box = canvas.getbbox()
    return canvas.crop(box) if box else None


def render(char: str, font_path: str = str(FONT)) -> bytes:
    """The emoji on a transparent canvas, cropped to its glyph, as PNG bytes."""
    image = glyph(char, _font(font_path), embedded_color=True)
    if image is None:
        raise ImageError("no_glyph", f"{Path(font_path).name} has no glyph for {char!r}")
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def emoji_name(data: dict) -> str:
    """':red_apple:' -> 'red apple'"""
    return data["en"].strip(":").replace("_", " ")


def items(font: Path = FONT) -> list[SourceItem]:
    require(font, "Noto Color Emoji font", SOURCE)
    import emoji

    out = []
    for char, data in emoji.EMOJI_DATA.items():
        if data["status"] != emoji.STATUS["fully_qualified"] or any(ord(c) in SKIN_TONES for c in char):
            continue
        name = emoji_name(data)
        codepoints = "-".join(f"{ord(c):04x}" for c in char)
        out.append(SourceItem(make_key(f"{name}_{codepoints}"), name, functools.partial(render, char, str(font)),
                              [name], {"source": f"{font.name} U+{codepoints}", "char": char}))
    return sorted(out, key=lambda item: item.key)
