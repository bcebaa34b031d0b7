"""`multimodal export onnx`."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built


def register(sub) -> None:
    p = add_subcommand(sub, "export", "export the image and text encoders (ONNX)")
    p.add_argument("format", choices=["onnx"])
    p.add_argument("model", metavar="MODEL", help="'builtin', a saved model folder or an open_clip ARCH:TAG")
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(func=lambda args: not_built("`multimodal export onnx`"))
