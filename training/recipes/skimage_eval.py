"""Write scikit-image's bundled photos into an ImageFolder for zero-shot evaluation (never for training or tuning).

    python training/recipes/skimage_eval.py                       # -> data/eval/skimage/<label>/<name>.png
    multimodal eval zeroshot --model builtin --data skimage=data/eval/skimage

The labels are published in assets/labels/skimage-photos.tsv (name<TAB>label<TAB>note): `name` is the
`skimage.data` function, `label` the plain word a person would say, which becomes the class folder. Every
image that ships inside the scikit-image wheel is either labelled there or skipped below with a reason, so a
scikit-image release that adds or drops a photo stops this script instead of silently changing the set.
Pixels are written unchanged (greyscale stays greyscale, no resizing, no alpha), as lossless PNG.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
LABELS = ROOT / "assets" / "labels" / "skimage-photos.tsv"

SKIPPED = {  # skimage.data names that are not bundled photos of a thing, and why
    "binary_blobs": "synthetic pattern",
    "checkerboard": "synthetic pattern",
    "colorwheel": "synthetic pattern",
    "shepp_logan_phantom": "synthetic pattern",
    "logo": "the scikit-image logo, a graphic",
    "chelsea": "the same image as skimage.data.cat",
    "lfw_subset": "200 crops of 25x25 px (faces and non-faces), a detector fixture",
    "brain": "3D volume; not in the wheel (needs pooch and a download)",
    "cells3d": "3D volume; not in the wheel (needs pooch and a download)",
    "kidney": "3D volume; not in the wheel (needs pooch and a download)",
    "eagle": "not in the wheel (needs pooch and a download)",
    "human_mitosis": "not in the wheel (needs pooch and a download)",
    "lily": "not in the wheel (needs pooch and a download)",
    "nickel_solidification": "not in the wheel (needs pooch and a download)",
    "palisades_of_vogt": "not in the wheel (needs pooch and a download)",
    "protein_transport": "not in the wheel (needs pooch and a download)",
    "skin": "not in the wheel (needs pooch and a download)",
    "vortex": "not in the wheel (needs pooch and a download)",
}
NOT_IMAGES = {"data_dir", "download_all", "file_hash", "lbp_frontal_face_cascade_filename"}


def read_labels(path: Path = LABELS) -> dict[str, str]:
    """name -> label from the published TSV."""
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f, dialect="excel-tab"))
    labels = {row["name"].strip(): row["label"].strip() for row in rows}
    bad = [name for name, label in labels.items() if not label or "/" in label or label.startswith(".")]
    if bad or len(labels) != len(rows):
        raise SystemExit(f"{path}: every row needs a unique name and a label usable as a folder name; check {bad}")
    return labels


def check_coverage(labels: dict[str, str]) -> None:
    import skimage.data

    names = set(skimage.data.__all__) - NOT_IMAGES
    unknown = sorted(names - set(labels) - set(SKIPPED))
    missing = sorted(set(labels) - names)
    if unknown or missing:
        raise SystemExit(f"scikit-image {skimage.__version__} differs from the published list: "
                         f"unlabelled new images {unknown}, labelled names it lacks {missing}")


def load(name: str) -> Image.Image:
    import skimage.data

    pixels = getattr(skimage.data, name)()
    if isinstance(pixels, tuple):  # a stereo pair (left, right, disparity): the left view
        pixels = pixels[0]
    if pixels.dtype == bool:
        pixels = pixels.astype(np.uint8) * 255
    if pixels.dtype != np.uint8 or pixels.ndim not in (2, 3):
        raise SystemExit(f"skimage.data.{name}: expected a uint8 image, got {pixels.dtype} {pixels.shape}")
    return Image.fromarray(pixels)


def write(out: Path, labels: dict[str, str]) -> list[Path]:
    planned = {out / label / f"{name}.png": name for name, label in labels.items()}
    stale = sorted(p for p in out.rglob("*") if p.is_file() and p not in planned) if out.is_dir() else []
    if stale:
        raise SystemExit(f"{out} holds files this set does not: {[str(p) for p in stale[:5]]}; "
                         "remove the folder and run again")
    for path, name in sorted(planned.items()):
        path.parent.mkdir(parents=True, exist_ok=True)
        load(name).save(path, optimize=True)
    return sorted(planned)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/eval/skimage"))
    parser.add_argument("--labels", type=Path, default=LABELS)
    args = parser.parse_args(argv)
    labels = read_labels(args.labels)
    check_coverage(labels)
    paths = write(args.out, labels)
    print(f"wrote {len(paths)} images in {len(set(labels.values()))} classes to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
