"""Corpus builders on tiny copies of the real layouts (the real ones are built by `multimodal shards corpus`)."""

import csv
import gzip
import io
import json
import os
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from PIL import Image
from test_data_writer import read_all

from multimodal.cli.shards import CORPUS_HELP, CORPUS_NAMES
from multimodal.data.corpora import (
    CORPORA,
    build_corpus,
    corpus_module,
    fashion_mnist,
    iconify,
    npm,
    openclipart,
    openmoji,
    tuxpaint,
    twemoji,
)
from multimodal.data.corpora import emoji as emoji_corpus
from multimodal.data.split import is_held_out, split_of
from multimodal.errors import MissingError, UsageError

SVG = """<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" xmlns:cc="http://web.resource.org/cc/"
 xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
<metadata><rdf:RDF><cc:Work rdf:about=""><dc:title>{title}</dc:title><dc:subject><rdf:Bag>{keywords}</rdf:Bag>
</dc:subject><dc:creator><cc:Agent><dc:title>Jane Artist</dc:title></cc:Agent></dc:creator></cc:Work></rdf:RDF>
</metadata></svg>"""


def test_split_is_a_stable_hash_of_the_key():
    keys = [f"sample{i}" for i in range(4000)]
    held = [k for k in keys if is_held_out(k)]
    assert 300 < len(held) < 500  # ~10%
    assert [split_of(k) for k in keys] == [split_of(k) for k in keys]
    assert split_of("sample0") == "train" and split_of("sample15") == "eval"  # fixed forever: eval sets depend on it


def test_openclipart_captions_from_svg_metadata(tmp_path):
    root = tmp_path / "openclipart"
    (root / "png" / "food").mkdir(parents=True)
    (root / "svg" / "food").mkdir(parents=True)
    for i, (title, kws) in enumerate([("Red Apple", ["fruit", "food", "Jane Artist"]),
                                      ("Clipart by Jane Artist - arrow08_4", ["shape", "arrow"])]):
        make_image(root / "png" / "food" / f"img{i}.png", seed=i, mode="RGBA")
        svg = root / "svg" / "food" / f"img{i}.svg"
        svg.write_text(SVG.format(title=title, keywords="".join(f"<rdf:li>{k}</rdf:li>" for k in kws)))
    (root / "png" / "food" / "zcopy.png").write_bytes((root / "png" / "food" / "img0.png").read_bytes())
    items = {i.key: i for i in openclipart.items(root)}
    assert set(items) == {"food_img0", "food_img1"}  # the byte-identical copy is dropped (no split leakage)
    assert items["food_img0"].caption == "red apple, fruit, food" and items["food_img0"].labels == ["red apple"]
    assert items["food_img1"].caption == "arrow, shape" and items["food_img1"].labels == ["arrow"]


def test_tuxpaint_stamps(tmp_path):
    root = tmp_path / "stamps"
    (root / "animals" / "fish").mkdir(parents=True)
    make_image(root / "animals" / "fish" / "wrasse.png", seed=1, mode="RGBA")
    (root / "animals" / "fish" / "wrasse.txt").write_text("A moon wrasse.\nfr.utf8=Un poisson.\n")
    make_image(root / "animals" / "fish" / "wrasse_mirror.png", seed=2)  # no caption file: not a stamp of its own
    items = tuxpaint.items(root)
    assert [(i.key, i.caption, i.labels) for i in items] == [("animals_fish_wrasse", "A moon wrasse.",
                                                              ["moon wrasse"])]


def write_idx(root: Path, part: str, images: np.ndarray, labels: np.ndarray) -> None:
    image_file, label_file = fashion_mnist.FILES[part]
    with gzip.open(root / image_file, "wb") as f:
        f.write(b"\x00\x00\x08\x03" + np.array(images.shape, ">i4").tobytes() + images.tobytes())
    with gzip.open(root / label_file, "wb") as f:
        f.write(b"\x00\x00\x08\x01" + np.array([len(labels)], ">i4").tobytes() + labels.tobytes())


