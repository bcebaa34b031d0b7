"""multimodal.data.monochrome and the reader's monochrome_p: one-colour training images, never for a caption that
names a colour."""
import random

import pytest
import torch
from open_clip import image_transform
from PIL import Image, ImageChops, ImageDraw

from multimodal.data import monochrome as mono
from multimodal.data.reader import ShardReader
from multimodal.data.sources import load_source
from multimodal.data.writer import write_shards
from multimodal.errors import UsageError


def red_ball(size=64) -> Image.Image:
    img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    ImageDraw.Draw(img).ellipse((12, 12, size - 12, size - 12), fill=(210, 40, 30, 255), outline=(90, 10, 10, 255))
    return img


def is_grey(img: Image.Image) -> bool:
    r, g, b = img.convert("RGB").split()
    return ImageChops.difference(r, g).getbbox() is None and ImageChops.difference(g, b).getbbox() is None


@pytest.mark.parametrize("style", mono.STYLES)
def test_each_style_is_one_colour_and_keeps_the_shape(style, monkeypatch):
    monkeypatch.setattr(mono, "STYLES", (style,))
    out = mono.monochrome(red_ball(), "a ball", 1.0)
    assert out.size == (64, 64) and is_grey(out)
    if style == "lines":  # opaque: dark lines on white, none at the border, ink on the ball's edge
        assert out.mode == "RGB" and out.getpixel((0, 0)) == (255, 255, 255) and out.getpixel((32, 32))[0] > 200
        assert min(out.getpixel((x, 32))[0] for x in range(8, 18)) < 128
    else:  # transparent stays transparent, so the reader composites it as usual
        assert out.getchannel("A").getextrema() == (0, 255) and out.getpixel((0, 0))[3] == 0
        ball_grey = Image.new("RGB", (1, 1), (210, 40, 30)).convert("L").getpixel((0, 0))  # the red's luminance
        assert out.getpixel((32, 32))[:3] == ((0, 0, 0) if style == "silhouette" else (ball_grey,) * 3)


def test_captions_that_name_a_colour_keep_their_colours():
    random.seed(0)
    ball = red_ball()
    assert mono.monochrome(ball, "a red ball", 1.0) is ball
    assert mono.monochrome(ball, "Blue Heart", 1.0) is ball
    assert mono.monochrome(ball, "a ball", 0.0) is ball
    assert is_grey(mono.monochrome(ball, "a ball", 1.0))
    assert mono.names_a_colour("grey-haired man") and not mono.names_a_colour("reddit logo, a bluebird")


def test_an_opaque_or_colour_keyed_image_has_no_silhouette_but_turns_grey(monkeypatch):
    monkeypatch.setattr(mono, "STYLES", ("silhouette",))
    opaque = red_ball().convert("RGB")
    out = mono.monochrome(opaque, "a ball", 1.0)
    assert out.mode == "RGB" and is_grey(out) and out.getpixel((32, 32)) != (0, 0, 0)
    keyed = Image.new("P", (8, 8), 1)
    keyed.putpalette([255, 255, 255, 200, 0, 0] + [0] * 762)
    keyed.info["transparency"] = 0
    assert mono.monochrome(keyed, "a thing", 1.0).getpixel((4, 4)) == (0, 0, 0, 255)


def ball_shards(tmp_path):
    for caption in ("a ball", "a red ball"):
        folder = tmp_path / "balls" / caption.replace(" ", "-")
        folder.mkdir(parents=True)
        red_ball(32).save(folder / "ball.png")
        (folder / "ball.txt").write_text(caption + "\n")
    write_shards(load_source(tmp_path / "balls"), tmp_path / "shards", shard_size=5, progress=False)
    return tmp_path / "shards"


def test_the_reader_shows_its_share_in_one_colour_and_never_a_named_colour(tmp_path):
    transform = image_transform(32, is_train=False)
    mean = torch.tensor(transform.transforms[-1].mean).view(3, 1, 1)
    std = torch.tensor(transform.transforms[-1].std).view(3, 1, 1)
    shards = ball_shards(tmp_path)

    def batch(p, seed=0):
        reader = ShardReader(shards, image_transform=transform, batch_size=32, train=True, seed=seed, shuffle_buffer=0,
                             monochrome_p=p)
        out = next(iter(reader))
        pixels = out["image"] * std + mean  # [32, 3, 32, 32] in [0, 1]
        grey = [bool(torch.allclose(img[0], img[1], atol=2e-2) and torch.allclose(img[1], img[2], atol=2e-2))
                for img in pixels]
        return out["caption"], grey, out["image"]

    captions, grey, _ = batch(0.0)
    assert not any(grey)
    captions, grey, images = batch(0.5)
    named = [g for c, g in zip(captions, grey) if c == "a red ball"]
    plain = [g for c, g in zip(captions, grey) if c == "a ball"]
    assert named and plain and not any(named) and 0 < sum(plain) < len(plain)
    assert torch.equal(images, batch(0.5)[2])  # reproducible from the seed
    with pytest.raises(UsageError, match="monochrome_p.*from 0 to 1"):
        ShardReader(shards, image_transform=transform, train=True, monochrome_p=2)
    with pytest.raises(UsageError, match="monochrome_p.*training augmentation"):
        ShardReader(shards, image_transform=transform, train=False, monochrome_p=0.5)
