"""training/recipes/symbola_eval.py: the emoji a font draws become an ImageFolder named by CLDR name, whole or not
at all; what the font lacks (its missing-glyph box) is left out."""

import importlib.util
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageFont

SPEC = importlib.util.spec_from_file_location(
    "symbola_eval", Path(__file__).parents[1] / "training" / "recipes" / "symbola_eval.py")
symbola_eval = importlib.util.module_from_spec(SPEC)
sys.modules[SPEC.name] = symbola_eval
SPEC.loader.exec_module(symbola_eval)


def test_only_the_emoji_a_font_draws_are_kept(tmp_path, monkeypatch):
    font = ImageFont.load_default(size=symbola_eval.FONT_SIZE)  # Pillow's bundled Latin font: two emoji of ~1,400
    glyphs = symbola_eval.drawn_emoji(font)
    assert {char: name for char, (name, _) in glyphs.items()} == {"©": "copyright", "™": "trade mark"}
    out = tmp_path / "set"
    symbola_eval.write(out, glyphs)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == ["copyright/00a9.png",
                                                                                "trade mark/2122.png"]
    image = Image.open(out / "copyright" / "00a9.png")
    assert image.mode == "RGBA" and image.getextrema()[3] == (0, 255)  # black ink on a transparent canvas
    with pytest.raises(SystemExit, match="exists"):
        symbola_eval.write(out, glyphs)
    with pytest.raises(SystemExit, match="apt-get install fonts-symbola"):
        symbola_eval.main(["--out", str(tmp_path / "other"), "--font", str(tmp_path / "no.ttf")])
    # a write that fails half-way leaves neither the set nor a temporary folder
    monkeypatch.setattr(symbola_eval.Image.Image, "save", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "full")))
    with pytest.raises(OSError, match="full"):
        symbola_eval.write(tmp_path / "out2", glyphs)
    assert not (tmp_path / "out2").exists() and not list(tmp_path.glob(".out2.*"))
