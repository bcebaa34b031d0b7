"""Draw every single-code-point emoji of the Symbola font into an ImageFolder for zero-shot evaluation (never for
training or tuning): monochrome line drawings of the emoji, a style no training corpus has.

    apt-get install fonts-symbola
    python training/recipes/symbola_eval.py                     # -> data/eval/symbola/<CLDR name>/<code point>.png
    multimodal eval zeroshot --model builtin --data symbola=data/eval/symbola

Each emoji the `emoji` package knows as fully qualified and made of one code point (U+FE0F aside) is drawn black on
a transparent canvas at 109 px, cropped to its glyph; one the font does not draw (it renders as the font's
missing-glyph box) is left out. The class folder is the emoji's CLDR name, as the `emoji` corpus captions it, so the
1-of-N choice is among the drawn emoji's names. Symbola is George Douros's free font (Debian `fonts-symbola`).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

from PIL import Image, ImageFont

from multimodal.data.corpora.emoji import FONT_SIZE, emoji_name, glyph
from multimodal.data.corpora.emoji_keys import qualified
from multimodal_train.eval_folders import new_folder

FONT = Path("/usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf")
ABSENT = "\U0010fffd"  # a private-use code point no font draws: what a missing glyph looks like


def draw(char: str, font: ImageFont.FreeTypeFont) -> Image.Image | None:
    """The glyph black on transparent, cropped; None when the font draws nothing there."""
    return glyph(char, font, fill=(0, 0, 0, 255))


def drawn_emoji(font: ImageFont.FreeTypeFont) -> dict[str, tuple[str, Image.Image]]:
    """{emoji: (CLDR name, glyph)} of the single-code-point emoji the font has a glyph for."""
    missing = draw(ABSENT, font)
    missing = missing.tobytes() if missing else b""
    out = {}
    for base, (_, data) in sorted(qualified().items()):
        if len(base) != 1:
            continue
        glyph = draw(base, font)
        if glyph is not None and glyph.tobytes() != missing:
            out[base] = (emoji_name(data), glyph)
    return out


def write(out: Path, glyphs: dict[str, tuple[str, Image.Image]]) -> None:
    """Write every glyph into a temporary folder beside `out`, then rename it to `out`: a run that dies leaves no
    half-written set (at most a `.NAME.*.tmp` folder)."""
    with new_folder(out) as tmp:
        for char, (name, glyph) in glyphs.items():
            path = tmp / name.replace("/", " ") / f"{ord(char):04x}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            buffer = io.BytesIO()
            glyph.save(buffer, format="PNG")
            path.write_bytes(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval/symbola"), help="folder to create")
    parser.add_argument("--font", type=Path, default=FONT, help="the Symbola TrueType font")
    args = parser.parse_args(argv)
    if not args.font.is_file():
        raise SystemExit(f"{args.font} not found; install it with: apt-get install fonts-symbola")
    glyphs = drawn_emoji(ImageFont.truetype(str(args.font), FONT_SIZE))
    write(args.out, glyphs)
    print(f"wrote {len(glyphs)} emoji in {len({n for n, _ in glyphs.values()})} classes to {args.out}",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
