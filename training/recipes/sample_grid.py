"""assets/samples.png: the shipped pipeline on everyday prompts, fixed seeds, 20 DPM-Solver++ steps."""

from __future__ import annotations

import argparse

import torch

PROMPTS = ["a red apple", "a smiling face", "a blue car", "a green tree", "a yellow star", "a red heart",
           "a cat", "a birthday cake", "a house", "a pizza", "a flower", "a rocket"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="assets/samples.png")
    parser.add_argument("--guidance", type=float, default=3.0)
    args = parser.parse_args()
    from multimodal.generation import TextToImagePipeline
    from multimodal.generation.grid import captioned_grid

    pipe = TextToImagePipeline.from_pretrained("builtin")
    pipe.set_progress_bar_config(disable=True)
    images = pipe(PROMPTS, num_inference_steps=20, guidance_scale=args.guidance,
                  generator=torch.Generator().manual_seed(0)).images
    captioned_grid(images, PROMPTS, cols=6).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
