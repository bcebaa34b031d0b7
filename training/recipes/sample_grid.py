"""What a person sees from a text-to-image pipeline (the shipped `builtin` by default), fixed seeds, 20 steps and
the pipeline's default guidance:

    --out             the sample grid (assets/samples.png): sixteen everyday prompts
    --everyday-out    twelve one-object prompts, each image re-tagged 12-way by the shipped tagger; prints the score
                      (seed 0 alone, the issue's figure, and over --seeds seeds, a steadier one)
    --variations-out  three photos from assets/examples, each followed by three of its variations
    --variation-photos  scores four variations of every photo in a folder (see `variation_score`)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from multimodal.cli import step_share

PROMPTS = ["a red apple", "a smiling face", "a blue car", "a green tree", "a yellow star", "a red heart",
           "a cat", "a birthday cake", "a house", "a pizza", "a flower", "a rocket",
           "a dog", "a yellow banana", "a sailing boat", "a bird"]
EVERYDAY = ["apple", "car", "cat", "dog", "tree", "house", "star", "heart", "fish", "flower", "banana", "bird"]
PHOTOS = ["cat.jpg", "astronaut.jpg", "coffee.jpg"]
EXAMPLES = Path(__file__).resolve().parents[2] / "assets" / "examples"
SKIMAGE = Path(__file__).resolve().parents[2] / "data" / "eval" / "skimage"  # skimage_eval.py writes it


def everyday(pipe, out: str, guidance: float, seeds: int = 1, judges: tuple[str, ...] = ("builtin",)) -> int:
    """`seeds` images per one-object prompt (seeds 0, 1, ...); the shipped tagger (or each of `judges`, the first
    captioning the grid) picks among the twelve objects. Prints seed 0's score and the score over all seeds; the
    grid has one row of twelve per seed. Returns seed 0's by the first judge."""
    from multimodal.generation.grid import captioned_grid
    from multimodal.tagging import ZeroShotTagger

    images = []
    for seed in range(seeds):
        images += pipe([f"a {name}" for name in EVERYDAY], num_inference_steps=20, guidance_scale=guidance,
                       generator=torch.Generator().manual_seed(seed)).images
    wanted = EVERYDAY * seeds
    for judge in judges[1:]:
        other = [t[0][0] for t in ZeroShotTagger.from_pretrained(judge).tag(images, labels=EVERYDAY, top_k=1)]
        hits = [p == name for p, name in zip(other, wanted)]
        print(f"judged by {judge}: seed 0 {sum(hits[:len(EVERYDAY)])} of {len(EVERYDAY)}, all seeds {sum(hits)} of "
              f"{len(hits)}")
    tags = ZeroShotTagger.from_pretrained(judges[0]).tag(images, labels=EVERYDAY, top_k=1)
    picked = [t[0][0] for t in tags]
    hits = [p == name for p, name in zip(picked, wanted)]
    for name, p in zip(EVERYDAY, picked):
        print(f"  a {name:8s} -> {p}{'' if p == name else '  (wrong)'}")
    right = sum(hits[:len(EVERYDAY)])
    print(f"everyday prompts re-tagged right (seed 0): {right} of {len(EVERYDAY)}")
    if seeds > 1:
        print(f"everyday prompts re-tagged right over {seeds} seeds: {sum(hits)} of {len(hits)}")
    captioned_grid(images, [f"{n} -> {p}" for n, p in zip(wanted, picked)], cols=len(EVERYDAY)).save(out)
    return right


def variations(pipe, out: str, strength: float) -> None:
    from PIL import Image

    from multimodal.generation.grid import captioned_grid

    cells, captions = [], []
    for name in PHOTOS:
        photo = Image.open(EXAMPLES / name).convert("RGB")
        more = pipe.image_variations(photo, num_images_per_prompt=3, strength=strength,
                                     generator=torch.Generator().manual_seed(0)).images
        cells += [photo.resize(more[0].size), *more]
        captions += [name, "variation", "variation", "variation"]
    captioned_grid(cells, captions, cols=4).save(out)


def colour_histogram(image, bins: int = 4) -> torch.Tensor:
    """Share of the pixels in each of bins**3 RGB cells, at 32 px."""
    import numpy as np

    rgb = torch.from_numpy(np.array(image.convert("RGB").resize((32, 32)))).long().reshape(-1, 3) * bins // 256
    cells = (rgb[:, 0] * bins + rgb[:, 1]) * bins + rgb[:, 2]
    return torch.bincount(cells, minlength=bins**3).float() / len(cells)


