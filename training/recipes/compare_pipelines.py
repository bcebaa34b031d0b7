"""Judge a text-to-image pipeline against the shipped one by decoder v8's rule, or v10's where the folders scored the
everyday prompts over twelve seeds or more (recipes README), from the folders `eval_pipeline.sh` wrote for each:

    python training/recipes/compare_pipelines.py runs/eval-v6-judge10 runs/eval-v8
    python training/recipes/compare_pipelines.py runs/eval-v6-12seeds runs/eval-v10soup   # SEEDS=12 eval_pipeline.sh

(1) everyday prompts, over four seeds: at seed 0 at least the baseline's less one, over the four at least its less
two; over N >= 12 seeds (both folders the same N): over all of them at least the baseline's less N / 3;
(2) text re-tag at guidance 8 as a share of its own real images' re-tag at least the baseline's share less one prompt;
(3) reconstruction re-tag at guidance 3 as a share of the real images fitted to the output size at least the
baseline's share less one image; where one judge scored both (`JUDGE=... eval_pipeline.sh`, decoder v11's rule),
(2) and (3) compare the re-tags themselves, at least the baseline's less one prompt or image; (5) copy distance at
least --copy-floor at guidance 3 and 8; where both folders scored the variations of the scikit-image photos (decoder
v12's rule), (6) the variations that pick their own photo by CLIP at least the baseline's less one in twenty. (4), the
grid a person recognises, is judged by eye.
With --paired (the rule from decoder v19 on; both folders scored by one judge with a per-item report, and best over
all 189 held-out captions: PROMPTS=189 eval_pipeline.sh), (2) and (3) pair the two pipelines' hits on the same
captions and images: the candidate must not be significantly worse on either (exact one-sided McNemar,
p(worse) >= --alpha), in place of the one-prompt margin, which 64 prompts make a coin toss.
Exit status 0 when (1)-(3), (5) and (6) pass.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from multimodal_train.paired import discordant, sign_test

OWN_CLIP = "the pipeline's CLIP"  # what `eval generation` writes as the judge without --judge


def figures(folder: Path) -> dict:
    """The rule's figures from one eval_pipeline.sh folder (grid.txt and generation.json)."""
    try:
        report = json.loads((folder / "generation.json").read_text())
        text = (folder / "grid.txt").read_text()
    except OSError as error:
        sys.exit(f"compare_pipelines.py: {error}; run training/recipes/eval_pipeline.sh PIPELINE {folder} first")
    results = {r["guidance_scale"]: r for r in report["results"]}
    recon = {r["guidance_scale"]: r for r in report.get("decoder_diagnostics", []) if "recon_retag_accuracy" in r}
    if not ({3.0, 8.0} <= set(results) and 3.0 in recon):
        sys.exit(f"compare_pipelines.py: {folder} has no guidance 3 and 8 results with --reconstruction")
    everyday = re.search(r"over (\d+) seeds: (\d+)", text)
    if not everyday or not (int(everyday.group(1)) == 4 or int(everyday.group(1)) >= 12):
        sys.exit(f"compare_pipelines.py: {folder / 'grid.txt'} has no everyday score over 4 or 12 or more seeds; "
                 "run eval_pipeline.sh with SEEDS=4 or SEEDS=12")
    variations = re.search(r"own photo among \d+: by CLIP (\d+) of (\d+)", text)
    return {"judge": report["judge"], "variations": variations and tuple(map(int, variations.groups())),
            "seed0": int(re.search(r"right \(seed 0\): (\d+)", text).group(1)),
            "seeds": int(everyday.group(1)), "everyday": int(everyday.group(2)),
            "text": results[8.0]["retag_accuracy"], "text_real": results[8.0]["retag_accuracy_real"],
            "prompts": results[8.0]["num_prompts"], "recon": recon[3.0]["recon_retag_accuracy"],
            "recon_real": recon[3.0]["recon_retag_accuracy_real_at_size"], "images": recon[3.0]["num_images"],
            "copy": min(results[3.0]["copy_distance"], results[8.0]["copy_distance"]),
            "text_hits": results[8.0].get("retag_hits"), "recon_hits": recon[3.0].get("recon_retag_hits")}