def test_fashion_mnist_build_with_license_and_split(tmp_path):
    root = tmp_path / "fmnist"
    root.mkdir()
    rng = np.random.default_rng(0)
    for part, n in (("train", 30), ("t10k", 10)):
        write_idx(root, part, rng.integers(0, 255, (n, 28, 28), dtype=np.uint8), (np.arange(n) % 10).astype(np.uint8))
    fashion_mnist.load_idx.cache_clear()
    reports = build_corpus("fashion-mnist", tmp_path / "out", root=root, progress=False)
    assert reports["train"].num_samples + reports["eval"].num_samples == 40
    samples = {**read_all(tmp_path / "out" / "fashion-mnist" / "train"),
               **read_all(tmp_path / "out" / "fashion-mnist" / "eval")}
    s = samples["t10k_00003"]
    meta = json.loads(s["json"])
    assert s["txt"].decode() == "dress" and meta["labels"] == ["dress"] and "MIT" in meta["license"]
    held = {k for k in read_all(tmp_path / "out" / "fashion-mnist" / "eval")}
    assert held == {k for k in samples if is_held_out(k)}
    index = json.loads((tmp_path / "out" / "fashion-mnist" / "eval" / "index.json").read_text())
    assert index["corpus"] == "fashion-mnist" and "sha256" in index["split_rule"]


@pytest.mark.skipif(not emoji_corpus.FONT.exists(), reason="needs fonts-noto-color-emoji (tests/run.sh installs it)")
def test_emoji_render_and_names():
    items = emoji_corpus.items()
    assert 1800 < len(items) < 2100
    apple = next(i for i in items if i.caption == "red apple")
    from multimodal.data.images import open_image

    img = open_image(apple.image(), mode="RGB")
    r, g, b = np.asarray(img).reshape(-1, 3).mean(0)
    assert img.size[0] > 90 and r > g and r > b  # a real, red glyph


# ---- npm and Debian icon corpora: tiny copies of the package layouts ----

SQUARE = ('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72">'
          '<rect x="8" y="8" width="56" height="56" fill="{}"/>')
needs_rsvg = pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert (librsvg2-bin)")


def red_fraction(png: bytes) -> float:
    rgba = np.asarray(Image.open(io.BytesIO(png)).convert("RGBA")).reshape(-1, 4).astype(int)
    return float(((rgba[:, 0] > 200) & (rgba[:, 1] < 60) & (rgba[:, 3] > 200)).mean())


def test_npm_package_is_packed_once_then_read_from_the_cache(tmp_path, monkeypatch):
    tgz = tmp_path / "pkg.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        data = json.dumps({"name": "@scope/pkg", "version": "1.0.0"}).encode()
        info = tarfile.TarInfo("package/package.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # called as: npm pack PACKAGE@VERSION --pack-destination DIR
    (bin_dir / "npm").write_text(f'#!/bin/sh\necho "$@" >> {bin_dir}/calls\ncp {tgz} "$4"/\n')
    (bin_dir / "npm").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"
    folder = npm.npm_package("@scope/pkg", "1.0.0", cache)
    assert folder == cache / "@scope" / "pkg" and (folder / "package.json").is_file()
    assert npm.npm_package("@scope/pkg", "1.0.0", cache) == folder
    calls = (bin_dir / "calls").read_text().splitlines()
    assert len(calls) == 1 and calls[0].startswith("pack @scope/pkg@1.0.0 --pack-destination")
    with pytest.raises(ValueError, match="holds @scope/pkg 1.0.0, not the pinned 2.0.0"):
        npm.npm_package("@scope/pkg", "2.0.0", cache)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"npm is not installed.*npm pack other@3\.0\.0"):
        npm.npm_package("other", "3.0.0", cache)


