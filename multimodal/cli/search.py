"""`multimodal index` and `multimodal search`: text-to-image search over a folder."""

from __future__ import annotations

from multimodal.cli import add_subcommand, not_built

INDEX_HELP = """\
Embed every image under DIR with the CLIP image tower and store the embeddings as a plain .npy
matrix beside a manifest of paths. The search is an exact matrix product, which stays fast up to
about a million images; past that, use an approximate index (faiss) on the same .npy."""


def register(sub) -> None:
    p = add_subcommand(sub, "index", "embed a folder of images for text search", INDEX_HELP)
    p.add_argument("directory", metavar="DIR")
    p.add_argument("--out", required=True, metavar="INDEX", help="output folder for embeddings.npy + manifest")
    p.add_argument("--model", default="builtin")
    p.set_defaults(func=lambda args: not_built("`multimodal index`"))

    s = add_subcommand(sub, "search", "find the images of an index that best match a text query")
    s.add_argument("index", metavar="INDEX")
    s.add_argument("query", metavar="TEXT")
    s.add_argument("--top-k", type=int, default=5)
    s.set_defaults(func=lambda args: not_built("`multimodal search`"))
