"""`multimodal eval zeroshot|retrieval|generation`."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from multimodal.cli import add_subcommand, not_built

EVAL_HELP = """\
  zeroshot    top-1/top-5 accuracy and per-class recall, each image classified among all labels of
              the set (shards with labels in their .json, or an ImageFolder)
  retrieval   image->text and text->image recall@1/5/10 on caption shards
  generation  CLIP-score, re-tag accuracy and a Frechet distance for generated images
The metrics are printed as a table and written as JSON with --out. The trainers use these same functions."""


def register(sub) -> None:
    p = add_subcommand(sub, "eval", "evaluate a model: zero-shot accuracy, retrieval recall, generation quality",
                       EVAL_HELP)
    p.add_argument("what", choices=["zeroshot", "retrieval", "generation"])
    p.add_argument("--model", default="builtin")
    p.add_argument("--data", action="append", metavar="[NAME=]SPEC",
                   help="shards (folder, glob or brace pattern) or an ImageFolder; repeat for several sets")
    p.add_argument("--template", action="append", dest="templates", help="zeroshot prompt template(s)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--bf16", action="store_true")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.set_defaults(func=run)


def parse_sets(specs: list[str] | None) -> dict[str, str]:
    if not specs:
        raise ValueError("give at least one --data set")
    sets = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        sets[name if sep else Path(spec).name or spec] = path if sep else spec
    return sets


def run(args) -> int:
    if args.what == "generation":
        not_built("`multimodal eval generation`")
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