def variation_score(pipe, folder: Path, per_photo: int, judge: str, strength: float) -> tuple[int, int, int]:
    """Do variations keep their photo's subject and colours, and differ between photos? Each of `per_photo`
    variations of every photo under `folder` (seed 0) picks, among all those photos, the one whose `judge` CLIP
    embedding is nearest to its own, and the one whose colour histogram is nearest (L1). Prints and returns
    (picked by CLIP, picked by colour, variations), and prints the spread (the mean RMS pixel distance, 0-1, between
    two variations of one photo: near 0 means copies of one picture). The photos are evaluated here, never tuned
    on."""
    import itertools

    import numpy as np
    from PIL import Image

    from multimodal.tagging import ZeroShotTagger

    paths = sorted(folder.rglob("*.png"))
    if len(paths) < 2:
        raise SystemExit(f"sample_grid.py: {folder} holds {len(paths)} photos; run training/recipes/skimage_eval.py")
    photos = [Image.open(path).convert("RGB") for path in paths]
    made = [pipe.image_variations(photo, num_images_per_prompt=per_photo, strength=strength,
                                  generator=torch.Generator().manual_seed(0)).images for photo in photos]
    spread = np.mean([np.sqrt(np.mean((np.asarray(a, np.float32) / 255 - np.asarray(b, np.float32) / 255) ** 2))
                      for group in made for a, b in itertools.combinations(group, 2)])
    owner = torch.arange(len(photos)).repeat_interleave(per_photo)  # [N * per_photo]
    variations = [image for group in made for image in group]
    tagger = ZeroShotTagger.from_pretrained(judge)
    by_clip = (tagger.encode_images(variations)[0] @ tagger.encode_images(photos)[0].T).argmax(1)
    colours = torch.stack([colour_histogram(photo) for photo in photos])  # [N, 64]
    by_colour = torch.stack([(colour_histogram(v) - colours).abs().sum(1).argmin() for v in variations])
    clip_right, colour_right = int((by_clip == owner).sum()), int((by_colour == owner).sum())
    for path, picks in zip(paths, by_clip.reshape(len(photos), per_photo)):
        print(f"  {path.stem:22s} -> {', '.join(paths[i].stem for i in picks)}")
    print(f"variations that pick their own photo among {len(photos)}: by CLIP {clip_right} of {len(owner)}, "
          f"by colour {colour_right} of {len(owner)}; spread between variations of one photo {spread:.3f}")
    return clip_right, colour_right, len(owner)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", default="builtin", help="pipeline folder (default: the shipped builtin)")
    parser.add_argument("--out", default="assets/samples.png", help="the sample grid PNG ('' to skip)")
    parser.add_argument("--everyday-out", default="", help="also score the everyday prompts; their grid PNG")
    parser.add_argument("--variations-out", default="", help="also make variations of three photos; their grid PNG")
    parser.add_argument("--variation-photos", type=Path, default=None,
                        help=f"score variations of every PNG photo in this folder, e.g. {SKIMAGE}")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: the pipeline's own)")
    parser.add_argument("--seeds", type=int, default=1, help="images per everyday prompt (seeds 0..N-1) for the score")
    parser.add_argument("--judge", action="append", default=None,
                        help="tagger that scores the everyday images (repeatable; default: the shipped builtin)")
    parser.add_argument("--variation-strength", type=step_share, default=None,
                        help="how much of the schedule a variation's photo is noised to (default: the pipeline's own; "
                             "1: from the photo's embedding alone)")
    parser.add_argument("--bf16", action="store_true", help="sample under bfloat16 autocast (pipe.enable_bf16())")
    parser.add_argument("--guidance-cutoff", type=step_share, default=None,
                        help="the share of the steps that are guided (default: the pipeline's own)")
    args = parser.parse_args()
    from multimodal.generation import TextToImagePipeline
    from multimodal.generation.grid import captioned_grid
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_VARIATION_STRENGTH

    args.guidance = DEFAULT_GUIDANCE if args.guidance is None else args.guidance
    strength = DEFAULT_VARIATION_STRENGTH if args.variation_strength is None else args.variation_strength
    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_bf16(args.bf16)
    if args.guidance_cutoff is not None:
        pipe.guidance_cutoff = args.guidance_cutoff
    if args.out:
        images = pipe(PROMPTS, num_inference_steps=20, guidance_scale=args.guidance,
                      generator=torch.Generator().manual_seed(0)).images
        captioned_grid(images, PROMPTS, cols=8).save(args.out)
        print(f"wrote {args.out}")
    if args.everyday_out:
        everyday(pipe, args.everyday_out, args.guidance, args.seeds, tuple(args.judge or ["builtin"]))
    if args.variations_out:
        variations(pipe, args.variations_out, strength)
        print(f"wrote {args.variations_out}")
    if args.variation_photos:
        variation_score(pipe, args.variation_photos, 4, (args.judge or ["builtin"])[0], strength)


if __name__ == "__main__":
    main()
