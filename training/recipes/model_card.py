"""Write assets/MODEL_CARD.md from the evaluation files the recipe produced; no number is typed by hand.

    python training/recipes/model_card.py --clip-run runs/lit-imagenet --evals runs/eval --out assets/MODEL_CARD.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def wall_minutes(run: Path) -> str:
    start, end = run / "config.yaml", run / "final"
    if not (start.exists() and end.exists()):
        return "?"
    return f"{(end.stat().st_mtime - start.stat().st_mtime) / 60:.0f} min"


def last_eval(run: Path) -> dict:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if '"eval/' in line]
    return rows[-1] if rows else {}


def zeroshot_table(zs: dict, rt: dict) -> str:
    lines = ["| held-out split | images | classes | top-1 | top-5 | image→text R@1 | R@5 | text→image R@1 | R@5 |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for name, m in zs["results"].items():
        r = rt["results"].get(name, {})
        recalls = " | ".join(f"{r.get(k, float('nan')):.1%}" for k in ("image_to_text_R@1", "image_to_text_R@5",
                                                                         "text_to_image_R@1", "text_to_image_R@5"))
        lines.append(f"| {name} | {m['num_samples']} | {m['num_classes']} | {m['top1']:.1%} | {m['top5']:.1%} | "
                     f"{recalls} |")
    return "\n".join(lines)


def generation_table(gen: dict) -> str:
    lines = ["| steps | guidance | CLIP-score (real images) | re-tag accuracy (real images) | Fréchet distance, "
             "CLIP space |",
             "| ---: | ---: | --- | --- | ---: |"]
    for r in gen["results"]:
        lines.append(f"| {r['steps']} | {r['guidance_scale']:g} | {r['clip_score']:.3f} ({r['clip_score_real']:.3f}) | "
                     f"{r['retag_accuracy']:.1%} ({r['retag_accuracy_real']:.1%}) | {r['frechet_clip_distance']:.3f} |")
    return "\n".join(lines)


def finetune_table(report: dict) -> str:
    sets = list(report["alphas"][0]["results"])
    lines = ["| WiSE-FT alpha | " + " | ".join(f"{s} top-1" for s in sets) + " |",
             "| ---: | " + " | ".join("---:" for _ in sets) + " |"]
    for row in report["alphas"]:
        lines.append(f"| {row['alpha']:g} | " + " | ".join(f"{row['results'][s]['top1']:.1%}" for s in sets) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clip-run", required=True)
    parser.add_argument("--prior-run", default="runs/prior")
    parser.add_argument("--decoder-run", default="runs/decoder")
    parser.add_argument("--finetune-run", default="runs/finetune-fashion")
    parser.add_argument("--evals", default="runs/eval")
    parser.add_argument("--photos", default="runs/eval/photos.txt")
    parser.add_argument("--template", default=str(Path(__file__).with_name("MODEL_CARD.template.md")))
    parser.add_argument("--out", default="assets/MODEL_CARD.md")
    args = parser.parse_args()
    import multimodal as mm

    evals = Path(args.evals)
    clip = mm.from_pretrained("builtin")
    from multimodal.generation import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained("builtin")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    trained = sum(p.numel() for p in clip.parameters() if p.requires_grad)
    prior_eval = last_eval(Path(args.prior_run))
    values = {
        "date": time.strftime("%Y-%m-%d"),
        "clip_params": f"{count(clip) / 1e6:.1f} M", "clip_trained": f"{trained / 1e6:.1f} M",
        "prior_params": f"{count(pipe.prior) / 1e6:.2f} M", "decoder_params": f"{count(pipe.decoder) / 1e6:.1f} M",
        "image_size": clip.image_size,
        "clip_time": wall_minutes(Path(args.clip_run)), "prior_time": wall_minutes(Path(args.prior_run)),
        "decoder_time": wall_minutes(Path(args.decoder_run)),
        "zeroshot_table": zeroshot_table(load(evals / "zeroshot.json"), load(evals / "retrieval.json")),
        "generation_table": generation_table(load(evals / "generation.json")),
        "finetune_table": finetune_table(load(Path(args.finetune_run) / "finetune_report.json")),
        "prior_cosine": f"{prior_eval.get('eval/prior/cosine', float('nan')):.3f}",
        "text_cosine": f"{prior_eval.get('eval/text_baseline/cosine', float('nan')):.3f}",
        "prior_top1": f"{prior_eval.get('eval/prior/retrieval_top1', float('nan')):.1%}",
        "text_top1": f"{prior_eval.get('eval/text_baseline/retrieval_top1', float('nan')):.1%}",
        "photos": Path(args.photos).read_text().strip() if Path(args.photos).is_file() else "(not run)",
    }
    card = Path(args.template).read_text().format(**values)
    Path(args.out).write_text(card)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
