"""The GCompris corpus and its Qt resource reader, on tiny archives written here in Qt's own layout."""

import io
import json
import os
import shutil
import struct
import zlib

import pytest
from PIL import Image
from test_data_writer import read_all

from multimodal.data.corpora import build_corpus, gcompris, rcc
from multimodal.data.split import split_of
from multimodal.errors import MissingError, UsageError

needs_rsvg = pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert (librsvg2-bin)")
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect width="10" height="10" fill="red"/></svg>'


def write_rcc(path, files: dict[str, bytes], compressed: frozenset = frozenset(), version: int = 3) -> None:
    """A `qres` archive in Qt's layout: breadth-first nodes, each folder's children numbered consecutively; nodes
    of 14 bytes in version 1 and 22 (with a modification time) from version 2; a flags word in version 3's header."""
    tree: dict[str, dict] = {"": {}}
    for name in files:
        parts = name.strip("/").split("/")
        for depth in range(1, len(parts)):
            tree.setdefault("/" + "/".join(parts[:depth]), {})
    order = [""]
    for node in order:  # breadth first: a folder's children get consecutive numbers
        order += sorted(p for p in [*tree, *files] if p.rsplit("/", 1)[0] == node and p and p not in order)
    mtime = struct.pack(">Q", 0) if version >= 2 else b""
    names, data, nodes = b"", b"", b""
    for node in order:
        leaf = node.rsplit("/", 1)[-1]
        name_offset = len(names)
        names += struct.pack(">HI", len(leaf), 0) + leaf.encode("utf-16-be")
        if node in files:
            raw = files[node]
            flags = 1 if node in compressed else 0
            if flags:
                raw = struct.pack(">I", len(raw)) + zlib.compress(raw)
            nodes += struct.pack(">IHHHI", name_offset if node else 0, flags, 0, 0, len(data)) + mtime
            data += struct.pack(">I", len(raw)) + raw
        else:
            children = [i for i, p in enumerate(order) if p and p.rsplit("/", 1)[0] == node]
            nodes += struct.pack(">IHII", name_offset if node else 0, 2, len(children),
                                 children[0] if children else 0) + mtime
    header = 24 if version >= 3 else 20
    offsets = struct.pack(">IIII", version, header, header + len(nodes), header + len(nodes) + len(data))
    path.write_bytes(b"qres" + offsets + (struct.pack(">I", 0) if version >= 3 else b"") + nodes + data + names)


