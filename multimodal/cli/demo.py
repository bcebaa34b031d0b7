"""`multimodal demo`: the Gradio web app."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built


def register(sub) -> None:
    p = add_subcommand(sub, "demo", "start the web demo (tag, generate, variations, search)")
    p.add_argument("--model", default="builtin")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=7860)
    p.set_defaults(func=lambda args: not_built("`multimodal demo`"))
