"""GCompris's pictures of things: real photos (animals, tools, household objects, monuments, windmills) and drawings
(vocabulary words, toys, instruments, farm animals), captioned from their file names.

The pictures sit inside Qt resource archives (`multimodal.data.corpora.rcc`). Only the folders listed below are used,
each checked by eye; board backgrounds, maps, letters and sprites are left out. A folder's README gives each photo's
author, source and license (mostly public domain, CC0 and CC-BY-SA); a photo without a credit there is left out,
and a drawing without one is GCompris's own, GPL-3.0-or-later. All pictures of one caption share a split, so a
held-out concept is unseen.
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

from multimodal.data.corpora import DRAWING, PHOTO, require
from multimodal.data.corpora.rcc import index, read_resource
from multimodal.data.corpora.svg import RENDER_SIZE, render_svg, require_rsvg
from multimodal.data.sources import SourceItem, humanize, make_key

NAME = "gcompris"
PACKAGE_LICENSE = "GPL-3.0-or-later (GCompris, KDE; Debian package gcompris-qt-data)"
LICENSE = "per sample: the credit in the picture's folder README, else " + PACKAGE_LICENSE
SOURCE = "apt-get install gcompris-qt-data librsvg2-bin"
ROOT = Path("/usr/share/gcompris-qt/rcc")
ACTIVITIES = "/gcompris/src/activities/"
FOLDERS = (  # (archive, folder under ACTIVITIES); .webp are photos except in DRAWN, .svg are drawings
    ("lang", "lang/resource/words_sample"),
    ("babymatch", "babymatch/resource/images"),
    ("instruments", "instruments/resource"),
    ("explore_farm_animals", "explore_farm_animals/resource/animals"),
    ("explore_world_animals", "explore_world_animals/resource/animals"),
    ("erase", "erase/resource"),
    ("explore_monuments", "explore_monuments/resource"),
    *(("categorization", f"categorization/resource/images/{name}")
      for name in ("tools", "fishes", "others", "monuments", "renewable")),
)
DRAWN = {"lang/resource/words_sample"}
SKIP = {"background", "babymatch", "egypt", "error", "explore_farm_animals", "explore_monuments",
        "explore_world_animals", "farm-animals", "france", "germany", "glass", "india", "key", "leMusee", "monument",
        "question", "transparent_square", "transparent_square_green", "transparent_square_yellow", "usa", "world-map"}
CAPTIONS = {  # "archive/stem", stem, or stem without its number -> caption, where the split file name does not say it
    "ajantaCave": "ajanta caves", "animal": "animals", "blackslate": "blackboard", "buffetset": "cup and saucer",
    "bulb": "light bulb", "burj": "burj khalifa", "cabrillo": "cabrillo national monument", "camels": "camel",
    "canyondeChelly": "canyon de chelly", "castillodeSanMarcos": "castillo de san marcos", "chamaeleon": "chameleon",
    "chateaudeChambord": "chateau de chambord", "chateaudeChenonceau": "chateau de chenonceau",
    "citedeCarcassonne": "cite de carcassonne", "color": "colors", "eggpot": "egg cup",
    "empireState": "empire state building", "erasers": "eraser", "explore_world_animals/dragon": "komodo dragon",
    "fishingboat": "fishing boat", "flies": "fly", "flowerpot": "vase", "flute_traversiere": "flute",
    "flying_fox": "flying fox bat", "football": "soccer ball", "fusee": "rocket",
    "gatewayofIndia": "gateway of india", "geothermal": "geothermal power station",
    "greatPyramid": "great pyramid of giza", "greatWall": "great wall of china",
    "greatWallofChina": "great wall of china", "knife": "knife, fork and spoon", "kutubMinar": "qutub minar",
    "light": "light bulb", "long_nosed_monkey": "proboscis monkey", "minivan": "van",
    "montStMichel": "mont saint michel", "nailCutter": "nail clipper", "navajo": "navajo national monument",
    "operaHouse": "sydney opera house", "palaisdesPapes": "palais des papes", "pan": "frying pan", "plier": "pliers",
    "pontduGard": "pont du gard", "postpoint": "mailbox", "rape": "grater", "raquette": "tennis racket",
    "sailingboat": "sailing boat", "screwDriver": "screwdriver", "solar": "solar panel", "solar1": "solar cooker",
    "solar2": "solar cooker", "solar3": "solar cooker", "sound": "loudspeaker", "spray": "spray bottle",
    "statueofLiberty": "statue of liberty", "tuxhelico": "helicopter", "tuxplane": "airplane", "tweezer": "tweezers",
    "usCapitol": "united states capitol", "weighingMachine": "weighing scale", "windflag": "red flag",
    "windmill6": "wind turbine", "zimniPalace": "winter palace",
}

README_TYPOS = {"germany/audaPalatina.webp": "germany/aulaPalatina.webp", "screDriver.webp": "screwDriver.webp"}
LICENSE_SPELLINGS = {"cc-by-sa 4.0": "CC-BY-SA-4.0", "public domain": "Public domain", "gplv3": "GPL-3.0",
                     "gplv2+": "GPL-2.0-or-later"}


def without_number(stem: str) -> str:
    return re.sub(r"\d+$", "", stem)


def caption_of(stem: str, archive: str = "") -> str:
    """'measuringTape3' -> 'measuring tape'; CAPTIONS first (by archive/stem, stem, then stem without its number)."""
    base = without_number(stem)
    for name in (f"{archive}/{stem}", stem, base):
        if name in CAPTIONS:
            return CAPTIONS[name]
    return humanize(re.sub(r"(?<=[a-z])(?=[A-Z])", " ", base)).lower()


def parse_credits(text: str) -> dict[str, dict[str, str]]:
    """A GCompris README (blocks of 'Copyright:', 'Source:', 'License:' and 'Files:' lines, in any order; the file
    names follow 'Files:', one per line) -> {file path relative to the README: {"copyright", "source", "license"}}."""
    credits = {}
    for block in re.split(r"\n\s*\n", text):
        fields, files, in_files = {}, [], False
        for line in block.splitlines():
            field, sep, value = line.partition(":")
            field = field.strip().lower()
            if sep and field in ("copyright", "source", "license", "comments", "files"):
                in_files = field == "files"
                files += value.split() if in_files else []
                fields[field] = value.strip()
            elif in_files:
                files += line.split()
        credits.update({README_TYPOS.get(name, name): fields for name in files})
    return credits


def credit_license(credit: dict[str, str] | None) -> str:
    if not credit or not credit.get("license"):
        return PACKAGE_LICENSE
    by = "; ".join(credit[k] for k in ("copyright", "source") if credit.get(k))
    name = LICENSE_SPELLINGS.get(credit["license"].lower(), credit["license"])
    return f"{name} ({by}; via GCompris, Debian package gcompris-qt-data)"


def folder_items(archive: Path, folder: str, size: int) -> list[SourceItem]:
    files = index(archive)
    prefix = ACTIVITIES + folder + "/"
    readme = prefix + "README"
    credits = parse_credits(read_resource(archive, readme).decode("utf-8", "replace")) if readme in files else {}
    out, uncredited = [], []
    for name in sorted(files):
        rel = name[len(prefix):] if name.startswith(prefix) else ""
        stem, _, suffix = rel.rpartition("/")[2].rpartition(".")
        if suffix not in ("webp", "svg") or stem in SKIP or without_number(stem) in SKIP:
            continue
        drawn = suffix == "svg" or folder in DRAWN
        if not drawn and rel not in credits:  # GCompris's own art is GPL; a photo is someone else's
            uncredited.append(rel)
            continue
        caption = caption_of(stem, archive.stem)
        image = (functools.partial(_render, str(archive), name, size) if suffix == "svg"
                 else functools.partial(read_resource, str(archive), name))
        meta = {"source": f"{archive.name}:{name}", "kind": DRAWING if drawn else PHOTO, "activity": archive.stem,
                "license": credit_license(credits.get(rel)), "split_key": make_key(caption)}
        key = make_key(f"{archive.stem}_{folder.rsplit('/', 1)[-1]}_{rel.rpartition('.')[0]}_{suffix}")
        out.append(SourceItem(key, caption, image, [caption], meta))
    if uncredited:
        warnings.warn(f"{archive.name}: left out {len(uncredited)} photo(s) that the folder's README does not credit: "
                      f"{uncredited}", stacklevel=2)
    return out


def _render(archive: str, name: str, size: int) -> bytes:
    return render_svg(read_resource(archive, name), size)


def items(root: Path = ROOT, size: int = RENDER_SIZE) -> list[SourceItem]:
    require_rsvg()
    require(root, "GCompris's resource archives", SOURCE)
    archives = {name: require(root / f"{name}.rcc", f"GCompris's {name}.rcc", SOURCE) for name, _ in FOLDERS}
    return [item for name, folder in FOLDERS for item in folder_items(archives[name], folder, size)]
