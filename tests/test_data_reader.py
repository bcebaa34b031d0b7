
import pytest
import torch
import webdataset as wds
from conftest import make_image, png_bomb_bytes
from open_clip import image_transform
from PIL import Image

from multimodal.data.images import open_image
from multimodal.data.reader import ShardReader
from multimodal.data.sources import load_source
from multimodal.data.urls import shard_weights
from multimodal.data.writer import write_shards
from multimodal.errors import UsageError

TRANSFORM = image_transform(32, is_train=False)


def tokenize(captions):  # a stand-in tokenizer: the reader only needs captions -> [B, L] ints
    return torch.tensor([[len(c), sum(map(ord, c)) % 997] for c in captions])


@pytest.fixture
def shards(caption_dir, tmp_path):
    out = tmp_path / "shards"
    write_shards(load_source(caption_dir), out, shard_size=5, progress=False)  # 5 shards: 5,5,5,5,4
    return out


def keys_of(reader):
    return [k for batch in reader for k in batch["key"]]


def test_round_trip_images_and_captions(caption_dir, shards):
    reader = ShardReader(shards, image_transform=TRANSFORM, tokenizer=tokenize, batch_size=4, train=False)
    assert reader.num_samples == 24
    batches = list(reader)
    assert [len(b["key"]) for b in batches] == [4, 4, 4, 4, 4, 4]  # exact pass, last batch partial is allowed
    items = {i.key: i for i in load_source(caption_dir)}
    for batch in batches:
        assert batch["image"].shape[1:] == (3, 32, 32) and batch["text"].shape == (len(batch["key"]), 2)
        for key, caption, image in zip(batch["key"], batch["caption"], batch["image"]):
            assert caption == items[key].caption
            assert torch.equal(image, TRANSFORM(open_image(items[key].image)))


def test_eval_pass_each_sample_once_across_2_workers_x_2_ranks(shards):
    seen = []
    for rank in range(2):
        reader = ShardReader(shards, image_transform=TRANSFORM, batch_size=3, train=False, num_workers=2,
                             rank=rank, world_size=2)
        seen += keys_of(reader)
    assert len(seen) == 24 and len(set(seen)) == 24


def test_resampled_order_is_reproducible_from_seed(shards):
    def first_keys(seed):
        reader = ShardReader(shards, image_transform=TRANSFORM, batch_size=4, train=True, seed=seed,
                             num_workers=2, shuffle_buffer=10)
        out = []
        for batch in reader:
            out += batch["key"]
            if len(out) >= 40:
                return out

    assert first_keys(1) == first_keys(1)
    assert first_keys(1) != first_keys(2)


def test_resume_continues_the_exact_stream(shards):
    def reader():
        return ShardReader(shards, image_transform=TRANSFORM, batch_size=4, train=True, seed=3, num_workers=2,
                           shuffle_buffer=10)

    full, it = [], iter(reader())
    for _ in range(9):
        full.append(next(it)["key"])
    first = reader()
    it = iter(first)
    for _ in range(5):  # stop after 5 batches, as a killed run would
        next(it)
    state = first.state_dict()
    resumed = reader()
    resumed.load_state_dict(state)
    it = iter(resumed)
    assert [next(it)["key"] for _ in range(4)] == full[5:9]


def test_bad_samples_are_skipped_and_counted(caption_dir, tmp_path, shards):
    png = next(caption_dir.rglob("*.png")).read_bytes()
    with wds.TarWriter(str(shards / "zz-bad.tar")) as sink:
        sink.write({"__key__": "corrupt", "png": png[:60], "txt": "cut short"})
        sink.write({"__key__": "nocaption", "png": png})
        sink.write({"__key__": "bomb", "png": png_bomb_bytes(), "txt": "bomb"})
        sink.write({"__key__": "good", "png": png, "txt": "fine"})
    whole = (shards / "shard-000004.tar").read_bytes()
    (shards / "shard-000004.tar").write_bytes(whole[:1500])  # cut inside the first sample
    reader = ShardReader(shards, image_transform=TRANSFORM, batch_size=4, train=False, num_workers=2,
                         max_pixels=1_000_000)
    keys = keys_of(reader)
    assert "good" in keys and not {"corrupt", "nocaption", "bomb"} & set(keys)
    skipped = reader.stats.skipped
    assert skipped["corrupt"] == 1 and skipped["missing_caption"] >= 1 and skipped["decompression_bomb"] == 1
    assert skipped["broken_shard"] == 1
    assert reader.stats.samples == len(keys) == 20 + 1  # 4 clean shards of 5, and "good"


def test_loader_does_not_sleep_on_errors(caption_dir, tmp_path):
    """100 corrupt samples must cost milliseconds, not webdataset's 0.5 s each."""
    import time

    with wds.TarWriter(str(tmp_path / "bad.tar")) as sink:
        for i in range(100):
            sink.write({"__key__": f"bad{i}", "png": b"\x89PNG broken", "txt": "x"})
    reader = ShardReader(tmp_path / "bad.tar", image_transform=TRANSFORM, batch_size=4, train=False)
    started = time.perf_counter()
    assert keys_of(reader) == []
    assert reader.stats.skipped["not_an_image"] == 100
    assert time.perf_counter() - started < 5


