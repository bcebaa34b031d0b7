"""How much a decoder's loss depends on its CLIP condition, per timestep: the training loss on the same noisy images
with each image's own embedding, with another image's (the batch rolled by one) and with the null condition.

    python training/recipes/condition_loss.py --model builtin --data data/corpus/emoji/train

A decoder that uses its condition has a much lower loss with the right embedding than with a wrong one at high noise,
where the condition decides colour and shape; one that ignores it has three equal columns.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from multimodal.evaluation.generation import SENSITIVITY_TIMESTEPS


@torch.no_grad()
def condition_loss(pipe, images, timesteps=SENSITIVITY_TIMESTEPS, seed: int = 0) -> dict[int, dict[str, float]]:
    """{t: {"right", "shuffled", "null": mean squared error of the decoder's prediction}} on these PIL images."""
    from diffusers import DDPMScheduler

    from multimodal.generation.components import decoder_condition
    from multimodal_train.embedding_cache import fit_square

    unet, size = pipe.decoder.float().eval(), pipe.decoder.config.sample_size
    train_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
    x0 = torch.from_numpy(np.stack([fit_square(im, size) for im in images])).permute(0, 3, 1, 2).float() / 127.5 - 1
    cond = pipe.clip.embed_images(images).float()  # [B, D]
    generator, out = torch.Generator().manual_seed(seed), {}
    for t in timesteps:
        steps = torch.full((len(x0),), t)
        noise = torch.randn(x0.shape, generator=generator)
        noisy = train_scheduler.add_noise(x0, noise, steps)
        target = noise if train_scheduler.config.prediction_type == "epsilon" \
            else train_scheduler.get_velocity(x0, noise, steps)
        out[t] = {name: (unet(noisy, steps, **decoder_condition(unet, c)).sample - target).pow(2).mean().item()
                  for name, c in (("right", cond), ("shuffled", cond.roll(1, 0)), ("null", torch.zeros_like(cond)))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin", help="a text-to-image pipeline folder or name")
    parser.add_argument("--data", required=True, help="shards whose images are decoded (e.g. a train split)")
    parser.add_argument("--images", type=int, default=64, help="how many images, the first ones of the shards")
    args = parser.parse_args()
    from itertools import islice

    from multimodal.data.samples import iter_decoded
    from multimodal.generation import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained(args.model)
    images = [s.image for s in islice(iter_decoded(args.data), args.images)]
    print("t\tright\tshuffled\tnull\tright/null")
    for t, row in condition_loss(pipe, images).items():
        print(f"{t}\t{row['right']:.4f}\t{row['shuffled']:.4f}\t{row['null']:.4f}\t{row['right'] / row['null']:.3f}")


if __name__ == "__main__":
    main()
