"""`multimodal shards write|check|corpus`."""

from __future__ import annotations

import json
import os
import sys

from multimodal.cli import add_subcommand

# the registry's names, spelled out so that `--help` does not import the corpus builders; a test keeps them equal
CORPUS_NAMES = ["openclipart", "tuxpaint", "emoji", "fashion-mnist", "gcompris", "scratch", "twemoji", "openmoji",
                "emojione", "icons", "emojione-v1", "noto-v1", "fxemoji", "streamline-emojis",
                "emojione-monotone", "mdi-things"]

WRITE_HELP = """\
Write webdataset .tar shards from one of these sources:
  - a folder of images, each with a caption in a same-stem .txt file (first non-empty line,
    or the whole file with --whole-caption);
  - an ImageFolder: one subfolder per class, the caption made from the class name;
  - a CSV/TSV or JSONL file with an image path-or-URL column and a caption column.

Each sample holds the image, a .txt caption and a .json of metadata (source, original size, labels).
The folder also gets index.json (sample count per shard) and skipped.jsonl (what was skipped and why).
Shards are written under a temporary name and renamed when complete; run the same command again
after an interruption and it resumes where it stopped."""

CHECK_HELP = """\
Read every shard to the end and decode every sample. Reports sample counts per shard, and each
problem by shard and key: truncated tar, corrupt or truncated image, decompression bomb, missing
image or caption, bad JSON, duplicate key, count different from index.json.
Exit status: 0 when clean, 1 when any problem was found."""

CORPUS_HELP = """\
Build the offline corpora into shards, each with a fixed held-out split chosen by a stable hash of
the sample key (OUT/NAME/train and OUT/NAME/eval); an emoji has the same key, so the same split, in
every emoji corpus, and GCompris and Scratch split by caption, so a held-out concept is unseen
(Scratch's people by person). Sources (Debian packages, installed with apt-get, and npm packages,
fetched with `npm pack` into data/sources/npm/ on the first build; SVGs are drawn with
rsvg-convert, librsvg2-bin):
  openclipart    openclipart-png + openclipart-svg   caption: SVG title + keywords   (public domain)
  tuxpaint       tuxpaint-stamps-default             caption: the stamp's .txt       (GPL-2.0)
  emoji          fonts-noto-color-emoji + emoji (PyPI) caption: Unicode name         (OFL-1.1)
  fashion-mnist  dataset-fashion-mnist               ImageFolder of 10 classes       (MIT)
  gcompris       gcompris-qt-data                    caption: file name (photos too) (per sample; GPL-3+)
  scratch        scratch                             caption: file name (photos too) (CC-BY-SA-3.0)
  twemoji        emoji-datasource-twitter (npm)      caption: emoji name             (CC-BY-4.0)
  openmoji       openmoji (npm)                      caption: CLDR annotation        (CC-BY-SA-4.0)
  emojione       @iconify-json/emojione (npm)        caption: icon name              (CC-BY-4.0)
  icons          tango-icon-theme + oxygen-icon-theme  whitelisted icons of things   (public domain / LGPL-3+)
  emojione-v1    @iconify-json/emojione-v1 (npm)     caption: CLDR name or icon name (CC-BY-SA-4.0)
  noto-v1        @iconify-json/noto-v1 (npm)         caption: CLDR name or icon name (Apache-2.0)
  fxemoji        @iconify-json/fxemoji (npm)         caption: CLDR name              (Apache-2.0)
  streamline-emojis  @iconify-json/streamline-emojis (npm)  caption: CLDR or icon name  (CC-BY-4.0)
  emojione-monotone  @iconify-json/emojione-monotone (npm)  caption: CLDR or icon name  (CC-BY-4.0);
                 black glyphs, reserved for evaluation: no training recipe uses it
  mdi-things     @iconify-json/mdi (npm)             caption: icon name, things only  (Apache-2.0);
                 one-colour glyphs, filled and outline, of animals, food, tools, vehicles, places ...

IconPark's and Streamline Ultimate's icons and Symbola's emoji are reserved for evaluation too; they
are not corpora but ImageFolders, built by training/recipes/iconify_eval.py and symbola_eval.py."""


