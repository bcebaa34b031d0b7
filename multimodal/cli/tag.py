"""`multimodal tag`: zero-shot tags for images."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built

TAG_HELP = """\
Tag images with the labels you give, zero-shot. Directories are walked recursively.
Output: a table, CSV, or one JSON object per image: {"image": PATH, "tags": [{"label": L, "score": S}, ...]}.
A file that cannot be read is reported on stderr and skipped; the exit status is 1 if any file failed."""


def register(sub) -> None:
    p = add_subcommand(sub, "tag", "zero-shot tag images against your labels", TAG_HELP)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated labels, e.g. 'cat,dog,car'")
    labels.add_argument("--labels-file", help="a text file with one label per line")
    p.add_argument("--model", default="builtin", help="'builtin', a saved model folder, or an open_clip ARCH:TAG")
    p.add_argument("--top-k", type=int, default=None, help="keep the K best labels per image")
    p.add_argument("--threshold", type=float, default=None, help="keep labels scoring at least this")
    p.add_argument("--format", choices=["table", "json", "csv"], default="table")
    p.set_defaults(func=lambda args: not_built("`multimodal tag`"))
