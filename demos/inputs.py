"""The demo's inputs and their limits.

Numbers arrive from the page's sliders and, unchecked, from any HTTP client (NaN and Infinity included), so each
is checked by `number` with a message that names the input and its limits. Out of range is refused, not clamped:
a caller who asked for 99 images learns the limit instead of receiving 8 without being asked.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import gradio as gr

from multimodal.errors import UsageError


@dataclass(frozen=True)
class Limits:
    max_steps: int = 50
    max_images: int = 8
    max_prompt_chars: int = 300
    max_labels: int = 200
    max_examples: int = 64  # few-shot example images per browser session
    max_sessions: int = 256  # sessions whose examples are kept (the oldest go first)
    max_pixels: int = 24_000_000  # refused from the header, before any decoding
    max_upload: str = "10mb"
    max_guidance: float = 15.0
    min_strength: float = 0.05  # a variation's least strength (1: from the picture's embedding alone)
    max_results: int = 24
    max_seed: int = 2**32 - 1
    cache_seconds: int = 3600  # uploads, Gradio's copies of outputs and our own outputs are deleted at this age
    concurrency: int = 2  # requests computed at once; the rest wait in the queue
    queue_size: int = 16  # beyond this, new requests are turned away with a message


def _show(value: float) -> str:
    return str(int(value)) if math.isfinite(value) and float(value).is_integer() else str(value)


def number(value, name: str, low: float, high: float, whole: bool = False) -> float:
    """`value` as a finite number from `low` to `high` (an int if `whole`); refused with a message naming `name`."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UsageError(f"{name} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise UsageError(f"{name} must be a finite number, got {value}")
    if whole and not float(value).is_integer():
        raise UsageError(f"{name} must be a whole number, got {value}")
    if not low <= value <= high:
        raise UsageError(f"{name} must be from {_show(low)} to {_show(high)}, got {_show(value)}")
    return int(value) if whole else float(value)


def sampling_settings(limits: Limits, n, steps, guidance, seed) -> tuple[int, int, float, int]:
    """The Generate and Variations numbers, checked; a seed of -1 (or none) draws a random one."""
    n = number(n, "number of images", 1, limits.max_images, whole=True)
    steps = number(steps, "steps", 1, limits.max_steps, whole=True)
    guidance = number(guidance, "guidance scale", 0, limits.max_guidance)
    seed = -1 if seed is None else number(seed, "seed", -1, limits.max_seed, whole=True)
    return n, steps, guidance, seed if seed >= 0 else random.randrange(2**31)


def as_sent(component):
    """Make an input hand its value to the event function as sent, for `number` to check there: Gradio's own
    check lets NaN through, fails on it with a Python message where it rounds, and names no input in "Value 99
    is greater than maximum value 8". An attribute, not a subclass: Gradio writes a .pyi file beside any module
    that defines a component class."""
    component.preprocess = lambda payload: payload
    return component


def image_input(label: str):
    """An upload field plus a preview drawn by `Demo.preview`. Not `gr.Image`: it opens every upload with
    Pillow before our code runs, so a bad file would fail inside Gradio with an unreadable message."""
    upload = gr.File(label=label, file_types=["image"], type="filepath")
    preview = gr.Image(label="preview", type="filepath", interactive=False, height=220)
    return upload, preview


def sampling_controls(limits: Limits, guidance: float):
    """Images, steps, guidance (starting at `guidance`) and seed inputs; the sliders stop at the limits, so the page
    cannot ask for more."""
    return (as_sent(gr.Slider(1, limits.max_images, value=min(4, limits.max_images), step=1, label="images")),
            as_sent(gr.Slider(1, limits.max_steps, value=min(20, limits.max_steps), step=1, label="steps")),
            as_sent(gr.Slider(0, limits.max_guidance, value=min(guidance, limits.max_guidance), step=0.5,
                              label="guidance scale")),
            as_sent(gr.Number(value=-1, precision=0, label="seed (-1 = random)")))