def test_missing_shard_paths_are_named_not_kept(tmp_path):
    from multimodal.errors import MissingError

    with pytest.raises(MissingError, match="nothing-here.*does not exist.*shards corpus all"):
        ShardReader(tmp_path / "nothing-here", image_transform=lambda im: im)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingError, match="holds no .tar shards"):
        ShardReader(f"{tmp_path}/{{empty,nothing}}", image_transform=lambda im: im)


def test_resampled_reader_gives_up_when_no_shard_can_be_read(tmp_path):
    """An endless training stream over shards that all fail must stop with their names, not spin forever."""
    import time

    from multimodal.errors import UsageError

    for name in ("a.tar", "b.tar"):
        (tmp_path / name).write_bytes(b"this is not a tar file" * 100)
    reader = ShardReader(tmp_path, image_transform=image_transform(32, is_train=False), tokenizer=tokenize,
                         batch_size=2, train=True, num_workers=0)
    start = time.perf_counter()
    with pytest.raises(UsageError, match="none of the 2 shard"):
        next(iter(reader))
    assert time.perf_counter() - start < 30


def one_sample_shard(tmp_path):
    folder = tmp_path / "one" / "x"
    folder.mkdir(parents=True)
    make_image(folder / "lonely.png", seed=99)
    (folder / "lonely.txt").write_text("the only one\n")
    write_shards(load_source(tmp_path / "one"), tmp_path / "small", shard_size=5, progress=False)
    return tmp_path / "small"


def share_of_small(spec, factors=None, n=500):
    reader = ShardReader(spec, image_transform=TRANSFORM, batch_size=20, train=True, shuffle_buffer=0,
                         upsampling_factors=factors)
    keys = []
    for batch in reader:
        keys += batch["key"]
        if len(keys) >= n:
            return sum("lonely" in k for k in keys) / len(keys)


def test_training_samples_each_part_by_its_upsampling_factor(shards, tmp_path):
    small = one_sample_shard(tmp_path)
    spec = f"{shards}::{small}"
    assert shard_weights(spec, [1, 10]) == [1, 1, 1, 1, 1, 10]
    assert share_of_small(spec) < 0.09  # 1 of 25 samples: a drawn shard is read whole
    assert 0.20 < share_of_small(spec, [1, 10]) < 0.40  # 10 of 34
    with pytest.raises(UsageError, match="one non-negative factor per"):
        shard_weights(spec, [1])


def clear_image_shard(tmp_path):
    """One fully transparent 32x32 image: whatever the reader returns is the background it composited onto."""
    folder = tmp_path / "clear" / "x"
    folder.mkdir(parents=True)
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(folder / "clear.png")
    (folder / "clear.txt").write_text("nothing at all\n")
    write_shards(load_source(tmp_path / "clear"), tmp_path / "clear-shards", shard_size=5, progress=False)
    return tmp_path / "clear-shards"


def backgrounds(spec, background_p, seed=0):
    reader = ShardReader(spec, image_transform=TRANSFORM, batch_size=16, train=True, seed=seed, shuffle_buffer=0,
                         background_p=background_p)
    return next(iter(reader))["image"]  # [16, 3, 32, 32], normalised


def test_random_backgrounds_replace_white_for_their_share_reproducibly(tmp_path):
    spec = clear_image_shard(tmp_path)
    white = backgrounds(spec, 0.0)
    expected = TRANSFORM(Image.new("RGB", (32, 32), "white"))
    assert torch.allclose(white, expected.expand_as(white), atol=1e-5)  # composited onto white, not black
    mixed = backgrounds(spec, 0.5)
    is_white = [torch.allclose(img, white[0]) for img in mixed]
    assert 2 <= sum(is_white) <= 14  # about half, out of 16
    others = mixed[[not w for w in is_white]]
    assert len({round(img.mean().item(), 4) for img in others}) == len(others)  # each background its own
    assert torch.equal(mixed, backgrounds(spec, 0.5))  # the same seed draws the same backgrounds
    assert not torch.equal(mixed, backgrounds(spec, 0.5, seed=1))


def test_opaque_images_never_get_a_background(shards):
    def images(background_p):
        reader = ShardReader(shards, image_transform=TRANSFORM, batch_size=24, train=True, seed=0, shuffle_buffer=0,
                             background_p=background_p)
        return next(iter(reader))["image"]

    assert torch.equal(images(0.0), images(1.0))


def test_random_background_fills_a_non_square_image():
    import numpy as np

    from multimodal.data.backgrounds import random_background

    images = [random_background((48, 20), np.random.default_rng(seed)) for seed in range(12)]
    assert all(img.size == (48, 20) and img.mode == "RGB" for img in images)
    colours = {len(img.getcolors(48 * 20)) for img in images}
    assert 1 in colours and max(colours) > 900  # a solid colour, and noise with grain in nearly every pixel


def test_background_share_is_checked(shards):
    with pytest.raises(UsageError, match="from 0 to 1"):
        ShardReader(shards, image_transform=TRANSFORM, train=True, background_p=1.5)
    with pytest.raises(UsageError, match="training augmentation"):
        ShardReader(shards, image_transform=TRANSFORM, train=False, background_p=0.5)
