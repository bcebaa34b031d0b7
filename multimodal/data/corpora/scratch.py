"""Scratch 1.4's media library: full-frame photos of places (beaches, canyons, kitchens, city skylines, sports fields)
and cut-outs of things, vehicles, animals and people, photos and drawings, captioned from their file names.

Every file under Media/ is CC-BY-SA-3.0 (Debian's copyright file for the package). Only the folders below are used,
each checked by eye; Letters, Fantasy and interface pictures are left out. People photographed for Scratch are named
by first name (`anjuli-3`, `cassy-sitting-1`): their caption is what they do, not who they are. All pictures of one
caption share a split, so a held-out concept is unseen, except in People, where generic captions ("girl", "man
dancing") span many people: there all pictures of one person or drawn figure share a split, so a held-out person
is unseen.
"""

from __future__ import annotations

import re
from pathlib import Path

from multimodal.data.corpora import DRAWING, PHOTO, drop_duplicate_files, require
from multimodal.data.images import is_image_path
from multimodal.data.sources import SourceItem, humanize, make_key

NAME = "scratch"
LICENSE = "CC-BY-SA-3.0 (Scratch 1.4 media, Massachusetts Institute of Technology; Debian package scratch)"
SOURCE = "apt-get install scratch"
ROOT = Path("/usr/share/scratch/Media")
FOLDERS = ("Backgrounds/Indoors", "Backgrounds/Nature", "Backgrounds/Outdoors", "Backgrounds/Sports",
           "Costumes/Animals", "Costumes/Things", "Costumes/Transportation", "Costumes/People")
SKIP = {"button", "buttonPressed", "shark1-c", "roundman", "royalperson", "squaregirl", "squareguy"}
CAPTIONS = {  # base name (`base_name`) -> caption, where the file name does not say it
    "all-sports-mural": "sports mural", "atom-playground": "playground", "beach-malibu": "beach",
    "beachball": "beach ball", "bench-with-view": "bench with a view", "berkeley-mural": "mural",
    "bird-flying": "flying bird", "boy-standing": "boy", "boycurly": "boy", "boyshorts": "boy",
    "building-at-mit": "building", "building-fireproof": "brick building", "car-blue": "car", "car-bug": "beetle car",
    "car-cow": "car with cow spots", "cheesy-puffs": "cheese puffs", "city-with-water": "city by the water",
    "cub": "lion cub", "football-run": "football player running", "football-stand": "football player",
    "garden-rock": "rock in a garden", "girl-basketball": "girl playing basketball", "girl-standing": "girl",
    "hair": "wig", "hall": "hallway", "hallway_outdoors": "arcade", "insect": "ant", "lee-fan": "fan dancer",
    "lego": "lego brick", "magiccarpet": "magic carpet", "mic": "microphone", "mural-faro": "mural",
    "night-city": "city at night", "night-city-with-street": "city at night", "palmtree": "palm tree",
    "parking-ramp": "parking garage", "partyhat": "party hat", "route": "road", "sail-boat": "sailing boat",
    "soccer": "soccer ball", "spotlight-stage": "stage", "street-cleaner-mit": "ice resurfacer",
    "sunglassF": "sunglasses", "tennis-backboard": "tennis court", "tennisball": "tennis ball",
    "the-movies": "movie theater", "the-movies-inside": "movie theater", "tug-boat": "tugboat",
    "water-and-rocks": "stream", "wizardhat": "wizard hat", "womanbun": "woman", "womanwaving": "woman waving",
    "woods-and-bench": "bench in the woods",
}
PEOPLE = {  # first names of the photographed people -> what every picture of them shows, before the pose
    "amon": "person dancing", "anjuli": "girl dancing", "anna": "girl dancing", "calvrett": "boy", "cassy": "girl",
    "chamak": "dancer", "dan": "man dancing", "ed": "man in a coat", "jay": "man in a coat", "jodi": "girl dancing",
    "mako": "man", "marissa": "girl", "nathan": "boy", "nina": "girl", "paul": "man", "sam": "boy",
}
POSES = {"dancing": "dancing", "jumping": "jumping", "laughing": "laughing",
         "crouching": "crouching", "phone": "on the phone", "screaming": "screaming", "sitting": "sitting",
         "thinking": "thinking"}
