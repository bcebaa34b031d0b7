"""Complete a text-to-image pipeline with the upsampler stage of another (an upsampler run's final/pipeline).

    python training/recipes/add_upsampler.py --pipeline runs/decoder-v3-stage2/final/pipeline \
        --upsampler runs/upsampler-v3/final/pipeline --out runs/decoder-v3-stage2/final/pipeline-64px

An upsampler run writes its `decoder.base` pipeline plus itself; this pairs it with a base decoder trained later
(same CLIP, same decoder size). The pipeline's constructor checks the sizes match.
"""

from __future__ import annotations

import argparse
import sys

from multimodal.generation import TextToImagePipeline


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="the pipeline folder whose CLIP, prior and decoder are kept")
    parser.add_argument("--upsampler", required=True, help="a pipeline folder with an upsampler stage to take")
    parser.add_argument("--out", required=True, help="where the completed pipeline folder is written")
    args = parser.parse_args(argv)
    base, donor = (TextToImagePipeline.from_pretrained(p) for p in (args.pipeline, args.upsampler))
    if donor.upsampler is None:
        sys.exit(f"{args.upsampler}: this pipeline has no upsampler stage")
    if base.clip.fingerprint() != donor.clip.fingerprint():
        sys.exit("the two pipelines hold different CLIP models: an upsampler is conditioned on its own CLIP's space")
    TextToImagePipeline(base.clip, base.prior, base.decoder, base.scheduler, donor.upsampler,
                        donor.upsampler_scheduler, base.bank).save_pretrained(args.out)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
