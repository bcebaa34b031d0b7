"""The checks of a pipeline call's arguments: bad input gets an error that names it, before any work starts."""

from __future__ import annotations

import math

from diffusers import UNet2DConditionModel

from multimodal.errors import UsageError

MAX_STEPS = 1000
MAX_IMAGES = 64
SIZE_RANGE = (16, 512)


def check_sampling(steps: int, guidance_scale: float, num_images: int, height: int, width: int,
                   decoder: UNet2DConditionModel) -> None:
    if not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise UsageError(f"num_inference_steps must be an integer from 1 to {MAX_STEPS}, got {steps!r}")
    if not math.isfinite(guidance_scale) or guidance_scale < 0:
        raise UsageError(f"guidance_scale must be a finite number >= 0 (1 = no guidance), got {guidance_scale}")
    if not isinstance(num_images, int) or not 1 <= num_images <= MAX_IMAGES:
        raise UsageError(f"num_images_per_prompt must be from 1 to {MAX_IMAGES}, got {num_images!r}")
    lo, hi = SIZE_RANGE
    for name, v in (("height", height), ("width", width)):
        if not isinstance(v, int) or not lo <= v <= hi or v % 8:
            raise UsageError(f"{name} must be a multiple of 8 from {lo} to {hi} (the decoder was trained at "
                             f"{decoder.config.sample_size}), got {v!r}")


def prompt_list(prompt: str | list[str], what: str = "prompt") -> list[str]:
    """A prompt or a list of them -> the list; empty or blank ones are an error."""
    prompts = [prompt] if isinstance(prompt, str) else list(prompt)
    if not prompts or any(not isinstance(p, str) or not p.strip() for p in prompts):
        raise UsageError(f"{what} must be a non-empty string (or a list of them)")
    return prompts
