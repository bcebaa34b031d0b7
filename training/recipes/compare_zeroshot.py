"""Judge a CLIP candidate against the shipped one by the shipping rule of the recipes README: its mean top-1 over
the sets is higher, and no set is more than `--points` below (on sets under 100 images: no more than one image).

    python training/recipes/compare_zeroshot.py runs/eval/zeroshot-builtin.json runs/eval/zeroshot-v9.json

Both files are `multimodal eval zeroshot --out` reports over the same sets. Exit status 0 when the rule passes.
"""

from __future__ import annotations

import argparse
import json
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="zero-shot report of the shipped model")
    parser.add_argument("candidate", help="zero-shot report of the candidate")
    parser.add_argument("--points", type=float, default=1.0, help="largest drop allowed on a set, in points of top-1")
    args = parser.parse_args()
    base, cand = (json.load(open(path))["results"] for path in (args.baseline, args.candidate))
    if set(base) != set(cand):
        sys.exit(f"compare_zeroshot.py: the reports cover different sets: {sorted(set(base) ^ set(cand))}")
    passes, rows = True, []
    for name, b in base.items():
        n, before, after = b["num_samples"], 100 * b["top1"], 100 * cand[name]["top1"]
        lost = round((before - after) * n / 100)  # images
        worse = lost > 1 if n < 100 else before - after > args.points
        passes &= not worse
        rows.append((before, after))
        print(f"{name:14s} {n:5d}  {before:5.1f} ({round(before * n / 100):3d})  {after:5.1f} "
              f"({round(after * n / 100):3d}){'  below the rule' if worse else ''}")
    mean_before, mean_after = (sum(r[i] for r in rows) / len(rows) for i in (0, 1))
    passes &= mean_after > mean_before
    print(f"mean top-1 {mean_before:.1f} -> {mean_after:.1f}: the rule {'passes' if passes else 'fails'}")
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
