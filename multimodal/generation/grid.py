"""A grid of images with their captions underneath, for sample sheets and the README."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from multimodal.errors import UsageError


def captioned_grid(images: Sequence[Image.Image], captions: Sequence[str] | None = None, cols: int = 4,
                   scale: int = 2, caption_height: int = 18) -> Image.Image:
    """Images (all the same size) in `cols` columns, each upscaled `scale`x (nearest) with its caption below."""
    if not images:
        raise UsageError("no images to put in a grid")
    w, h = images[0].size
    w, h = w * scale, h * scale
    rows = (len(images) + cols - 1) // cols
    pad = caption_height if captions else 0
    sheet = Image.new("RGB", (cols * w, rows * (h + pad)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for i, image in enumerate(images):
        x, y = (i % cols) * w, (i // cols) * (h + pad)
        sheet.paste(image.convert("RGB").resize((w, h), Image.Resampling.NEAREST), (x, y))
        if captions:
            draw.text((x + 3, y + h + 3), captions[i][: max(8, w // 6)], fill=(0, 0, 0), font=font)
    return sheet
