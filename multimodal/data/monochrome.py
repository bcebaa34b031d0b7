"""One-colour versions of training images (a training augmentation of the reader): grey, a black silhouette, or
black lines on white.

Every training corpus here draws its things in colour, and the CLIP reads a thing drawn in one colour (line-drawn
emoji, black glyphs, greyscale photos) far worse than the same thing in colour. Showing some training images in one
colour teaches it to read the shape. A caption that names a colour ("blue heart") would be wrong about a one-colour
image, so those images are never changed. Hand-written because open_clip's greyscale option ignores the caption and
has no silhouette or line drawing.
"""

from __future__ import annotations

import random
import re

from PIL import Image, ImageChops, ImageFilter, ImageOps

from multimodal.data.images import has_alpha, to_mode

STYLES = ("grey", "silhouette", "lines")
COLOUR_WORDS = frozenset(
    "red orange yellow green blue purple violet pink brown black white grey gray gold golden silver beige teal "
    "turquoise cyan magenta maroon navy olive colour color colours colors coloured colored colorful colourful "
    "rainbow multicoloured multicolored".split())


def names_a_colour(caption: str) -> bool:
    return any(word in COLOUR_WORDS for word in re.findall(r"[a-z]+", caption.lower()))


def monochrome(img: Image.Image, caption: str, p: float) -> Image.Image:
    """`img` in one colour, in a random style, with probability `p` unless `caption` names a colour; else `img`.

    A transparent image stays transparent (the reader then composites it as usual). The draws come from `random`,
    which the training reader seeds per sample, so the choice is reproducible and resumable."""
    if not p or names_a_colour(caption) or random.random() >= p:
        return img
    style = random.choice(STYLES)
    alpha = img.convert("RGBA").getchannel("A") if has_alpha(img) else None  # also a tRNS colour key
    if style == "silhouette" and alpha is not None:
        black = Image.new("RGB", img.size, (0, 0, 0))
        black.putalpha(alpha)
        return black
    grey = to_mode(img, "RGB").convert("L")  # transparent pixels white
    if style == "lines":
        edges = grey.filter(ImageFilter.FIND_EDGES)  # [H, W]: bright where the picture changes
        edges = ImageOps.autocontrast(ImageOps.expand(ImageOps.crop(edges, 1), 1, fill=0))  # no frame at the border
        grey = ImageChops.invert(edges.point(lambda v: 255 if v > 48 else v * 2))  # dark lines on white
        return grey.convert("RGB")
    out = grey.convert("RGB")
    if alpha is not None:
        out.putalpha(alpha)
    return out
