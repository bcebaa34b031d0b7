"""Copy 50 real photos from four Debian packages into an ImageFolder for zero-shot evaluation (never for training
or tuning): a second photo set beside scikit-image's, that no CLIP candidate before 2026-12-07 was measured on.

    apt-get install tuxpaint-data palapeli-data mate-backgrounds opencv-doc
    python training/recipes/debian_photos_eval.py               # -> data/eval/debian-photos/<label>/<file>
    multimodal eval zeroshot --model builtin --data debian-photos=data/eval/debian-photos

The labels are published in assets/labels/debian-photos.tsv (package<TAB>path<TAB>label<TAB>note): `label` is the
plain word a person would say, which becomes the class folder (42 classes; the 1-of-N choice is among them). The
photos are Tux Paint's starter templates, Palapeli's puzzle pictures, MATE's nature wallpapers and OpenCV's sample
images, chosen because each shows one nameable thing; their licences are in each package's copyright file. Files
are copied byte for byte, named PACKAGE-FOLDER-FILE so that their names (the evaluation's keys) stay unique:
OpenCV has two butterflies and two homes.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from multimodal_train.eval_folders import new_folder

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "assets" / "labels" / "debian-photos.tsv"


def read_rows(path: Path = LABELS) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, dialect="excel-tab"))
    bad = [row for row in rows if None in row or None in row.values()]  # a row with too many or too few fields
    rows = [{k: v.strip() for k, v in row.items()} for row in rows if row not in bad]
    bad += [row for row in rows if row["label"] in ("", ".", "..") or "/" in row["label"]
            or not row["path"].startswith("/")]
    if bad or len({str(target(Path(), row)) for row in rows}) != len(rows):
        raise SystemExit(f"{path}: every row needs package, path, label and note, a unique absolute path and a label "
                         f"usable as a folder name; check {bad or 'the repeated paths'}")
    return rows


def target(out: Path, row: dict[str, str]) -> Path:
    source = Path(row["path"])
    return out / row["label"] / f"{row['package']}-{source.parent.name}-{source.name}"


def write(out: Path, rows: list[dict[str, str]]) -> list[Path]:
    """Copy every photo into a temporary folder beside `out`, then rename it to `out`: a run that dies leaves no
    half-written set (at most a `.NAME.*.tmp` folder)."""
    missing = [row for row in rows if not Path(row["path"]).is_file()]
    if missing:
        packages = " ".join(sorted({row["package"] for row in missing}))
        raise SystemExit(f"{len(missing)} photos missing, e.g. {missing[0]['path']}; install them with: apt-get "
                         f"install {packages}")
    with new_folder(out) as tmp:
        for row in rows:
            path = target(tmp, row)
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(row["path"], path)
    return sorted(target(out, row) for row in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval/debian-photos"), help="folder to create")
    parser.add_argument("--labels", type=Path, default=LABELS, help="the published label table")
    args = parser.parse_args(argv)
    rows = read_rows(args.labels)
    paths = write(args.out, rows)
    print(f"wrote {len(paths)} photos in {len({r['label'] for r in rows})} classes to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
