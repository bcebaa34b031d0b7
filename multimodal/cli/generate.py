"""`multimodal generate`: text-to-image with the CLIP-conditioned decoder."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built


def register(sub) -> None:
    p = add_subcommand(sub, "generate", "generate images from a text prompt",
                       "Generate images from a prompt with the prior + CLIP-conditioned diffusion decoder.")
    p.add_argument("prompt")
    p.add_argument("--out", default="generated", help="output folder for PNG files")
    p.add_argument("--num-images", type=int, default=1)
    p.add_argument("--steps", type=int, default=20, help="denoising steps")
    p.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=None, help="random seed; printed so a result can be reproduced")
    p.add_argument("--model", default="builtin")
    p.set_defaults(func=lambda args: not_built("`multimodal generate`"))
