"""How well the bank images a retrieval pipeline hands its decoder re-tag on their own: the ceiling that a decoder
which only redraws its neighbour's concept would reach on the reconstruction re-tag of `eval generation`.
For each held-out image (the same 64 and 189 captions as `--reconstruction`), its k-th nearest bank image, upscaled
from the bank's size to the decoder's, is judged among every caption of the split, beside the real images.

    python training/recipes/neighbour_retag.py --pipeline assets/builtin/pipeline --judge assets/builtin/clip
"""

from __future__ import annotations

import argparse


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default="builtin", help="a retrieval pipeline folder, or builtin")
    parser.add_argument("--judge", default=None, help="the CLIP that re-tags (default: the pipeline's own)")
    parser.add_argument("--data", default="data/corpus/emoji/eval", help="held-out shards")
    parser.add_argument("--num-images", type=int, default=64, help="held-out images, as eval generation picks them")
    args = parser.parse_args()
    if args.num_images < 1:
        parser.error("--num-images must be at least 1")
    from multimodal.evaluation.generation import caption_targets, fit_images, heldout_images
    from multimodal.generation import TextToImagePipeline, upsampler_input
    from multimodal.models import from_pretrained

    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    if pipe.bank is None:
        parser.error(f"{args.pipeline} has no bank: it is not a retrieval pipeline")
    judge = from_pretrained(args.judge) if args.judge else pipe.clip
    captions, images, every_caption = heldout_images(args.data, args.num_images)
    labels, targets = caption_targets(captions, every_caption)
    text = judge.embed_texts(labels)
    size, top_k = pipe.decoder.config.sample_size, pipe.decoder.config.retrieval_top_k

    def retag(pictures) -> float:
        return ((judge.embed_images(pictures) @ text.T).argmax(1) == targets).float().mean().item()

    nearest = pipe.bank.nearest(pipe.clip.embed_images(images), top_k)  # [N, k]
    for rank in range(top_k):
        pixels = upsampler_input(pipe.bank.pixels(nearest[:, rank]), size)  # [N, 3, size, size] in [-1, 1]
        pictures = pipe.image_processor.postprocess(pixels, output_type="pil")
        print(f"neighbour {rank + 1} of {top_k}: re-tag {retag(pictures):.1%}")
    print(f"real images at {size} px: {retag(fit_images(images, size)):.1%}; as they are: {retag(images):.1%}")


if __name__ == "__main__":
    main()
