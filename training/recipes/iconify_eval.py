"""Render the icons of things of an Iconify icon package into an ImageFolder for zero-shot evaluation (never for
training or tuning): a drawing style that no training corpus has, to judge a CLIP candidate no one has measured on it.

    python training/recipes/iconify_eval.py icon-park                 # -> data/eval/icon-park/<label>/<icon>.png
    multimodal eval zeroshot --model builtin --data icon-park=data/eval/icon-park

Each set names its npm package, pinned version, licence and the categories (the package's metadata.json) that hold
things rather than interface glyphs, chosen from the category names before any icon was drawn or measured. The label,
which becomes the class folder, is the icon name with a trailing variant number or word ('-2', '-one' ... '-ten')
dropped and dashes as spaces: `bottle-one` and `bottle-two` are two images of "bottle". Icons are rendered with
rsvg-convert (apt-get install librsvg2-bin) at the corpora's render size; the package is fetched once with `npm pack`
into data/sources/npm.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from multimodal.data.corpora.iconify import icon_svg, icons_in, is_interface_glyph
from multimodal.data.corpora.npm import NPM_CACHE, npm_package
from multimodal.data.corpora.svg import render_svg
from multimodal.errors import MissingError, UsageError
from multimodal_train.eval_folders import new_folder

VARIANT_WORD = re.compile(r"-(\d+|one|two|three|four|five|six|seven|eight|nine|ten)$")


@dataclass(frozen=True)
class EvalSet:
    package: str
    version: str
    license: str
    categories: tuple[str, ...]
    skip_words: frozenset[str] = frozenset()  # a name with one of these words is an interface glyph: left out


SETS = {
    "icon-park": EvalSet("@iconify-json/icon-park", "1.2.4", "Apache-2.0 (IconPark by ByteDance)",
                         ("Animals", "Foods", "Clothes", "Sports", "Travel", "Weather", "Baby", "Makeups", "Build",
                          "Life", "Energy", "Industry", "Measurement")),
    "streamline-ultimate-color": EvalSet(
        "@iconify-json/streamline-ultimate-color", "1.2.2", "CC-BY-4.0 (Streamline Ultimate Colors by Streamline)",
        ("FoodDrinks", "Transportation", "Sports", "Science", "Weather", "EntertainmentEventsHobbies", "MusicAudio",
         "HealthBeauty", "ShippingDelivery", "ComputersDevicesElectronics", "PhonesMobileDevices", "VideoMoviesTv",
         "ImagesPhotography"),
        frozenset("off add remove search sync warning download upload check clock bold".split())),
}


def label_of(icon_name: str) -> str:
    return VARIANT_WORD.sub("", icon_name).replace("-", " ")


def chosen_icons(root: Path, spec: EvalSet) -> dict[str, str]:
    """{icon name: label} of the icons in any of the set's categories, interface glyphs left out."""
    return {name: label_of(name) for name in sorted(icons_in(root, spec.categories))
            if not is_interface_glyph(name, spec.skip_words)}


def write(out: Path, root: Path, icons: dict[str, str]) -> dict[str, str]:
    """Render every icon (hidden ones and repeated drawings left out) into a temporary folder beside `out`, then
    rename it to `out`: a run that dies leaves no half-written set (at most a `.NAME.*.tmp` folder)."""
    icon_set = json.loads((root / "icons.json").read_text(encoding="utf-8"))
    absent = sorted(set(icons) - set(icon_set["icons"]))
    if absent:
        raise SystemExit(f"{root}/icons.json lacks {len(absent)} categorised icons, e.g. {absent[0]}")
    svgs = {name: icon_svg(icon_set["icons"][name], icon_set) for name in icons
            if not icon_set["icons"][name].get("hidden")}
    first: dict[bytes, str] = {}  # one drawing filed under two names is kept once, under the first
    for name, svg in svgs.items():
        first.setdefault(svg, name)
    icons = {name: icons[name] for name in first.values()}
    with new_folder(out) as tmp:
        for name, label in icons.items():
            path = tmp / label / f"{name}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(render_svg(svgs[name]))
    return icons


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("set", choices=sorted(SETS), help="which evaluation set to build")
    parser.add_argument("--out", type=Path, help="folder to create (default: data/eval/SET)")
    parser.add_argument("--cache", type=Path, default=NPM_CACHE, help="where npm packages are unpacked")
    args = parser.parse_args(argv)
    spec = SETS[args.set]
    root = npm_package(spec.package, spec.version, args.cache)
    out = args.out or Path("data/eval") / args.set
    try:
        written = write(out, root, chosen_icons(root, spec))
    except (MissingError, UsageError) as e:
        raise SystemExit(str(e)) from None
    print(f"wrote {len(written)} icons in {len(set(written.values()))} classes to {out} ({spec.license})",
          file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
