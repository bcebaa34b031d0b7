"""Write assets/examples: real photos bundled with scikit-image (CC0 / public domain) and public-domain
clip-art from the openclipart-png Debian package, each at most 384 px on its longer side."""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image

PHOTOS = {"cat": "chelsea", "coffee": "coffee", "astronaut": "astronaut", "rocket": "rocket", "coins": "coins"}
CLIPART = {  # public domain drawings from /usr/share/openclipart/png
    "clipart-apple": "food/fruit/apple_",
    "clipart-car": "transportation/",
    "clipart-tree": "plants/",
    "clipart-guitar": "recreation/music/",
}


def fit(image: Image.Image, side: int = 384) -> Image.Image:
    image = image.copy()
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return image


def main(out: Path) -> None:
    import skimage.data

    from multimodal.data.images import to_mode

    out.mkdir(parents=True, exist_ok=True)
    for name, loader in PHOTOS.items():
        pixels = getattr(skimage.data, loader)()
        fit(to_mode(Image.fromarray(pixels), "RGB")).save(out / f"{name}.jpg", quality=88)
    root = Path("/usr/share/openclipart/png")
    for name, prefix in CLIPART.items():
        word = name.split("-")[1]
        candidates = sorted(p for p in root.glob(prefix + "*.png") if word in p.name.lower())
        if not candidates:
            candidates = sorted(p for p in root.rglob(f"*{word}*.png"))
        if not candidates:
            print(f"no clip-art for {word}; install openclipart-png", file=sys.stderr)
            continue
        fit(to_mode(Image.open(candidates[0]), "RGB")).save(out / f"{name}.png", optimize=True)
        print(f"{name}: {candidates[0]}", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "assets/examples"))