def test_twemoji_names_no_skin_tones_no_copies(tmp_path):
    images = tmp_path / "twitter" / twemoji.IMAGES
    images.mkdir(parents=True)
    entries = [("1F34E", "RED APPLE", ["apple"], "Food & Drink"),
               ("1F44B", "WAVING HAND SIGN", ["wave"], "People & Body"),
               ("1F3FB", "EMOJI MODIFIER FITZPATRICK TYPE-1-2", ["skin-tone-2"], "Component"),
               ("1F34F", "GREEN APPLE", ["green_apple"], "Food & Drink")]
    for i, (unified, *_) in enumerate(entries[:3]):
        make_image(images / f"{unified.lower()}.png", seed=i, size=(64, 64), mode="RGBA")
    (images / "1f34f.png").write_bytes((images / "1f34e.png").read_bytes())  # drawn identically: would leak
    (tmp_path / "twitter" / "emoji.json").write_text(json.dumps([
        {"unified": u, "name": n, "short_names": s, "category": c, "subcategory": "x", "image": f"{u.lower()}.png",
         "has_img_twitter": True, "skin_variations": {"1F3FB": {}}} for u, n, s, c in entries]))
    items = {i.key: i for i in twemoji.items(tmp_path / "twitter")}
    assert set(items) == {"red_apple_1f34e", "waving_hand_1f44b"}  # the `emoji` corpus's keys: same split
    hand = items["waving_hand_1f44b"]
    assert (hand.caption, hand.labels) == ("waving hand sign", ["waving hand sign"])
    assert hand.meta["keywords"] == ["wave"] and hand.meta["category"] == "People & Body"


@needs_rsvg
def test_openmoji_renders_annotations_and_keeps_tags(tmp_path):
    root = tmp_path / "openmoji"
    (root / "color" / "svg").mkdir(parents=True)
    (root / "data").mkdir()
    rows = [("1F34E", "red apple", "fruit, red", "food", "", "red"), ("E000", "openmoji", "", "logo", "", "blue"),
            ("1F44B-1F3FB", "waving hand: light skin tone", "", "", "light skin tone", "red"),
            ("2708", "airplane", "", "", "", "grey")]  # OpenMoji leaves out U+FE0F; the shared key has it
    with open(root / "data" / "openmoji.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["emoji", "hexcode", "group", "subgroups", "annotation", "tags", "openmoji_tags",
                         "openmoji_author", "skintone"])
        for hexcode, name, tags, om_tags, tone, colour in rows:
            writer.writerow(["", hexcode, "food-drink", "fruit", name, tags, om_tags, "Jane Artist", tone])
            (root / "color" / "svg" / f"{hexcode}.svg").write_text(SQUARE.format(colour) + "</svg>")
    items = {i.key: i for i in openmoji.items(root, size=80)}
    assert set(items) == {"red_apple_1f34e", "openmoji_e000", "airplane_2708-fe0f"}
    apple = items["red_apple_1f34e"]
    assert apple.caption == "red apple" and apple.labels == ["red apple"]
    assert apple.meta["keywords"] == ["fruit", "red", "food"] and apple.meta["author"] == "Jane Artist"
    png = apple.image()
    assert Image.open(io.BytesIO(png)).size == (80, 80) and red_fraction(png) > 0.4
    assert red_fraction(items["openmoji_e000"].image()) == 0


@needs_rsvg
def test_emojione_icon_names_and_shared_keys(tmp_path):
    root = tmp_path / "emojione"
    root.mkdir()
    rect = SQUARE.split(">", 1)[1]
    icons = {"red-apple": rect.format("red"), "waving-hand-light-skin-tone": rect.format("peru"),
             "flag-for-nowhere": rect.format("blue"), "flag-for-elsewhere": rect.format("blue")}
    (root / "icons.json").write_text(json.dumps({"prefix": "emojione", "width": 72, "height": 72,
                                                 "icons": {k: {"body": v} for k, v in icons.items()}}))
    (root / "metadata.json").write_text(json.dumps({"categories": {"Food": ["red-apple"]}}))
    items = {i.key: i for i in iconify.EMOJIONE.items(root, size=64)}
    assert set(items) == {"red_apple_1f34e", "flag-for-elsewhere"}  # skin tone and the identical flag dropped
    apple = items["red_apple_1f34e"]
    assert (apple.caption, apple.labels, apple.meta["category"]) == ("red apple", ["red apple"], "Food")
    assert red_fraction(apple.image()) > 0.4


