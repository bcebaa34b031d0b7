"""`multimodal eval zeroshot|retrieval|generation`."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built


def register(sub) -> None:
    p = add_subcommand(sub, "eval", "evaluate a model: zero-shot accuracy, retrieval recall, generation quality")
    p.add_argument("what", choices=["zeroshot", "retrieval", "generation"])
    p.add_argument("--model", default="builtin")
    p.add_argument("--data", help="shards (folder, glob or brace pattern) or an ImageFolder")
    p.add_argument("--out", help="write the metrics as JSON here")
    p.set_defaults(func=lambda args: not_built(f"`multimodal eval {args.what}`"))
