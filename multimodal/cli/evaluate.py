"""`multimodal eval zeroshot|retrieval|generation`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from multimodal.cli import add_subcommand, positive_int, step_share
from multimodal.errors import UsageError

EVAL_HELP = """\
  zeroshot    top-1/top-5 accuracy and per-class recall, each image classified among all labels of
              the set (shards with labels in their .json, or an ImageFolder)
  retrieval   image->text and text->image recall@1/5/10 on caption shards
  generation  CLIP-score, re-tag accuracy and a Frechet distance for generated images
The metrics are printed as a table and written as JSON with --out. The trainers use these same functions."""


def register(sub) -> None:
    p = add_subcommand(sub, "eval", "evaluate a model: zero-shot accuracy, retrieval recall, generation quality",
                       EVAL_HELP)
    p.add_argument("what", choices=["zeroshot", "retrieval", "generation"], help="which evaluation to run")
    p.add_argument("--model", default="builtin", help="'builtin', a model folder (zeroshot, retrieval), a pipeline "
                   "folder (generation), or an open_clip ARCH:TAG")
    p.add_argument("--data", action="append", metavar="[NAME=]SPEC",
                   help="shards (folder, glob or brace pattern) or an ImageFolder; repeat for several sets")
    p.add_argument("--template", action="append", dest="templates", help="zeroshot prompt template(s), e.g. 'a "
                   "photo of a {}' (repeatable; default: the built-in ensemble)")
    p.add_argument("--batch-size", type=positive_int, default=64, help="images per forward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast: the towers (zeroshot, "
                   "retrieval), or the pipeline's denoisers (generation and --reconstruction; the judge, --sensitivity "
                   "and the prior stay float32)")
    p.add_argument("--out", help="write the metrics as JSON here")
    g = p.add_argument_group("generation")
    g.add_argument("--num-prompts", type=positive_int, default=64, help="held-out captions used as prompts (distinct)")
    g.add_argument("--steps", default="20", help="comma-separated step counts, e.g. 10,20,50")
    g.add_argument("--guidance", default=None, help="comma-separated guidance scales, e.g. 3,8 (default: the "
                   "pipeline's default guidance)")
    g.add_argument("--guidance-cutoff", type=step_share, default=None, help="the share of the steps that are guided, "
                   "from the first (default: the pipeline's own); text images and --reconstruction")
    g.add_argument("--judge", default=None, help="CLIP that scores the images (default: the pipeline's own)")
    g.add_argument("--grid-dir", default=None, help="save a PNG grid of the generated images per setting here")
    g.add_argument("--no-text", action="store_true", help="skip the text->image metrics (prior + decoder)")
    g.add_argument("--no-prior", action="store_true",
                   help="condition the decoder on the CLIP text embedding itself instead of the prior's output")
    g.add_argument("--reconstruction", action="store_true",
                   help="also re-tag decoded held-out images: image -> CLIP image embedding -> decoder -> judge, each "
                        "image's own caption among all captions of the set (isolates the decoder from the prior)")
    g.add_argument("--sensitivity", action="store_true",
                   help="also the decoder's condition sensitivity ||eps(c) - eps(null)|| / ||eps(c)|| per timestep "
                        "(sensitivity_t*), the same on the image each output implies (sensitivity_x0_t*), "
                        "and, for a retrieval decoder, its neighbour use (the same with only the retrieved image "
                        "taken away)")
    p.set_defaults(func=run)


def parse_sets(specs: list[str] | None) -> dict[str, str]:
    if not specs:
        raise UsageError("give at least one --data set")
    sets = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        sets[name if sep else Path(spec).name or spec] = path if sep else spec
    return sets


def run(args) -> int:
    if args.what == "generation":
        return run_generation(args)
    from multimodal.evaluation import retrieval_metrics, zeroshot_metrics
    from multimodal.models import from_pretrained
    from multimodal.prompts import DEFAULT_TEMPLATES

    model = from_pretrained(args.model)
    results = {}
    for name, spec in parse_sets(args.data).items():
        if args.what == "zeroshot":
            results[name] = zeroshot_metrics(model, spec, templates=args.templates or DEFAULT_TEMPLATES,
                                             batch_size=args.batch_size, autocast=args.bf16)
        else:
            results[name] = retrieval_metrics(model, spec, batch_size=args.batch_size, autocast=args.bf16)
    print(format_table(results))
    if args.out:
        Path(args.out).write_text(json.dumps({"model": args.model, "task": args.what, "results": results}, indent=2))
        print(f"wrote {args.out}", file=sys.stderr)
    return 0


def format_table(results: dict) -> str:
    keys = [k for k in next(iter(results.values())) if isinstance(next(iter(results.values()))[k], float)]
    lines = [f"{'set':<20}" + "".join(f"{k:>22}" for k in keys)]
    for name, metrics in results.items():
        lines.append(f"{name:<20}" + "".join(f"{metrics[k]:>22.4f}" for k in keys))
    return "\n".join(lines)


def run_generation(args) -> int:
    from multimodal.evaluation.generation import decoder_diagnostics
    from multimodal.generation import EmbeddingPrior, TextToImagePipeline
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE
    from multimodal.models import from_pretrained

    pipe = TextToImagePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    pipe.enable_bf16(args.bf16)
    if args.guidance_cutoff is not None:
        pipe.guidance_cutoff = args.guidance_cutoff
    if args.no_prior:
        pipe.prior = EmbeddingPrior.identity(pipe.clip.embed_dim)
    judge = from_pretrained(args.judge) if args.judge else pipe.clip
    scales = (args.guidance or str(DEFAULT_GUIDANCE)).split(",")
    settings = [(int(s), float(g)) for s in args.steps.split(",") for g in scales]
    rows, diagnostics = [], []
    for name, spec in parse_sets(args.data).items():
        if args.reconstruction or args.sensitivity:
            diagnostics += [{"set": name, **row} for row in decoder_diagnostics(
                pipe, judge, spec, num_images=args.num_prompts, settings=settings,
                sensitivity=args.sensitivity, reconstruction=args.reconstruction)]
        if not args.no_text:
            rows += text_to_image_rows(pipe, judge, name, spec, settings, args)
    print(format_rows(rows) if rows else "")
    for row in diagnostics:
        print(f"{row['set']}: " + ", ".join(f"{k}={v:.4f}" for k, v in row.items() if isinstance(v, float)))
    if args.out:
        payload = {"model": args.model, "prior": "identity (the text embedding)" if args.no_prior else "the pipeline's",
                   "judge": args.judge or "the pipeline's CLIP", "task": "generation", "bf16": pipe.bf16,
                   "guidance_cutoff": pipe.guidance_cutoff,
                   "feature_space": "CLIP image embeddings of the judge (not Inception: FID is not available "
                                    "offline)", "results": rows, "decoder_diagnostics": diagnostics}
        Path(args.out).write_text(json.dumps(payload, indent=2))
    return 0


def text_to_image_rows(pipe, judge, name: str, spec: str, settings, args) -> list[dict]:
    """The text->image metrics (prior + decoder) for each (steps, guidance), with optional grids."""
    from multimodal.evaluation.generation import generation_metrics, pick_prompts
    from multimodal.generation.grid import captioned_grid

    prompts, real = pick_prompts(spec, args.num_prompts)
    rows = []
    for steps, guidance in settings:
        metrics, images = generation_metrics(pipe, judge, prompts, real, steps=steps, guidance_scale=guidance)
        rows.append({"set": name, **metrics})
        print(f"{name} steps={steps} guidance={guidance}: " + ", ".join(
            f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and k != "guidance_scale"),
            file=sys.stderr)
        if args.grid_dir:
            Path(args.grid_dir).mkdir(parents=True, exist_ok=True)
            captioned_grid(images[:32], prompts[:32], cols=8).save(
                Path(args.grid_dir) / f"{name}-steps{steps}-g{guidance}.png")
    return rows


def format_rows(rows: list[dict]) -> str:
    keys = ["clip_score", "clip_score_real", "retag_accuracy", "retag_accuracy_real", "frechet_clip_distance"]
    lines = [f"{'set':<14}{'steps':>6}{'guid.':>7}" + "".join(f"{k:>22}" for k in keys)]
    for r in rows:
        cells = "".join(f"{r[k]:>22.4f}" for k in keys)
        lines.append(f"{r['set']:<14}{r['steps']:>6}{r['guidance_scale']:>7.2f}{cells}")
    return "\n".join(lines)
