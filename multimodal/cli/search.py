"""`multimodal index` and `multimodal search`: text-to-image search over a folder."""

from __future__ import annotations

import json
import sys

from multimodal.cli import add_subcommand, positive_int

INDEX_HELP = """\
Embed every image under DIR (recursively) with the CLIP image tower and store the embeddings as a
plain .npy matrix beside a manifest.json of the files. `multimodal search` is then one exact matrix
product per query (about 40 ms for a million images on 2 CPU cores): fine up to about a million
images; past that, load the same .npy into an approximate index such as faiss."""

SEARCH_HELP = """\
The images of an index that best match a text query, best first, with their cosine similarity:
  multimodal search INDEX "a red apple" --top-k 5"""


def register(sub) -> None:
    p = add_subcommand(sub, "index", "embed a folder of images for text search", INDEX_HELP)
    p.add_argument("directory", metavar="DIR", help="folder of images, walked recursively")
    p.add_argument("--out", required=True, metavar="INDEX", help="output folder for embeddings.npy + manifest.json")
    p.add_argument("--model", default="builtin", help="'builtin', a saved model folder, or an open_clip ARCH:TAG")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.set_defaults(func=run_index)

    s = add_subcommand(sub, "search", "find the images of an index that best match a text query", SEARCH_HELP)
    s.add_argument("index", metavar="INDEX", help="index folder written by `multimodal index`")
    s.add_argument("query", metavar="TEXT", help="what to look for, e.g. 'a red apple'")
    s.add_argument("--top-k", type=positive_int, default=5, help="how many images to return")
    s.add_argument("--model", default=None, help="defaults to the model the index was built with")
    s.add_argument("--format", choices=["table", "json"], default="table", help="table, or one JSON object per hit")
    s.set_defaults(func=run_search)


def run_index(args) -> int:
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.index import build_index

    tagger = ZeroShotTagger.from_pretrained(args.model, batch_size=args.batch_size)
    manifest = build_index(tagger, args.directory, args.out, model_name=args.model, progress=sys.stderr.isatty())
    print(f"indexed {len(manifest['files'])} images into {args.out}", file=sys.stderr)
    for skipped in manifest["skipped"]:
        print(f"multimodal index: skipped {skipped['message']}", file=sys.stderr)
    return 1 if manifest["skipped"] else 0


def run_search(args) -> int:
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.index import load_index, search

    _, manifest = load_index(args.index)
    tagger = ZeroShotTagger.from_pretrained(args.model or manifest["model"])
    hits = search(tagger, args.index, args.query, args.top_k)
    if args.format == "json":
        print(json.dumps([{"image": path, "score": round(score, 6)} for path, score in hits]))
    else:
        for path, score in hits:
            print(f"{score:.3f}  {path}")
    return 0
