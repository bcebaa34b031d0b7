"""Add the training images of more shards to a retrieval pipeline's neighbour bank, with no retraining.

    python training/recipes/extend_bank.py --pipeline assets/builtin/pipeline \
        --data data/corpus/gcompris/train --out runs/bank-gcompris

The decoder draws from a neighbour of its condition; a bank without photos can only offer drawings on white, even
for a photo's condition. The new images are embedded by the pipeline's own CLIP and fitted to the bank's size
exactly as the decoder trainer fits its cache (`fit_square`). Only training splits belong in a bank.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="a pipeline folder with a neighbour bank")
    parser.add_argument("--data", required=True, action="append",
                        help="training shards (a folder or a brace pattern) whose images join the bank; repeatable")
    parser.add_argument("--out", required=True, help="where the pipeline with the larger bank is written")
    args = parser.parse_args(argv)
    from multimodal.data.samples import iter_decoded
    from multimodal.generation import NeighbourBank, TextToImagePipeline
    from multimodal_train.embedding_cache import fit_square

    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    if pipe.bank is None:
        sys.exit(f"{args.pipeline}: this pipeline has no neighbour bank")
    if any(part in ("eval", "test") for spec in args.data for part in Path(spec).parts):
        sys.exit("a bank holds training images only; give the train split's shards")
    size, images, embeddings = pipe.bank.config.image_size, [pipe.bank.images], [pipe.bank.embeddings]
    for spec in args.data:
        pictures = [sample.image for sample in iter_decoded(spec)]
        if not pictures:
            sys.exit(f"{spec}: no readable samples")
        images.append(torch.from_numpy(np.stack([fit_square(picture, size) for picture in pictures])))
        embeddings.append(pipe.clip.embed_images(pictures).cpu())  # the pipeline's CLIP: the bank's space
        print(f"{spec}: {len(pictures)} images", file=sys.stderr)
    pipe.bank = NeighbourBank.from_arrays(torch.cat(images), torch.cat(embeddings), pipe.clip.fingerprint())
    pipe.save_pretrained(args.out)
    print(f"wrote {args.out}: {len(pipe.bank.images)} bank images", file=sys.stderr)


if __name__ == "__main__":
    main()
