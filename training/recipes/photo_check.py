"""The README's tagging check for one CLIP: which bundled examples are right at top-1 among the everyday labels,
and where the cat photo ranks among the animals. Evaluation only (five of the examples are scikit-image photos).

    python training/recipes/photo_check.py runs/ablate-clip/K3-soup-glosses-lr1e-4/final
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOLD = {"astronaut": "astronaut", "cat": "cat", "clipart-apple": "apple", "clipart-car": "car",
        "clipart-guitar": "guitar", "clipart-tree": "tree", "coffee": "cup of coffee", "coins": "coins",
        "rocket": "rocket"}


def tag(model: str, labels: str, paths: list[str]) -> dict[str, list[dict]]:
    """{example stem: its top 5 tags} from `multimodal tag --format json`."""
    run = subprocess.run([sys.executable, "-m", "multimodal", "tag", *paths, "--model", model, "--labels-file", labels,
                          "--top-k", "5", "--format", "json", "--no-cache"], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        sys.exit(run.stderr.strip().splitlines()[-1] if run.stderr.strip() else f"multimodal tag failed: {run}")
    rows = [json.loads(line) for line in run.stdout.splitlines() if line.strip()]
    return {Path(row["image"]).stem: row["tags"] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a CLIP folder or name, e.g. builtin")
    args = parser.parse_args()
    everyday = tag(args.model, "assets/labels/everyday.txt", ["assets/examples"])
    wrong = {stem: tags[0]["label"] for stem, tags in everyday.items() if tags[0]["label"] != GOLD[stem]}
    animals = tag(args.model, "assets/labels/animals.txt", ["assets/examples/cat.jpg"])["cat"]
    rank = next((str(i + 1) for i, t in enumerate(animals) if t["label"] == "cat"), "below 5")
    print(json.dumps({"model": args.model, "examples_right": len(everyday) - len(wrong), "examples": len(everyday),
                      "wrong": wrong, "cat_among_animals": f"{animals[0]['label']} {animals[0]['score']:.2f}",
                      "cat_rank": rank}))


if __name__ == "__main__":
    main()
