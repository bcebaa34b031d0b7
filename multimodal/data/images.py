"""Safe image decoding shared by the shard writer, the checker, the reader and the tagger.

Every decode goes through `open_image`, which reads the header first and refuses an image whose
pixel count is over the limit *before* the pixels are decoded, so a decompression bomb costs
a header parse, not gigabytes of memory.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from multimodal.errors import UsageError

# Same order of magnitude as Pillow's own warning limit (89.5 MP); a 4-byte RGBA image of this size is ~360 MB.
DEFAULT_MAX_PIXELS = 89_478_485
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
# extensions written into shards, in the order a reader looks for them
SHARD_IMAGE_KEYS = ("jpg", "jpeg", "png", "webp")


class ImageError(UsageError):
    """An image that cannot be used. `reason` is a short machine-readable tag."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class DecompressionBombError(ImageError):
    def __init__(self, message: str):
        super().__init__("decompression_bomb", message)


def _as_stream(src: str | os.PathLike | bytes | io.IOBase, name: str | None = None):
    if isinstance(src, (bytes, bytearray, memoryview)):
        return io.BytesIO(src), name or "<bytes>"
    if isinstance(src, (str, os.PathLike)):
        path = Path(src)
        if not path.is_file():
            raise ImageError("missing", f"{path}: no such image file")
        return open(path, "rb"), str(path)
    return src, name or getattr(src, "name", "<stream>")


def allow_pixels(max_pixels: int | None) -> None:
    """Let Pillow's process-wide guard (which errors at twice its limit) admit what our per-call limit admits."""
    if max_pixels is not None and Image.MAX_IMAGE_PIXELS is not None and max_pixels >= 2 * Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels // 2 + 1


def check_pixels(size: tuple[int, int], max_pixels: int | None, name: str = "<image>") -> None:
    if max_pixels is not None and size[0] * size[1] > max_pixels:
        raise DecompressionBombError(
            f"{name}: {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels is over the limit of {max_pixels:,} "
            "(possible decompression bomb)"
        )


def open_image(
    src: str | os.PathLike | bytes | io.IOBase,
    *,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    mode: str | None = "RGB",
    draft_size: tuple[int, int] | None = None,
    name: str | None = None,
) -> Image.Image:
    """Decode an image fully, with the pixel-count guard applied to the header first.

    `mode="RGB"` composites transparency onto white (clip-art and emoji are RGBA with a clear
    background; a plain `.convert("RGB")` would paint it black). `draft_size` lets JPEG decode at a
    reduced scale when the caller will downsample anyway. `name` labels the image in error messages.
    Raises `ImageError` naming the problem.
    """
    allow_pixels(max_pixels)
    stream, name = _as_stream(src, name)
    try:
        try:
            with warnings.catch_warnings():  # our own check below is the one that decides
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(stream)
        except Image.DecompressionBombError as e:  # Pillow's own guard fires at open for huge headers
            pixels = re.search(r"\((\d+) pixels\)", str(e))
            count = f"{int(pixels.group(1)):,} pixels" if pixels else "the image"
            raise DecompressionBombError(f"{name}: {count} is over the limit of {max_pixels or 0:,} "
                                         "(possible decompression bomb)") from None
        except UnidentifiedImageError:
            raise ImageError("not_an_image", f"{name}: not a readable image file") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:  # header present but cut short or damaged
            raise ImageError("corrupt", f"{name}: corrupt or truncated image header ({e})") from None
        check_pixels(img.size, max_pixels, name)
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        try:
            img.load()
        except (OSError, SyntaxError, ValueError) as e:
            raise ImageError("corrupt", f"{name}: corrupt or truncated image ({e})") from None
        except Image.DecompressionBombError as e:
            raise DecompressionBombError(f"{name}: {e}") from None
        return to_mode(img, mode) if mode else img
    finally:
        if isinstance(src, (str, os.PathLike)):
            stream.close()


def to_mode(img: Image.Image, mode: str = "RGB") -> Image.Image:
    if mode != "RGB" or not has_alpha(img):
        return img.convert(mode) if img.mode != mode else img
    return composite(img, Image.new("RGB", img.size, (255, 255, 255)))


def has_alpha(img: Image.Image) -> bool:
    """An alpha channel, or a PNG tRNS colour key (palette, RGB or grey images): `convert("RGBA")` applies either.
    Pillow keeps a palette image's key through `convert("RGB")`, so such a copy still counts as keyed here."""
    return img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info


def composite(img: Image.Image, background: Image.Image) -> Image.Image:
    """A transparent `img` over `background` (RGB, the same size) -> RGB; callers check `has_alpha` first, so that an
    opaque image costs no background."""
    return Image.alpha_composite(background.convert("RGBA"), img.convert("RGBA")).convert("RGB")


def is_image_path(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)
