"""Write assets/MODEL_CARD.md from the evaluation files the recipe produced; no number is typed by hand.

    python training/recipes/model_card.py --clip-run runs/lit-v2 --evals runs/eval --out assets/MODEL_CARD.md

Every value it can measure from this build's runs and evaluation files is written fresh; a value whose inputs
are not here (e.g. the decoder's, when only the CLIP was retrained) is carried over from the previous card's
values (MODEL_CARD.values.json beside it), and the script names the ones it carried.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def load(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.is_file() else None


def wall_minutes(run: Path) -> str:
    """Training time of a run: the span of each TensorBoard log it wrote (one per start, so the time between a
    stop and its --resume is not counted); without logs, from its config to its final weights."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    seconds = 0.0
    for events in sorted((run / "tb").glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events), size_guidance={"scalars": 0})
        accumulator.Reload()
        times = [e.wall_time for tag in accumulator.Tags()["scalars"] for e in accumulator.Scalars(tag)]
        seconds += max(times) - min(times) if times else 0.0
    start, end = run / "config.yaml", run / "final"
    if not seconds and start.exists() and end.exists():
        seconds = end.stat().st_mtime - start.stat().st_mtime
    if not seconds or not end.exists():
        return "?"
    return f"{seconds / 60:.0f} min" if seconds >= 30 else "under 1 min"


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
    copies = "copy_distance" in gen["results"][0]  # a pipeline with a bank of training images
    lines = ["| steps | guidance | CLIP-score (real images) | re-tag accuracy (real images) | Fréchet distance, "
             "CLIP space |" + (" copy distance (real images) |" if copies else ""),
             "| ---: | ---: | --- | --- | ---: |" + (" --- |" if copies else "")]
    for r in gen["results"]:
        lines.append(f"| {r['steps']} | {r['guidance_scale']:g} | {r['clip_score']:.3f} ({r['clip_score_real']:.3f}) | "
                     f"{r['retag_accuracy']:.1%} ({r['retag_accuracy_real']:.1%}) | {r['frechet_clip_distance']:.3f} |"
                     + (f" {r['copy_distance']:.3f} ({r['copy_distance_real']:.3f}) |" if copies else ""))
    return "\n".join(lines)


def finetune_table(report: dict) -> str:
    sets = list(report["alphas"][0]["results"])
    lines = ["| WiSE-FT alpha | " + " | ".join(f"{s} top-1" for s in sets) + " |",
             "| ---: | " + " | ".join("---:" for _ in sets) + " |"]
    for row in report["alphas"]:
        lines.append(f"| {row['alpha']:g} | " + " | ".join(f"{row['results'][s]['top1']:.1%}" for s in sets) + " |")
    return "\n".join(lines)


def measured(args) -> dict:
    """Every card value whose inputs exist in this build (the runs and evaluation files); the rest is left out."""
    import multimodal as mm
    from multimodal.generation import TextToImagePipeline

    evals, values = Path(args.evals), {"date": time.strftime("%Y-%m-%d")}
    clip = mm.from_pretrained("builtin")
    pipe = TextToImagePipeline.from_pretrained("builtin")
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    values.update({"clip_params": f"{count(clip) / 1e6:.1f} M", "image_size": clip.image_size,
                   "clip_trained": f"{sum(p.numel() for p in clip.parameters() if p.requires_grad) / 1e6:.1f} M",
                   "prior_params": f"{count(pipe.prior) / 1e6:.2f} M",
                   "decoder_params": f"{count(pipe.decoder) / 1e6:.1f} M"})
    for key, runs in (("clip_time", args.clip_run), ("prior_time", [args.prior_run]),
                      ("decoder_time", args.decoder_run)):
        times = [wall_minutes(Path(run)) for run in runs]
        if "?" not in times:
            values[key] = " + ".join(times)
    zs, rt, gen = (load(evals / f"{name}.json") for name in ("zeroshot", "retrieval", "generation"))
    if zs and rt:
        values["zeroshot_table"] = zeroshot_table(zs, rt)
    if gen:
        values["generation_table"] = generation_table(gen)
    if report := load(Path(args.finetune_run) / "finetune_report.json"):
        values["finetune_table"] = finetune_table(report)
    if (Path(args.prior_run) / "metrics.jsonl").is_file():
        prior_eval = last_eval(Path(args.prior_run))
        values.update({"prior_cosine": f"{prior_eval.get('eval/prior/cosine', float('nan')):.3f}",
                       "text_cosine": f"{prior_eval.get('eval/text_baseline/cosine', float('nan')):.3f}",
                       "prior_top1": f"{prior_eval.get('eval/prior/retrieval_top1', float('nan')):.1%}",
                       "text_top1": f"{prior_eval.get('eval/text_baseline/retrieval_top1', float('nan')):.1%}"})
    if Path(args.photos).is_file():
        values["photos"] = Path(args.photos).read_text().strip()
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip-run", required=True, nargs="+",
                        help="the run(s) of the shipped CLIP (their wall times; a soup's runs in order)")
    parser.add_argument("--prior-run", default="runs/prior", help="the run of the shipped prior")
    parser.add_argument("--decoder-run", default=["runs/decoder"], nargs="+",
                        help="the run(s) of the shipped decoder (their wall times, in order)")
    parser.add_argument("--finetune-run", default="runs/finetune-fashion", help="the fine-tuning report's run")
    parser.add_argument("--evals", default="runs/eval", help="zeroshot.json, retrieval.json, generation.json")
    parser.add_argument("--photos", default="runs/eval/photos.txt", help="`multimodal tag` output on the examples")
    parser.add_argument("--template", default=str(Path(__file__).with_name("MODEL_CARD.template.md")))
    parser.add_argument("--out", default="assets/MODEL_CARD.md", help="the card (its values go beside it, .json)")
    args = parser.parse_args()
    sidecar = Path(args.out).with_suffix(".values.json")
    previous = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    values = measured(args)
    carried = sorted(set(previous) - set(values) - {"carried_note"})
    values["carried_note"] = (f" Not re-measured for this build, kept from the previous card: {', '.join(carried)}."
                              if carried else "")
    card = Path(args.template).read_text().format(**{**previous, **values})
    Path(args.out).write_text(card)
    sidecar.write_text(json.dumps({**previous, **values}, indent=1, ensure_ascii=False))
    print(f"wrote {args.out}" + (f"; carried over from the previous card (inputs not in this build): {carried}"
                                  if carried else ""))


if __name__ == "__main__":
    main()