DRAWN = {  # by eye: the stems (pose letter dropped) that are drawings, not photos
    "bedroom1", "bedroom2", "party-room", "room1", "room2", "room3", "spotlight-stage", "desert", "underwater",
    "woods-and-bench", "woods", "night-city", "night-city-with-street", "school1", "school2", "brick-wall1",
    "basketball-court2", "train-tracks3", "stars", "bat1", "bat2", "bee1", "butterfly1", "butterfly2", "butterfly3",
    "cat1", "cat2", "cat3", "cat4", "cat5", "clam1", "crab1", "crab2", "cub1", "dinosaur1", "dinosaur2", "dog1",
    "dog2", "duck1", "elephant1", "fish1", "fish2", "fish3", "fish4", "fox1", "frog1", "giraffe1", "grasshopper1",
    "hippo1", "horse1", "horse2", "lion1", "lioness1", "lobster1", "monkey1", "mouse1", "octopus1", "parrot1",
    "rabbit1", "shark1", "starfish1", "whale1", "zebra1", "bananas1", "baseball1", "basketball", "beachball1",
    "drum1", "drum2", "key1", "laptop", "mic", "rock", "partyhat1", "partyhat2", "partyhat3", "wizardhat", "soccer1",
    "sunglassF1", "sunglassF2", "sunglassF3", "sunglassF4", "airplane1", "car1", "car2", "convertible1",
    "convertible2", "convertible3", "helicopter1", "magiccarpet", "baby", "ballerina", "boy1-standing",
    "boy1-walking", "boy2", "boy3", "boy4-laughing", "boy4-shrugging", "boy4-walking", "boycurly", "boyshorts",
    "breakdancer-1", "breakdancer-2", "breakdancer-3", "breakdancer-4", "diver1", "diver2", "girl1-standing",
    "girl1-walking", "girl2-shouting", "girl2-standing", "girl3-basketball", "girl3-running", "girl3-standing",
    "girl4-sitting", "girl4-standing", "girl5", "prince1", "prince2", "princess1", "singer1", "womanbun",
    "womanwaving",
}


def without_pose(stem: str) -> str:
    """'shark1-a' -> 'shark1': the letter that tells the poses of one costume apart."""
    return re.sub(r"-[a-e]$", "", stem)


def base_name(stem: str) -> str:
    """'boy4-walking-c' -> 'boy-walking', 'train-tracks3' -> 'train-tracks', 'cassy-dancing-1' -> 'cassy-dancing'"""
    return re.sub(r"\d+", "", without_pose(stem)).strip("-")


def caption_of(stem: str) -> str:
    """A costume's or background's file stem -> its caption ('cassy-phone-1' -> 'girl on the phone')."""
    base = base_name(stem)
    if base in CAPTIONS:
        return CAPTIONS[base]
    person, _, pose = base.partition("-")
    if person in PEOPLE:
        return " ".join([PEOPLE[person], *([POSES[pose]] if pose in POSES and pose not in PEOPLE[person] else [])])
    return humanize(base)


def split_key(folder: str, stem: str, caption: str) -> str:
    """What a split keeps together: in People the person or drawn figure ('cassy-phone-1' -> 'cassy', 'girl3-running'
    -> 'girl3'), elsewhere the caption."""
    return stem.split("-")[0] if folder.endswith("People") else caption


def items(root: Path = ROOT) -> list[SourceItem]:
    require(root, "Scratch's media library", SOURCE)
    out = []
    for folder in FOLDERS:
        paths = [p for p in sorted(require(root / folder, f"Scratch's {folder}", SOURCE).iterdir())
                 if is_image_path(p) and p.stem not in SKIP]
        for path in drop_duplicate_files(paths):
            caption = caption_of(path.stem)
            meta = {"source": str(path), "kind": DRAWING if without_pose(path.stem) in DRAWN else PHOTO,
                    "category": folder, "split_key": make_key(split_key(folder, path.stem, caption))}
            key = make_key(f"{folder.rsplit('/', 1)[-1]}_{path.stem}_{path.suffix[1:]}")
            out.append(SourceItem(key, caption, str(path), [caption], meta))
    return out