@needs_rsvg
def test_iconify_sets_match_glued_and_variant_names_to_the_shared_emoji_keys(tmp_path):
    rect = SQUARE.split(">", 1)[1]
    icons = {"alarmclock": "#f00", "baby-1": "#f01", "baby-2": "blue", "americasglobe": "green",  # glued, no emoji
             "amazed-face": "#f02", "grinning-face-light-skin-tone": "peru",
             "star": "gold", "whitemediumstar": "orange"}  # two names of one emoji
    (tmp_path / "icons.json").write_text(json.dumps({"width": 48, "height": 48, "icons": {
        name: {"body": rect.format(colour)} for name, colour in icons.items()}}))
    items = {i.key: i for i in iconify.FXEMOJI.items(tmp_path, size=32)}
    stars = [i for i in iconify.FXEMOJI.items(tmp_path, size=32) if i.key == "star_2b50"]
    assert len(stars) == 2  # two icon names of one emoji: build_corpus must give them distinct keys
    assert set(items) == {"alarm_clock_23f0", "baby_1f476_1", "baby_1f476_2", "amazed-face", "star_2b50"}
    assert [items[k].caption for k in sorted(items)] == ["alarm clock", "amazed face", "baby", "baby", "star"]
    assert {items[k].meta["split_key"] for k in ("baby_1f476_1", "baby_1f476_2")} == {"baby_1f476"}
    assert items["alarm_clock_23f0"].meta["char"] == "\u23f0" and red_fraction(items["baby_1f476_1"].image()) > 0.4
    assert corpus_module("fxemoji").LICENSE.startswith("Apache-2.0") and "CC-BY-SA" in iconify.EMOJIONE_V1.LICENSE
    build_corpus("fxemoji", tmp_path / "out", root=tmp_path, size=32, progress=False)
    held_out = is_held_out("baby_1f476")  # both variants land in the split of the emoji they draw
    babies = read_all(tmp_path / "out" / "fxemoji" / ("eval" if held_out else "train"))
    assert {"baby_1f476_1", "baby_1f476_2"} <= set(babies)
    written = read_all(tmp_path / "out" / "fxemoji" / ("eval" if is_held_out("star_2b50") else "train"))
    assert len([k for k in written if k.startswith("star_2b50")]) == 2


@needs_rsvg
@pytest.mark.filterwarnings("ignore:tango:UserWarning")  # the fake Tango theme lacks most of the whitelist
def test_icons_whitelist_sizes_and_license_per_sample(tmp_path):
    tango, oxygen = tmp_path / "tango", tmp_path / "oxygen"
    for rel in ("devices/printer", "actions/go-next"):  # go-next: a UI glyph, not whitelisted
        (tango / rel).parent.mkdir(parents=True, exist_ok=True)
        (tango / f"{rel}.svg").write_text(SQUARE.format("red") + "</svg>")
    for size, rel in (("32x32", "devices/scanner"), ("32x32", "devices/printer"), ("128x128", "devices/printer")):
        (oxygen / size / rel).parent.mkdir(parents=True, exist_ok=True)
        make_image(oxygen / size / f"{rel}.png", seed=len(rel), size=(int(size.split("x")[0]),) * 2, mode="RGBA")
    with pytest.warns(UserWarning, match="scanner"):  # only at 32 px: too small
        reports = build_corpus("icons", tmp_path / "out", tango=tango, oxygen=oxygen, progress=False)
    samples = {**read_all(tmp_path / "out" / "icons" / "train"), **read_all(tmp_path / "out" / "icons" / "eval")}
    assert set(samples) == {"tango_printer", "oxygen_printer"} and not reports["train"].skipped
    meta = {k: json.loads(s["json"]) for k, s in samples.items()}
    assert "Public domain" in meta["tango_printer"]["license"] and "LGPL" in meta["oxygen_printer"]["license"]
    assert meta["oxygen_printer"]["width"] == 128 and samples["oxygen_printer"]["txt"] == b"printer"


