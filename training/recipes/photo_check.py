"""The README's tagging check for one CLIP: which bundled examples are right at top-1 among the everyday labels,
and where the cat photo ranks among the animals. Evaluation only (five of the examples are scikit-image photos).

    python training/recipes/photo_check.py runs/ablate-clip/K3-soup-glosses-lr1e-4/final
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

ASSETS = Path(__file__).resolve().parents[2] / "assets"
GOLD = {"astronaut": "astronaut", "cat": "cat", "clipart-apple": "apple", "clipart-car": "car",
        "clipart-guitar": "guitar", "clipart-tree": "tree", "coffee": "cup of coffee", "coins": "coins",
        "rocket": "rocket"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a CLIP folder or name, e.g. builtin")
    args = parser.parse_args()
    from multimodal import ZeroShotTagger
    from multimodal.errors import MultimodalError
    from multimodal.tagging.labels import read_labels_file

    try:
        tagger = ZeroShotTagger.from_pretrained(args.model)
    except MultimodalError as error:
        parser.error(str(error))
    everyday = tagger.tag(str(ASSETS / "examples"), read_labels_file(ASSETS / "labels" / "everyday.txt"), top_k=1)
    picked = {Path(path).stem: tags[0][0] for path, tags in everyday.items()}
    wrong = {stem: label for stem, label in picked.items() if label != GOLD[stem]}
    animals = tagger.tag(ASSETS / "examples" / "cat.jpg", read_labels_file(ASSETS / "labels" / "animals.txt"),
                         top_k=5)
    rank = next((str(i + 1) for i, (label, _) in enumerate(animals) if label == "cat"), "below 5")
    print(json.dumps({"model": args.model, "examples_right": len(picked) - len(wrong), "examples": len(picked),
                      "wrong": wrong, "cat_among_animals": f"{animals[0][0]} {animals[0][1]:.2f}", "cat_rank": rank}))


if __name__ == "__main__":
    main()
