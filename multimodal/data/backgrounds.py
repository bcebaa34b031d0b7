"""Random backgrounds for transparent training images (a training augmentation of the reader).

Every drawing and cut-out in the corpora here has an alpha channel, and decoding composites it onto white, so a
model trained on them has never seen an object in front of anything but white. Real photos never look like that.
Hand-written because neither torchvision nor open_clip composites RGBA images onto generated backgrounds.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

from multimodal.data.images import composite, has_alpha, to_mode

KINDS = ("solid", "gradient", "noise")


def on_background(img: Image.Image, background_p: float) -> Image.Image:
    """RGB: a transparent `img` composited onto a random background with probability `background_p`, else onto white.

    The draws come from `random`, which the training reader seeds per sample: reproducible and resumable. Opaque
    images draw nothing, so they never change the draws of the samples after them."""
    if background_p and has_alpha(img) and random.random() < background_p:
        return composite(img, random_background(img.size, np.random.default_rng(random.getrandbits(64))))
    return to_mode(img, "RGB")


def random_background(size: tuple[int, int], gen: np.random.Generator) -> Image.Image:
    """An RGB image of `size` (width, height): one colour, a two-colour gradient or smooth colour noise with grain."""
    width, height = size
    kind = KINDS[int(gen.integers(len(KINDS)))]
    if kind == "solid":
        pixels = np.broadcast_to(gen.uniform(0, 255, 3).astype(np.float32), (height, width, 3))
    elif kind == "gradient":
        angle = gen.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)  # [H, W]
        ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
        start, end = gen.uniform(0, 255, 3).astype(np.float32), gen.uniform(0, 255, 3).astype(np.float32)
        pixels = start + ramp[..., None] * (end - start)  # [H, W, 3]
    else:  # out-of-focus scenery: a few coarse colour cells upsampled smoothly, then film grain on top
        cells = int(gen.integers(2, 9))
        coarse = Image.fromarray(gen.uniform(0, 255, (cells, cells, 3)).astype(np.uint8))
        pixels = np.asarray(coarse.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32)
        pixels = pixels + gen.normal(0, gen.uniform(2, 12), (height, width, 3)).astype(np.float32)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
