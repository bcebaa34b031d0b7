"""What a person sees from a text-to-image pipeline (the shipped `builtin` by default), fixed seeds, 20 steps:

    --out             the sample grid (assets/samples.png): twelve everyday prompts
    --everyday-out    twelve one-object prompts, each image re-tagged 12-way by the shipped tagger; prints the score
    --variations-out  three photos from assets/examples, each followed by three of its variations
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

PROMPTS = ["a red apple", "a smiling face", "a blue car", "a green tree", "a yellow star", "a red heart",
           "a cat", "a birthday cake", "a house", "a pizza", "a flower", "a rocket"]
EVERYDAY = ["apple", "car", "cat", "dog", "tree", "house", "star", "heart", "fish", "flower", "banana", "bird"]
PHOTOS = ["cat.jpg", "astronaut.jpg", "coffee.jpg"]
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"


def everyday(pipe, out: str, guidance: float) -> int:
    """One image per one-object prompt; the shipped tagger picks among the twelve objects. Returns how many it gets."""
    from multimodal.generation.grid import captioned_grid
    from multimodal.tagging import ZeroShotTagger

    images = pipe([f"a {name}" for name in EVERYDAY], num_inference_steps=20, guidance_scale=guidance,
                  generator=torch.Generator().manual_seed(0)).images
    tags = ZeroShotTagger.from_pretrained("builtin").tag(images, labels=EVERYDAY, top_k=1)
    picked = [t[0][0] for t in tags]
    right = sum(p == name for p, name in zip(picked, EVERYDAY))
    for name, p in zip(EVERYDAY, picked):
        print(f"  a {name:8s} -> {p}{'' if p == name else '  (wrong)'}")
    print(f"everyday prompts re-tagged right: {right} of {len(EVERYDAY)}")
    captioned_grid(images, [f"{n} -> {p}" for n, p in zip(EVERYDAY, picked)], cols=6).save(out)
    return right


def variations(pipe, out: str) -> None:
    from PIL import Image

    from multimodal.generation.grid import captioned_grid

    cells, captions = [], []
    for name in PHOTOS:
        photo = Image.open(EXAMPLES / name).convert("RGB")
        more = pipe.image_variations(photo, num_images_per_prompt=3, generator=torch.Generator().manual_seed(0)).images
        cells += [photo.resize(more[0].size), *more]
        captions += [name, "variation", "variation", "variation"]
    captioned_grid(cells, captions, cols=4).save(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="builtin", help="pipeline folder (default: the shipped builtin)")
    parser.add_argument("--out", default="assets/samples.png", help="the sample grid PNG ('' to skip)")
    parser.add_argument("--everyday-out", default="", help="also score the everyday prompts; their grid PNG")
    parser.add_argument("--variations-out", default="", help="also make variations of three photos; their grid PNG")
    parser.add_argument("--guidance", type=float, default=3.0, help="classifier-free guidance scale")
    args = parser.parse_args()
    from multimodal.generation import TextToImagePipeline
    from multimodal.generation.grid import captioned_grid

    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if args.out:
        images = pipe(PROMPTS, num_inference_steps=20, guidance_scale=args.guidance,
                      generator=torch.Generator().manual_seed(0)).images
        captioned_grid(images, PROMPTS, cols=6).save(args.out)
        print(f"wrote {args.out}")
    if args.everyday_out:
        everyday(pipe, args.everyday_out, args.guidance)
    if args.variations_out:
        variations(pipe, args.variations_out)
        print(f"wrote {args.variations_out}")


if __name__ == "__main__":
    main()
