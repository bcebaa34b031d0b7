"""The Scratch 1.4 media corpus: captions from file names, photo or drawing, one split per caption."""

import json
import shutil
from pathlib import Path

import pytest
from conftest import make_image
from test_data_writer import read_all

from multimodal.data.corpora import build_corpus, scratch
from multimodal.data.split import split_of
from multimodal.errors import MissingError


@pytest.mark.parametrize("stem, caption", [
    ("boy4-walking-c", "boy walking"), ("cassy-phone-1", "girl on the phone"), ("anjuli-3", "girl dancing"),
    ("dan4", "man dancing"), ("calvrett-jumping", "boy jumping"), ("route66", "road"),
    ("train-tracks3", "train tracks"), ("shark1-a", "shark"), ("sunglassF2", "sunglasses"),
    ("fire-hydrant", "fire hydrant"), ("hallway_outdoors", "arcade"), ("lee-fan", "fan dancer"),
    ("cassy-chillin", "girl"), ("street-cleaner-mit", "ice resurfacer"),
])
def test_captions_from_file_names(stem, caption):
    assert scratch.caption_of(stem) == caption


def media(root: Path) -> Path:
    files = {"Backgrounds/Nature": ["canyon.jpg", "moon.jpg", "woods.gif"],
             "Backgrounds/Outdoors": ["route66.jpg", "castle.jpg"],
             "Costumes/Animals": ["shark1-a.png", "shark1-b.png", "buffalo1.gif"],
             "Costumes/Things": ["lamp.gif", "button.gif", "umbrella.gif"],
             "Costumes/Transportation": ["bus.gif"],
             "Costumes/People": ["cassy-dancing-1.gif", "cassy-phone-1.gif", "anna-2.gif"],
             "Backgrounds/Indoors": ["kitchen.jpg"], "Backgrounds/Sports": ["baseball-field.jpg"],
             "Costumes/Letters": ["a.gif"]}
    for i, (folder, name) in enumerate((folder, name) for folder, names in files.items() for name in names):
        (root / folder).mkdir(parents=True, exist_ok=True)
        make_image(root / folder / name, seed=i, mode="RGBA" if name.endswith(".png") else "RGB")
    shutil.copy(root / "Backgrounds/Outdoors/castle.jpg", root / "Backgrounds/Outdoors/castle2.jpg")  # a copy
    return root


def test_items_kinds_and_left_out_files(tmp_path):
    items = scratch.items(media(tmp_path / "Media"))
    by_key = {item.key: item for item in items}
    assert "Things_button_gif" not in by_key and "Outdoors_castle2_jpg" not in by_key  # interface; a byte copy
    assert not any("Letters" in item.meta["category"] for item in items)
    assert by_key["Outdoors_route66_jpg"].labels == ["road"]
    assert by_key["Nature_canyon_jpg"].meta["kind"] == "photo" and by_key["Nature_woods_gif"].meta["kind"] == "drawing"
    assert by_key["Animals_shark1-a_png"].meta["kind"] == "drawing" and by_key["Animals_buffalo1_gif"].meta["kind"] \
        == "photo"
    assert by_key["People_cassy-dancing-1_gif"].caption == by_key["People_anna-2_gif"].caption == "girl dancing"
    assert [by_key[f"Animals_shark1-{pose}_png"].meta["split_key"] for pose in "ab"] == ["shark", "shark"]
    people = [by_key[f"People_{stem}_gif"].meta["split_key"] for stem in ("cassy-dancing-1", "cassy-phone-1", "anna-2")]
    assert people == ["cassy", "cassy", "anna"]  # one person's pictures together, whatever their captions


def test_build_splits_by_the_split_key_with_the_license(tmp_path):
    root = media(tmp_path / "Media")
    build_corpus("scratch", tmp_path / "out", progress=False, root=root)
    found, licenses = {}, set()
    for split in ("train", "eval"):
        for key, sample in read_all(tmp_path / "out" / "scratch" / split).items():
            found[key] = split
            licenses.add(json.loads(sample["json"])["license"])
    items = scratch.items(root)
    assert found == {item.key: split_of(item.meta["split_key"]) for item in items}
    assert any(split_of(item.key) != found[item.key] for item in items)  # the key alone would have split otherwise
    assert licenses == {scratch.LICENSE}


def test_a_missing_package_says_what_to_install(tmp_path):
    with pytest.raises(MissingError, match="apt-get install scratch"):
        scratch.items(tmp_path / "nowhere")


@pytest.mark.skipif(not scratch.ROOT.exists(), reason="the Debian package scratch is not installed")
def test_the_installed_media_library():
    items = scratch.items()
    kinds = [item.meta["kind"] for item in items]
    assert len(items) == 292 and kinds.count("photo") == 145
    assert {item.caption for item in items} >= {"beach", "kitchen", "fire hydrant", "tugboat", "girl dancing"}
