"""`multimodal tag`: zero-shot tags for images."""

from __future__ import annotations

import csv
import json
import sys

from multimodal.cli import add_subcommand, positive_int, unit_interval
from multimodal.errors import UsageError

TAG_HELP = """\
Tag images with the labels you give, zero-shot. Folders are walked recursively.
  multimodal tag photos/ cat.jpg --labels "cat,dog,car" --top-k 2
  multimodal tag photos/ --labels-file labels.txt --format json > tags.jsonl
Output: a table, CSV (image,label,score), or one JSON object per image:
  {"image": PATH, "tags": [{"label": L, "score": S}, ...]}
Single-label mode (default) scores with a softmax over the labels; --multi-label scores each label on
its own with the thresholds calibrated in the model folder (tagger.json).
Few-shot: --examples DIR (one subfolder per label, named by the label, with a few images of it) blends
the examples' image embeddings into the scores (Tip-Adapter); labels without examples keep their zero-shot
scores. Every example folder must name a label of --labels/--labels-file.
  multimodal tag photos/ --labels-file labels.txt --examples my_examples/
Webdataset shards (a .tar, a folder of them, a brace pattern) are read directly; under torchrun each process
takes its own shards and the first writes one table (see `multimodal index --help`); images are named SHARD#KEY:
  torchrun --nproc_per_node 2 -m multimodal tag 'shards/{000000..000099}.tar' --labels-file labels.txt \
      --format parquet --out tags.parquet
A file that cannot be read (an image or an example) is reported on stderr and skipped; the exit status is 1
if any file failed."""


def register(sub) -> None:
    p = add_subcommand(sub, "tag", "zero-shot tag images against your labels", TAG_HELP)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and folders (walked recursively), "
                   "or one webdataset shard spec")
    labels = p.add_mutually_exclusive_group(required=True)
    labels.add_argument("--labels", help="comma-separated labels, e.g. 'cat,dog,car'")
    labels.add_argument("--labels-file", help="a text file with one label per line")
    p.add_argument("--model", default="builtin", help="'builtin', a saved model folder, or an open_clip ARCH:TAG")
    p.add_argument("--top-k", type=positive_int, default=None, help="keep the K best labels per image (K >= 1; "
                   "default: all)")
    p.add_argument("--threshold", type=unit_interval, default=None, help="keep labels scoring at least this, from 0 "
                   "to 1 (default: none in single-label mode, 0.5 in multi-label mode)")
    p.add_argument("--multi-label", action="store_true", help="score each label on its own (calibrated sigmoid)")
    p.add_argument("--template", action="append", dest="templates", metavar="TEMPLATE",
                   help="prompt template such as 'a photo of a {}' (repeat for an ensemble; default: built-in set)")
    p.add_argument("--format", choices=["table", "json", "jsonl", "csv", "parquet"], default="table",
                   help="table: one line per image; json (= jsonl): one object per image per line; csv and parquet: "
                   "image,label,score rows (parquet needs pyarrow and --out)")
    p.add_argument("--out", metavar="FILE", default=None, help="write the results here (whole, or not at all) instead "
                   "of to stdout")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="run the image tower with "
                   "torch or onnxruntime")
    p.add_argument("--cache-dir", default=None, help="keep label embeddings on disk here across runs (default: "
                   "$XDG_CACHE_HOME/multimodal/labels, i.e. ~/.cache/multimodal/labels)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the on-disk label cache")
    p.add_argument("--examples", metavar="DIR", default=None, help="few-shot examples: a folder with one subfolder "
                   "per label (named by the label) holding a few images of it; labels without one stay zero-shot")
    p.set_defaults(func=run)


def read_labels(args) -> list[str]:
    if args.labels is not None:
        return [label.strip() for label in args.labels.split(",") if label.strip()]
    from multimodal.tagging.labels import read_labels_file

    return read_labels_file(args.labels_file)


def make_tagger(args):
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.labels import default_cache_dir

    cache_dir = None if args.no_cache else (args.cache_dir or default_cache_dir())
    kwargs = {"batch_size": args.batch_size, "bf16": args.bf16, "backend": args.backend, "cache_dir": cache_dir}
    if args.templates:
        kwargs["templates"] = args.templates
    return ZeroShotTagger.from_pretrained(args.model, **kwargs)


