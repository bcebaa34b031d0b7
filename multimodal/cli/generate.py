"""`multimodal generate`: text-to-image with the prior + CLIP-conditioned decoder."""

from __future__ import annotations

import random
import sys
from pathlib import Path

from multimodal.cli import add_subcommand, checked, finite_float, positive_int, step_share

GENERATE_HELP = """\
Generate images from a prompt: CLIP text embedding -> prior -> CLIP image embedding -> diffusion
decoder (DPM-Solver++ by default). Images are written as PNG files to --out; the seed is printed, so
any result can be made again with --seed.
  multimodal generate "a red apple" --num-images 4 --steps 20 --guidance 8 --seed 0"""


def register(sub) -> None:
    p = add_subcommand(sub, "generate", "generate images from a text prompt", GENERATE_HELP)
    p.add_argument("prompt", help="what to draw, e.g. 'a red apple'")
    p.add_argument("--negative-prompt", default=None, help="steer away from this (replaces the null condition)")
    p.add_argument("--out", default="generated", help="output folder for PNG files")
    p.add_argument("--num-images", type=positive_int, default=1, help="images to generate for the prompt")
    p.add_argument("--steps", type=positive_int, default=20, help="denoising steps")
    p.add_argument("--guidance", type=finite_float, default=None,
                   help="classifier-free guidance scale (1 = none; default: the pipeline's own, 8)")
    p.add_argument("--guidance-cutoff", type=step_share, default=None,
                   help="the share of the denoising steps that are guided, from the first (default: the pipeline's "
                   "own); the others run the conditional branch alone, at half the cost")
    p.add_argument("--seed", type=int, default=None, help="random seed (a random one is drawn and printed if omitted)")
    p.add_argument("--model", default="builtin", help="'builtin' or a pipeline folder")
    p.add_argument("--upscale", type=checked(int, lambda v: 1 <= v <= 16, "a whole number from 1 to 16"), default=1,
                   help="also enlarge each PNG this many times (1-16, Lanczos) for viewing; the pixels the model "
                        "makes stay its decoder's size (64x64 for builtin)")
    p.add_argument("--bf16", action="store_true", help="sample under bfloat16 autocast where the CPU has bf16 "
                   "kernels (AVX512-BF16 or AMX): 1.4x faster on 2 CPU cores, the same pictures to the eye, a prompt "
                   "or two in 64 re-tagged differently (README, 'Benchmarks')")
    p.set_defaults(func=run)


def slug(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")[:40] or "image"


def run(args) -> int:
    import torch
    from PIL import Image

    from multimodal.generation import TextToImagePipeline

    seed = args.seed if args.seed is not None else random.randrange(2**31)
    pipe = TextToImagePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=not sys.stderr.isatty(), desc="denoising")
    pipe.enable_bf16(args.bf16)
    if args.guidance_cutoff is not None:
        pipe.guidance_cutoff = args.guidance_cutoff
    guidance = {} if args.guidance is None else {"guidance_scale": args.guidance}
    images = pipe(args.prompt, negative_prompt=args.negative_prompt, num_inference_steps=args.steps,
                  num_images_per_prompt=args.num_images, **guidance,
                  generator=torch.Generator().manual_seed(seed)).images
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        path = out / f"{slug(args.prompt)}-seed{seed}-{i}.png"
        if args.upscale > 1:
            image = image.resize((image.width * args.upscale, image.height * args.upscale), Image.LANCZOS)
        image.save(path)
        print(path)
    print(f"seed {seed}", file=sys.stderr)
    return 0
