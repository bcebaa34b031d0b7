"""Corpus builders on tiny copies of the real layouts (the real ones are built by `multimodal shards corpus`)."""

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image
from test_data_writer import read_all

from multimodal.data.corpora import build_corpus, fashion_mnist, openclipart, tuxpaint
from multimodal.data.corpora import emoji as emoji_corpus
from multimodal.data.split import is_held_out, split_of

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