def webp(colour: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(out, "WEBP")
    return out.getvalue()


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reads_plain_and_compressed_files_in_nested_folders(tmp_path, version):
    files = {"/a/b/one.txt": b"hello", "/a/two.bin": b"\x00" * 100, "/top.txt": b"top"}
    write_rcc(tmp_path / "x.rcc", files, compressed=frozenset({"/a/two.bin"}), version=version)
    assert set(rcc.index(tmp_path / "x.rcc")) == set(files)
    assert {name: rcc.read_resource(tmp_path / "x.rcc", name) for name in files} == files


def test_rcc_names_what_is_wrong_with_an_archive(tmp_path):
    write_rcc(tmp_path / "x.rcc", {"/one.txt": b"hello"})
    with pytest.raises(UsageError, match="no resource '/missing'"):
        rcc.read_resource(tmp_path / "x.rcc", "/missing")
    (tmp_path / "bad.rcc").write_bytes(b"PK\x03\x04 not qt")
    with pytest.raises(UsageError, match="not a Qt resource archive"):
        rcc.index(tmp_path / "bad.rcc")
    (tmp_path / "v9.rcc").write_bytes(b"qres" + struct.pack(">IIII", 9, 20, 20, 20))
    with pytest.raises(UsageError, match="version 9"):
        rcc.index(tmp_path / "v9.rcc")
    blob = (tmp_path / "x.rcc").read_bytes()
    (tmp_path / "cut.rcc").write_bytes(blob[:30])
    with pytest.raises(UsageError, match="truncated or corrupt"):
        rcc.index(tmp_path / "cut.rcc")
    write_rcc(tmp_path / "x.rcc", {"/one.txt": b"hello", "/two.txt": b"again"})  # rewritten: read again
    os.utime(tmp_path / "x.rcc", ns=(0, (tmp_path / "x.rcc").stat().st_mtime_ns + 10**9))
    assert rcc.read_resource(tmp_path / "x.rcc", "/two.txt") == b"again"


def test_captions_from_file_names_and_the_table():
    assert gcompris.caption_of("measuringTape3") == "measuring tape"
    assert gcompris.caption_of("polar_bear") == "polar bear"
    assert gcompris.caption_of("fusee") == "rocket" and gcompris.caption_of("solar2") == "solar cooker"
    assert gcompris.caption_of("solar7") == "solar panel"
    assert gcompris.caption_of("dragon", "explore_world_animals") == "komodo dragon"
    assert gcompris.caption_of("dragon", "lang") == "dragon"


def test_credits_are_read_per_file_from_a_folder_readme():
    text = ("Copyright: Ann\nSource: https://example.org/a.jpg\nLicense: CC0-1.0\nFiles:\nhammer1.webp\nsub/x.webp\n\n"
            "Copyright: Bob\nLicense: Public Domain\nFiles: plier1.webp\n\n"
            "Files: giraffe.webp\nCopyright: Cy\nLicense: CC-BY-SA 4.0\n\n"  # 'Files:' first, as in erase's README
            "Copyright: Di\nLicense: Public Domain\nFiles:\nscreDriver.webp\n")  # a typo in the README
    credits = gcompris.parse_credits(text)
    assert set(credits) == {"hammer1.webp", "sub/x.webp", "plier1.webp", "giraffe.webp", "screwDriver.webp"}
    assert credits["hammer1.webp"]["source"] == "https://example.org/a.jpg"
    assert gcompris.credit_license(credits["plier1.webp"]).startswith("Public domain (Bob;")
    assert gcompris.credit_license(credits["giraffe.webp"]).startswith("CC-BY-SA-4.0 (Cy;")
    assert gcompris.credit_license(None) == gcompris.PACKAGE_LICENSE


@needs_rsvg
def test_gcompris_corpus_from_tiny_archives(tmp_path):
    root = tmp_path / "rcc"
    root.mkdir()
    tools = gcompris.ACTIVITIES + "categorization/resource/images/tools/"
    others = gcompris.ACTIVITIES + "categorization/resource/images/others/"
    content = {
        "lang": {gcompris.ACTIVITIES + "lang/resource/words_sample/apple.webp": webp("green"),
                 gcompris.ACTIVITIES + "lang/resource/lang.svg": SVG},  # outside the listed folder: not a picture
        "categorization": {tools + "hammer1.webp": webp("red"), tools + "hammer2.webp": webp("blue"),
                           tools + "plier1.webp": webp("yellow"),
                           tools + "README": b"Copyright: Ann\nLicense: CC0-1.0\nFiles:\nhammer1.webp\n\n"
                                             b"Copyright: Bo\nLicense: Public Domain\nFiles:\nhammer2.webp\n"
                                             b"plier1.webp\n",
                           others + "cup.webp": webp("white")},  # a photo no README credits: left out
        "babymatch": {gcompris.ACTIVITIES + "babymatch/resource/images/fusee.svg": SVG,
                      gcompris.ACTIVITIES + "babymatch/resource/images/error.svg": SVG},  # a UI picture: skipped
    }
    for archive, _ in gcompris.FOLDERS:
        write_rcc(root / f"{archive}.rcc", content.get(archive, {}), compressed=frozenset(content.get(archive, {})))
    with pytest.warns(UserWarning, match=r"left out 1 photo.*cup\.webp"):
        build_corpus("gcompris", tmp_path / "out", root=root, progress=False)
    samples = {**read_all(tmp_path / "out" / "gcompris" / "train"), **read_all(tmp_path / "out" / "gcompris" / "eval")}
    meta = {key: json.loads(s["json"]) for key, s in samples.items()}
    assert {key: samples[key]["txt"].decode() for key in samples} == {
        "lang_words_sample_apple_webp": "apple", "categorization_tools_hammer1_webp": "hammer",
        "categorization_tools_hammer2_webp": "hammer", "categorization_tools_plier1_webp": "pliers",
        "babymatch_images_fusee_svg": "rocket"}
    drawings = ("lang_words_sample_apple_webp", "babymatch_images_fusee_svg")
    assert all(meta[key]["kind"] == "drawing" for key in drawings)
    assert meta["lang_words_sample_apple_webp"]["license"] == gcompris.PACKAGE_LICENSE  # GCompris's own drawing
    hammer1, hammer2 = (meta[f"categorization_tools_hammer{i}_webp"] for i in (1, 2))
    assert hammer1["kind"] == "photo" and hammer1["license"].startswith("CC0-1.0 (Ann;")
    assert hammer2["license"].startswith("Public domain (Bo;")
    hammers = [split_of(m["split_key"]) for m in (hammer1, hammer2)]
    assert hammers[0] == hammers[1] == split_of("hammer")  # one caption, one split


@needs_rsvg
def test_gcompris_names_the_missing_package(tmp_path):
    with pytest.raises(MissingError, match="apt-get install gcompris-qt-data"):
        gcompris.items(root=tmp_path / "nowhere")


@pytest.mark.skipif(not (gcompris.ROOT / "lang.rcc").exists(), reason="needs gcompris-qt-data")
def test_the_installed_archives_read_as_qt_wrote_them():
    name = gcompris.ACTIVITIES + "lang/resource/words_sample/apple.webp"
    assert Image.open(io.BytesIO(rcc.read_resource(gcompris.ROOT / "lang.rcc", name))).size[0] > 100
