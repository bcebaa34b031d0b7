"""Random backgrounds for transparent training images (a training augmentation of the reader).

Every drawing and cut-out in the corpora here has an alpha channel, and decoding composites it onto white, so a
model trained on them has never seen an object in front of anything but white. Real photos never look like that.
Hand-written because neither torchvision nor open_clip composites RGBA images onto generated backgrounds.
"""

from __future__ import annotations

import random

import numpy as np
from PIL import Image

KINDS = ("solid", "gradient", "noise")


def random_background(size: tuple[int, int], rng: random.Random) -> Image.Image:
    """An RGB image of `size` (width, height): a solid colour, a two-colour gradient, or smooth colour noise with grain.

    All randomness comes from `rng`, so a reader that seeds it per sample stays reproducible and resumable.
    """
    width, height = size
    gen = np.random.default_rng(rng.getrandbits(64))
    kind = rng.choice(KINDS)
    if kind == "solid":
        pixels = np.broadcast_to(gen.uniform(0, 255, 3), (height, width, 3))
    elif kind == "gradient":
        angle = gen.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width]
        ramp = np.cos(angle) * xs / max(width - 1, 1) + np.sin(angle) * ys / max(height - 1, 1)  # [H, W]
        ramp = (ramp - ramp.min()) / max(np.ptp(ramp), 1e-6)
        start, end = gen.uniform(0, 255, 3), gen.uniform(0, 255, 3)
        pixels = start + ramp[..., None] * (end - start)  # [H, W, 3]
    else:  # out-of-focus scenery: a few coarse colour cells upsampled smoothly, then film grain on top
        cells = int(gen.integers(2, 9))
        coarse = Image.fromarray(gen.uniform(0, 255, (cells, cells, 3)).astype(np.uint8))
        pixels = np.asarray(coarse.resize((width, height), Image.BICUBIC), dtype=np.float64)
        pixels = pixels + gen.normal(0, gen.uniform(2, 12), (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")

