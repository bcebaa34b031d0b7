"""training/recipes/iconify_eval.py: an icon package's things become an ImageFolder, whole or not at all."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import pytest
from PIL import Image

from multimodal.errors import UsageError

SPEC = importlib.util.spec_from_file_location(
    "iconify_eval", Path(__file__).parents[1] / "training" / "recipes" / "iconify_eval.py")
iconify_eval = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = iconify_eval  # dataclasses look their module up there
SPEC.loader.exec_module(iconify_eval)

RECT = '<rect width="48" height="48" fill="{}"/>'


def package(root: Path, icons: dict[str, str], categories: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True)
    (root / "package.json").write_text(json.dumps({"name": "@iconify-json/toy", "version": "1.0.0"}))
    (root / "icons.json").write_text(json.dumps({"width": 48, "height": 48, "icons": {
        name: {"body": RECT.format(colour)} for name, colour in icons.items()}}))
    (root / "metadata.json").write_text(json.dumps({"categories": categories}))
    return root


def test_labels_drop_the_variant_word_only():
    assert [iconify_eval.label_of(n) for n in ("bottle-one", "bottle-ten", "hot-air-balloon", "one-piece-swimsuit",
                                               "bridge-twenty", "car-4")] == ["bottle", "bottle", "hot air balloon",
                                                                    "one piece swimsuit", "bridge twenty", "car"]


def test_every_reserved_set_names_a_pinned_package_and_categories():
    for spec in iconify_eval.SETS.values():
        assert spec.package.startswith("@iconify-json/") and spec.version.count(".") == 2 and spec.categories


@pytest.mark.skipif(shutil.which("rsvg-convert") is None, reason="needs rsvg-convert (librsvg2-bin)")
def test_renders_the_chosen_categories_into_label_folders(tmp_path, monkeypatch):
    root = package(tmp_path / "cache" / "@iconify-json" / "toy",
                   {"bottle-one": "red", "bottle-two": "blue", "cat": "green", "arrow-up": "black",
                    "kitty": "green", "cat-off": "grey", "dog": "brown"},
                   {"Foods": ["bottle-one", "bottle-two"], "Animals": ["cat", "cat-off", "kitty"],
                    "Arrows": ["arrow-up", "dog"], "Pets": ["dog"]})  # 'dog' is listed under two categories
    (root / "icons.json").write_text((root / "icons.json").read_text().replace(
        '"dog": {"body"', '"dog": {"hidden": true, "body"'))
    monkeypatch.setitem(iconify_eval.SETS, "toy", iconify_eval.EvalSet("@iconify-json/toy", "1.0.0", "MIT",
                                                                      ("Foods", "Animals", "Pets"),
                                                                      frozenset({"off"})))
    out = tmp_path / "out"
    assert iconify_eval.main(["toy", "--out", str(out), "--cache", str(tmp_path / "cache")]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    # no interface glyphs (arrow-up, cat-off), no hidden icon (dog), one drawing once (kitty is cat's green square)
    assert files == ["bottle/bottle-one.png", "bottle/bottle-two.png", "cat/cat.png"]
    assert Image.open(out / "cat" / "cat.png").convert("RGB").getpixel((80, 80)) == (0, 128, 0)
    with pytest.raises(SystemExit, match="exists"):
        iconify_eval.main(["toy", "--out", str(out), "--cache", str(tmp_path / "cache")])
    with pytest.raises(UsageError, match=r"no categories \['Vehicles'\]"):
        iconify_eval.chosen_icons(root, iconify_eval.EvalSet("p", "1.0.0", "MIT", ("Foods", "Vehicles")))
    # a render that fails half-way leaves neither the set nor a temporary folder
    render, calls = iconify_eval.render_svg, []

    def fails_second(svg):
        calls.append(svg)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return render(svg)

    monkeypatch.setattr(iconify_eval, "render_svg", fails_second)
    with pytest.raises(OSError, match="No space"):
        iconify_eval.main(["toy", "--out", str(tmp_path / "out2"), "--cache", str(tmp_path / "cache")])
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2.*"))
    (root / "metadata.json").unlink()
    with pytest.raises(SystemExit, match="metadata.json"):
        iconify_eval.main(["toy", "--out", str(tmp_path / "out4"), "--cache", str(tmp_path / "cache")])