def test_every_corpus_can_be_named_on_the_command_line():
    from multimodal.cli import build_parser

    assert CORPUS_NAMES == list(CORPORA)
    for name in CORPORA:
        assert build_parser().parse_args(["shards", "corpus", name, "--out", "x"]).names == [name]
        assert f"\n  {name} " in CORPUS_HELP


def test_a_renamed_duplicate_keeps_the_split_of_its_twin():
    from multimodal.data.sources import SourceItem, dedupe_keys

    items = dedupe_keys([SourceItem("star", "star", f"{i}.png", ["star"]) for i in range(3)])
    assert len({item.key for item in items}) == 3 and items[0].key == "star"
    assert all(item.meta["split_key"] == "star" for item in items[1:])
    assert len({split_of(item.meta.get("split_key", item.key)) for item in items}) == 1


@needs_rsvg
def test_icon_sets_keep_things_and_fold_style_variants_into_their_concept(tmp_path):
    rect = SQUARE.split(">", 1)[1]
    icons = {"cat": "#f00", "cat-outline": "#f01", "barn": "#f02", "cake-variant-outline": "#f03",
             "airplane-off": "black", "arrow-up": "black", "tractor-variant": "#f04", "horse-variant-fast": "#f05",
             "wave": "#f06", "fence": "#f07"}
    (tmp_path / "icons.json").write_text(json.dumps({"width": 24, "height": 24, "icons": {
        name: {"body": rect.format(colour)} for name, colour in icons.items()}}))
    (tmp_path / "metadata.json").write_text(json.dumps({"categories": {
        **{cat: [] for cat in iconify.MDI_THINGS.categories},
        "Animal": ["cat", "cat-outline", "horse-variant-fast"], "Agriculture": ["barn", "tractor-variant", "fence"],
        "Food / Drink": ["cake-variant-outline"], "Transportation + Flying": ["airplane-off"], "Arrow": ["arrow-up"],
        "Transportation + Water": ["wave"], "Home Automation": ["fence"]}}))  # fence: a kept category, then not
    items = {i.key: i for i in iconify.MDI_THINGS.items(tmp_path, size=32)}
    # UI glyphs ('-off') and categories of no things (Arrow) are left out; a one-word name is a caption here, and
    # only an exact CLDR name makes an icon an emoji ('wave' is water, not the waving hand; 'cake' not the shortcake)
    assert {k: i.caption for k, i in items.items()} == {
        "cat_1f408": "cat", "cat_1f408_outline": "cat", "barn": "barn", "cake_variant-outline": "cake",
        "tractor_1f69c_variant": "tractor", "horse-fast_variant": "horse fast", "wave": "wave", "fence": "fence"}
    assert items["cat_1f408_outline"].meta["split_key"] == "cat_1f408"  # a style variant splits with its concept
    assert items["barn"].meta["category"] == "Agriculture" and red_fraction(items["barn"].image()) > 0.4
    assert "mdi-things" in CORPUS_NAMES and corpus_module("mdi-things").LICENSE.startswith("Apache-2.0")
    (tmp_path / "metadata.json").write_text(json.dumps({"categories": {"Animal": ["cat"]}}))
    with pytest.raises(UsageError, match="no categories .*'Agriculture'"):
        iconify.MDI_THINGS.items(tmp_path, size=32)
    (tmp_path / "metadata.json").unlink()
    with pytest.raises(MissingError, match="metadata.json"):
        iconify.MDI_THINGS.items(tmp_path, size=32)


def test_reserved_evaluation_sets_are_in_no_training_recipe():
    """EmojiOne monotone, IconPark, Streamline Ultimate and Symbola confirm candidates; Fluent emoji are kept for an
    outside evaluation: no config trains on them (a config naming one would make every figure measured on it a
    training figure)."""
    assert "CC-BY-4.0" in corpus_module("emojione-monotone").LICENSE
    configs = Path(__file__).parents[1] / "training" / "configs"
    named = [p.name for p in configs.glob("*.yaml") if re.search(r"emojione-monotone|fluent|icon-park|ultimate|symbola",
                                                                   p.read_text(), re.I)]
    assert list(configs.glob("*.yaml")) and named == []