def register(sub) -> None:
    shards = add_subcommand(sub, "shards", "write, check and build webdataset shards")
    ssub = shards.add_subparsers(dest="shards_command", metavar="ACTION", required=True)

    w = add_subcommand(ssub, "write", "write shards from images + captions, an ImageFolder, CSV or JSONL", WRITE_HELP)
    w.add_argument("src", help="caption folder, ImageFolder, .csv/.tsv or .jsonl file")
    w.add_argument("--out", required=True, help="output folder")
    w.add_argument("--source-type", default="auto", choices=["auto", "captions", "imagefolder", "csv", "jsonl"],
                   help="layout of SRC (auto: detected from SRC)")
    w.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    w.add_argument("--max-side", type=int, default=None, help="downscale images whose longer side is larger")
    w.add_argument("--max-pixels", type=int, default=None, help="refuse images with more pixels (bomb guard; "
                   "89,478,485 if not given)")
    w.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel writer processes")
    w.add_argument("--whole-caption", action="store_true", help="use the whole .txt file, not its first line")
    w.add_argument("--caption-template", default="{}", help="ImageFolder caption, '{}' is the class name")
    w.add_argument("--image-col", help="CSV/JSONL column with the image path or URL (guessed if omitted)")
    w.add_argument("--caption-col", help="CSV/JSONL column with the caption (guessed if omitted)")
    w.add_argument("--label-col", help="CSV/JSONL column with a label, stored in the metadata")
    w.add_argument("--prefix", default="shard", help="shard file name prefix")
    w.add_argument("--overwrite", action="store_true", help="delete shards of an earlier, different run first")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=run_write)

    c = add_subcommand(ssub, "check", "decode every sample and report problems by shard and key", CHECK_HELP)
    c.add_argument("spec", metavar="DIR_OR_PATTERN", help="folder, glob or brace pattern of .tar shards")
    c.add_argument("--format", choices=["table", "json"], default="table", help="a table per shard, or one JSON report")
    c.add_argument("--max-pixels", type=int, default=None, help="pixel limit for the bomb check")
    c.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="shards checked in parallel")
    c.add_argument("--quiet", action="store_true", help="no progress bar")
    c.set_defaults(func=run_check)

    b = add_subcommand(ssub, "corpus", "build the offline corpora (clip-art, Tux Paint, emoji in eight styles, icons, "
                       "Fashion-MNIST)", CORPUS_HELP)
    b.add_argument("names", nargs="+", choices=[*CORPUS_NAMES, "all"],
                   help="which corpora to build (all: every one)")
    b.add_argument("--out", required=True, help="output folder; each corpus goes to OUT/NAME/{train,eval}")
    b.add_argument("--max-side", type=int, default=256, help="downscale images whose longer side is larger")
    b.add_argument("--shard-size", type=int, default=1000, help="samples per shard")
    b.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="parallel writer processes")
    b.add_argument("--overwrite", action="store_true", help="rebuild shards written by an earlier, different run")
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=run_corpus)


def _pixels(value: int | None) -> int:
    from multimodal.data.images import DEFAULT_MAX_PIXELS

    return DEFAULT_MAX_PIXELS if value is None else value


def print_write_report(report, stream=sys.stderr) -> None:
    print(f"wrote {report.num_samples} samples in {len(report.shards)} shard(s) to {report.out_dir}"
          + (f" ({report.resumed} shard(s) from an earlier run)" if report.resumed else ""), file=stream)
    counts = report.skip_counts()
    if counts:
        print(f"skipped {len(report.skipped)}: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items()))
              + f"; details in {report.out_dir / 'skipped.jsonl'}", file=stream)
        for s in report.skipped[:5]:
            print(f"  {s['key']}: {s['reason']}: {s['message']}", file=stream)


def run_write(args) -> int:
    from multimodal.data.sources import load_source
    from multimodal.data.writer import write_shards

    items = load_source(args.src, args.source_type, whole_caption=args.whole_caption,
                        caption_template=args.caption_template, image_col=args.image_col,
                        caption_col=args.caption_col, label_col=args.label_col)
    report = write_shards(items, args.out, shard_size=args.shard_size, max_side=args.max_side,
                          max_pixels=_pixels(args.max_pixels), workers=args.workers, prefix=args.prefix,
                          overwrite=args.overwrite, index_extra={"source": str(args.src)}, progress=not args.quiet)
    print_write_report(report)
    return 0


def run_check(args) -> int:
    from multimodal.data.check import check_shards, format_table

    report = check_shards(args.spec, max_pixels=_pixels(args.max_pixels), workers=args.workers,
                          progress=not args.quiet)
    if args.format == "json":
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(format_table(report))
    return 0 if report.ok else 1


def run_corpus(args) -> int:
    from multimodal.data.corpora import CORPORA, build_corpus

    names = list(CORPORA) if "all" in args.names else args.names
    for name in names:
        for split, report in build_corpus(name, args.out, max_side=args.max_side, shard_size=args.shard_size,
                                          workers=args.workers, progress=not args.quiet,
                                          overwrite=args.overwrite).items():
            print(f"[{name}/{split}]", end=" ", file=sys.stderr)
            print_write_report(report)
    return 0