def run(args) -> int:
    from multimodal.data.sources import is_shard_spec
    from multimodal.tagging.inputs import expand_paths

    labels = read_labels(args)
    if args.format == "parquet" and not args.out:
        raise UsageError("--format parquet writes a file: give --out FILE")
    shards = len(args.inputs) == 1 and is_shard_spec(args.inputs[0])
    files = [] if shards else expand_paths(args.inputs)
    if not shards and not files:
        raise UsageError("no images found in " + ", ".join(args.inputs))
    tagger = make_tagger(args)
    skipped = add_examples(tagger, args.examples, labels) if args.examples else 0
    if shards:
        found = tag_shards(tagger, args.inputs[0], args.out)
        if found is None:
            return 0  # a torchrun rank other than the first: its part is merged there
        feats, names, errors = found
    else:
        feats, indices, failed = tagger.encode_images(files, on_error="skip", progress=sys.stderr.isatty())
        names, errors = [str(files[i]) for i in indices], [str(error) for _, error in failed]
    for error in errors:
        print(f"multimodal tag: skipped {error}", file=sys.stderr)
    mode = "multi" if args.multi_label else "single"
    threshold = 0.5 if args.threshold is None and args.multi_label else args.threshold
    results = tagger.format(tagger.scores(feats, labels, mode), labels, args.top_k, threshold) if names else []
    output(names, results, args.format, args.out)
    return 1 if errors or skipped else 0


def tag_shards(tagger, spec: str, out: str | None):
    """(features, SHARD#KEY names, skip messages) on the first process; None on the other torchrun ranks."""
    import os

    import torch

    from multimodal.tagging.shards import embed_shards_distributed

    merged = embed_shards_distributed(tagger, spec, out or "multimodal-tag", progress=sys.stderr.isatty())
    if merged is None:
        return None
    names = [os.path.join(merged.root, i) if merged.root != "." else i for i in merged.ids]
    return torch.from_numpy(merged.vectors), names, [s["message"] for s in merged.skipped]


def output(paths: list[str], results: list, fmt: str, out: str | None) -> None:
    """To stdout, or to `out` through a temporary file renamed when complete (a failed run leaves no half table)."""
    if out is None:
        write_results(paths, results, fmt)
        return
    import os
    from pathlib import Path

    target = Path(out)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if fmt == "parquet":
            write_parquet(paths, results, tmp)
        else:
            with open(tmp, "w", newline="") as f:
                write_results(paths, results, fmt, out=f)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {len(paths)} images' tags to {target}", file=sys.stderr)


def write_parquet(paths: list[str], results: list, path) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        from multimodal.errors import MissingError

        raise MissingError("--format parquet needs pyarrow: pip install pyarrow") from None
    rows = [(p, label, score) for p, tags in zip(paths, results) for label, score in tags]
    table = pa.table({"image": [r[0] for r in rows], "label": [r[1] for r in rows],
                      "score": pa.array([r[2] for r in rows], type=pa.float32())})
    pq.write_table(table, path)


def add_examples(tagger, folder: str, labels: list[str]) -> int:
    """Add the examples folder to the tagger; reports skipped files on stderr and returns their count."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reported below, file by file
        report = tagger.add_examples(folder, labels=labels, progress=sys.stderr.isatty())
    for _, message in report.skipped:
        print(f"multimodal tag: skipped example {message}", file=sys.stderr)
    return len(report.skipped)


def write_results(paths: list[str], results: list, fmt: str, out=sys.stdout) -> None:
    if fmt in ("json", "jsonl"):
        for path, tags in zip(paths, results):
            out.write(json.dumps({"image": path, "tags": [{"label": lab, "score": round(s, 6)} for lab, s in tags]})
                      + "\n")
    elif fmt == "csv":
        writer = csv.writer(out)
        writer.writerow(["image", "label", "score"])
        for path, tags in zip(paths, results):
            for label, score in tags:
                writer.writerow([path, label, f"{score:.6f}"])
    else:
        width = max([len(p) for p in paths] + [5])
        for path, tags in zip(paths, results):
            shown = "  ".join(f"{label} {score:.3f}" for label, score in tags) or "(no label above the threshold)"
            out.write(f"{path:<{width}}  {shown}\n")
