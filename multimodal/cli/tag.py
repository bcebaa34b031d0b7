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
A file that cannot be read (an image or an example) is reported on stderr and skipped; the exit status is 1
if any file failed."""


def register(sub) -> None:
    p = add_subcommand(sub, "tag", "zero-shot tag images against your labels", TAG_HELP)
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR", help="image files and folders (walked recursively)")
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
    p.add_argument("--format", choices=["table", "json", "csv"], default="table",
                   help="table: one line per image; json: one object per image per line; csv: image,label,score rows")
    p.add_argument("--batch-size", type=positive_int, default=32, help="images per forward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 autocast (faster on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--backend", choices=["torch", "onnx"], default="torch", help="run the image tower with "
                   "torch or onnxruntime")
    p.add_argument("--cache-dir", default=None, help="keep label embeddings on disk here across runs")
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

    kwargs = {"batch_size": args.batch_size, "bf16": args.bf16, "backend": args.backend, "cache_dir": args.cache_dir}
    if args.templates:
        kwargs["templates"] = args.templates
    return ZeroShotTagger.from_pretrained(args.model, **kwargs)


def run(args) -> int:
    from multimodal.tagging.inputs import expand_paths

    labels = read_labels(args)
    files = expand_paths(args.inputs)
    if not files:
        raise UsageError("no images found in " + ", ".join(args.inputs))
    tagger = make_tagger(args)
    skipped = add_examples(tagger, args.examples, labels) if args.examples else 0
    mode = "multi" if args.multi_label else "single"
    feats, indices, errors = tagger.encode_images(files, on_error="skip", progress=sys.stderr.isatty())
    for _, error in errors:
        print(f"multimodal tag: skipped {error}", file=sys.stderr)
    threshold = 0.5 if args.threshold is None and args.multi_label else args.threshold
    results = tagger.format(tagger.scores(feats, labels, mode), labels, args.top_k, threshold) if indices else []
    write_results([str(files[i]) for i in indices], results, args.format)
    return 1 if errors or skipped else 0


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
    if fmt == "json":
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
