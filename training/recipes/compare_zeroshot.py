"""Judge a CLIP candidate against the shipped one by a shipping rule of the recipes README.

    python training/recipes/compare_zeroshot.py runs/eval/zeroshot-builtin.json runs/eval/zeroshot-v9.json
    python training/recipes/compare_zeroshot.py --paired runs/eval/zeroshot-builtin.json runs/eval/zeroshot-v10.json

Without --paired (the rule of CLIP v6-v9): the candidate's mean top-1 over the sets is higher, and no set is more
than `--points` below (on sets under 100 images: no more than one image).
With --paired (the rule from CLIP v10 on): pooled over every image of every set, the candidate is right on
significantly more images (exact one-sided McNemar test, p < --alpha), and on no set is it significantly worse by
the same test. Needs reports that carry each image's top-1 hit (`multimodal eval zeroshot --out`, `top1_hits`).
With --paired --improve SET,SET (the rule of CLIP v20, aimed at photos): pooled over those sets the candidate is
significantly better, pooled over all the others it is not significantly worse, and no set is significantly worse.
--improve-alpha sets a stricter bar for the improvement than --alpha (a set that has judged candidates before).

Both arguments are `multimodal eval zeroshot --out` reports over the same sets; either may be several reports joined
by commas (a.json,b.json), read as one. Exit status 0 when the rule passes.
"""

from __future__ import annotations

import argparse
import json
import sys

from multimodal_train.paired import discordant, sign_test


def set_discordant(base: dict, cand: dict, name: str) -> tuple[int, int]:
    """Images of set `name` that only the candidate gets right, and those only the baseline gets right."""
    b, c = base.get("top1_hits"), cand.get("top1_hits")
    if b is None or c is None:
        sys.exit(f"compare_zeroshot.py: set {name!r} has no per-image hits; re-run multimodal eval zeroshot --out")
    try:
        if len(b) != base["num_samples"]:
            raise ValueError(f"{len(b)} hits for {base['num_samples']} images")
        return discordant(b, c)  # raises ValueError where the two reports scored different images
    except ValueError:
        sys.exit(f"compare_zeroshot.py: set {name!r} was not measured on the same images by both reports")


def read_reports(paths: str) -> dict:
    """The results of one or more reports (comma-separated paths), by set; a set in two reports is an error."""
    results: dict = {}
    for path in filter(None, paths.split(",")):
        part = json.load(open(path))["results"]
        if set(part) & set(results):
            sys.exit(f"compare_zeroshot.py: {path} repeats sets {sorted(set(part) & set(results))}")
        results.update(part)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", help="zero-shot report of the shipped model")
    parser.add_argument("candidate", help="zero-shot report of the candidate")
    parser.add_argument("--points", type=float, default=1.0, help="largest drop allowed on a set, in points of top-1")
    parser.add_argument("--paired", action="store_true", help="judge by the paired test instead of --points")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired test")
    parser.add_argument("--improve", default="", help="with --paired: comma-separated sets that must improve, "
                        "pooled; the others must only not get worse, pooled")
    parser.add_argument("--improve-alpha", type=float, default=None,
                        help="significance level the pooled improvement must reach (default: --alpha)")
    args = parser.parse_args()
    improve_alpha = args.alpha if args.improve_alpha is None else args.improve_alpha
    if not 0 < improve_alpha <= args.alpha:
        sys.exit(f"compare_zeroshot.py: --improve-alpha must be above 0 and at most --alpha, got {improve_alpha}")
    base, cand = (read_reports(paths) for paths in (args.baseline, args.candidate))
    improve = {name for name in args.improve.split(",") if name}
    if improve and not args.paired:
        sys.exit("compare_zeroshot.py: --improve is a rule of the paired test; add --paired")
    if improve - set(base):
        sys.exit(f"compare_zeroshot.py: --improve names sets the reports lack: {sorted(improve - set(base))}")
    if set(base) != set(cand):
        sys.exit(f"compare_zeroshot.py: the reports cover different sets: {sorted(set(base) ^ set(cand))}")
    passes, rows, won, lost, rest_won, rest_lost = True, [], 0, 0, 0, 0
    for name, b in base.items():
        n, before, after = b["num_samples"], 100 * b["top1"], 100 * cand[name]["top1"]
        if args.paired:
            wins, losses = set_discordant(b, cand[name], name)
            if improve and name not in improve:
                rest_won, rest_lost = rest_won + wins, rest_lost + losses
            else:
                won, lost = won + wins, lost + losses
            p_worse = sign_test(losses, wins)
            worse, detail = p_worse < args.alpha, f"  +{wins} -{losses}  p(worse) {p_worse:.3f}"
        else:
            lost_images = round((before - after) * n / 100)
            worse = lost_images > 1 if n < 100 else before - after > args.points
            detail = ""
        passes &= not worse
        rows.append((before, after))
        print(f"{name:14s} {n:5d}  {before:5.1f} ({round(before * n / 100):3d})  {after:5.1f} "
              f"({round(after * n / 100):3d}){detail}{'  below the rule' if worse else ''}")
    mean_before, mean_after = (sum(r[i] for r in rows) / len(rows) for i in (0, 1))
    print(f"mean top-1 {mean_before:.1f} -> {mean_after:.1f}")
    if args.paired:
        p_better = sign_test(won, lost)
        print(f"pooled{' over ' + ','.join(sorted(improve)) if improve else ''}: {won} images gained, {lost} lost, "
              f"p(better) {p_better:.2g}")
        passes &= p_better < improve_alpha
    if improve:
        p_worse = sign_test(rest_lost, rest_won)
        print(f"pooled over the other sets: {rest_won} images gained, {rest_lost} lost, p(worse) {p_worse:.2g}")
        passes &= p_worse >= args.alpha
    elif not args.paired:
        passes &= mean_after > mean_before
    print(f"the rule {'passes' if passes else 'fails'}")
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
