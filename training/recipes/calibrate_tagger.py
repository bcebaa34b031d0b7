"""Calibrate a model's default multi-label threshold and save it beside the model (tagger.json).

    python training/recipes/calibrate_tagger.py --model assets/builtin/clip

One cosine threshold with the best F1 over every (image, label) pair of the corpora's held-out splits
(each image's own label against all the others), so that `--multi-label` works out of the box. The
training images would bias it upwards (the model has seen them). It does not touch what the reported
evaluations measure: single-label top-1 does not depend on a threshold.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SETS = ("emoji", "twemoji", "openmoji", "openclipart", "tuxpaint")


def sample(corpus: Path, per_set: int, seed: int) -> tuple[list, list[list[str]]]:
    from multimodal.data.samples import iter_decoded

    images, labels = [], []
    for name in SETS:
        folder = corpus / name / "eval"
        if not folder.is_dir():
            continue
        rows = [(s.image, (s.meta.get("labels") or [s.caption])[0]) for s in iter_decoded(folder)]
        for image, label in random.Random(seed).sample(rows, min(per_set, len(rows))):
            images.append(image)
            labels.append([label])
    return images, labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "assets/builtin/clip"), help="model folder")
    parser.add_argument("--corpus", default="data/corpus", help="built corpora (multimodal shards corpus all)")
    parser.add_argument("--per-set", type=int, default=300, help="held-out images sampled per corpus")
    args = parser.parse_args()
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.tagger import TAGGER_FILE

    tagger = ZeroShotTagger.from_pretrained(args.model)
    images, labels = sample(Path(args.corpus), args.per_set, seed=0)
    tagger.calibrate(images, labels, per_label=False)
    state = {"templates": list(tagger.templates), "thresholds": {}, "default_threshold": tagger.default_threshold,
             "calibration": f"best F1 over all (image, label) pairs of {len(images)} held-out images of {SETS}"}
    (Path(args.model) / TAGGER_FILE).write_text(json.dumps(state, indent=2) + "\n")
    print(f"default cosine threshold {tagger.default_threshold:.4f} from {len(images)} images", file=sys.stderr)


if __name__ == "__main__":
    main()