def paired_check(name: str, base: dict | None, cand: dict | None, alpha: float) -> tuple[str, bool]:
    """A rule line: the candidate is not significantly worse on the same items (exact one-sided McNemar)."""
    if base is None or cand is None:
        sys.exit(f"compare_pipelines.py: --paired needs per-item {name} hits in both folders; re-run eval_pipeline.sh")
    try:
        wins, losses = discordant(base, cand)
    except ValueError as error:
        sys.exit(f"compare_pipelines.py: {name}: {error}; run both with the same PROMPTS")
    right = (sum(base.values()), sum(cand.values()))
    p_worse = sign_test(losses, wins)
    return (f"{name}: {right[0]} -> {right[1]} of {len(base)} (+{wins} -{losses}, p(worse) {p_worse:.3f})",
            p_worse >= alpha)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("baseline", type=Path, help="eval_pipeline.sh folder of the shipped pipeline")
    parser.add_argument("candidate", type=Path, help="eval_pipeline.sh folder of the candidate")
    parser.add_argument("--copy-floor", type=float, default=0.104, help="lowest copy distance allowed")
    parser.add_argument("--same-judge", action="store_true",
                        help="the two judge paths held the same CLIP when each was measured (a folder re-shipped "
                             "since; check the weights' bytes first): compare as one judge")
    parser.add_argument("--paired", action="store_true",
                        help="judge (2) and (3) by the paired test on the same items instead of a one-item margin")
    parser.add_argument("--alpha", type=float, default=0.05, help="significance level of the paired test")
    args = parser.parse_args()
    b, c = figures(args.baseline), figures(args.candidate)
    if args.same_judge:
        b["judge"] = c["judge"]
    if b["judge"] != c["judge"]:
        sys.exit(f"compare_pipelines.py: judged by {b['judge']} and by {c['judge']}; judge both the same way")
    if b["seeds"] != c["seeds"]:
        sys.exit(f"compare_pipelines.py: the everyday prompts were scored over {b['seeds']} seeds for the baseline "
                 f"and {c['seeds']} for the candidate; run both with the same SEEDS")
    # each pipeline judged by its own CLIP: re-tags as shares of its own real images'; one judge: the re-tags
    shares = b["judge"] == OWN_CLIP
    what = " share" if shares else ""
    text = {k: f["text"] / (f["text_real"] if shares else 1) for k, f in (("b", b), ("c", c))}
    recon = {k: f["recon"] / (f["recon_real"] if shares else 1) for k, f in (("b", b), ("c", c))}
    one_prompt = 1 / c["prompts"] / (c["text_real"] if shares else 1)
    one_image = 1 / c["images"] / (c["recon_real"] if shares else 1)
    over = f"(1) everyday over {c['seeds']} seeds: {b['everyday']} -> {c['everyday']}"
    everyday = [(over, c["everyday"] >= b["everyday"] - c["seeds"] // 3)] if c["seeds"] >= 12 else [
        (f"(1) everyday at seed 0: {b['seed0']} -> {c['seed0']}", c["seed0"] >= b["seed0"] - 1),
        (over, c["everyday"] >= b["everyday"] - 2)]
    if args.paired and shares:
        sys.exit("compare_pipelines.py: --paired compares hits, which needs one judge for both (JUDGE=...)")
    retags = [paired_check("(2) text re-tag", b["text_hits"], c["text_hits"], args.alpha),
              paired_check("(3) reconstruction re-tag", b["recon_hits"], c["recon_hits"], args.alpha)
              ] if args.paired else [
        (f"(2) text re-tag{what}: {text['b']:.3f} -> {text['c']:.3f}", text["c"] >= text["b"] - one_prompt - 1e-9),
        (f"(3) reconstruction re-tag{what}: {recon['b']:.3f} -> {recon['c']:.3f}",
         recon["c"] >= recon["b"] - one_image - 1e-9)]
    checks = [
        *everyday,
        *retags,
        (f"(5) copy distance: {b['copy']:.4f} -> {c['copy']:.4f}", c["copy"] >= args.copy_floor),
    ]
    scored_variations = bool(b["variations"] and c["variations"])
    if scored_variations:
        (b_right, total), (c_right, c_total) = b["variations"], c["variations"]
        if total != c_total:
            sys.exit(f"compare_pipelines.py: {total} and {c_total} variations scored; score both the same way")
        checks.append((f"(6) variations that pick their own photo: {b_right} -> {c_right} of {total}",
                       c_right >= b_right - total // 20))
    for line, passed in checks:
        print(f"{line}  {'passes' if passed else 'FAILS'}")
    passes = all(passed for _, passed in checks)
    numbers = "(1)-(3), (5), (6)" if scored_variations else "(1)-(3), (5)"
    print(f"{numbers}: the rule {'passes' if passes else 'fails'}; (4), the grid, by eye")
    return 0 if passes else 1


if __name__ == "__main__":
    sys.exit(main())
