"""The retrieval decoder (a bank of training images beside the noisy input), on tiny real models."""

import contextlib
import json

import pytest
import torch

import multimodal as mm
from multimodal.errors import UsageError
from multimodal.evaluation.generation import condition_sensitivity
from multimodal.generation import EmbeddingPrior, NeighbourBank, TextToImagePipeline, create_decoder, sampling_scheduler

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "v_prediction"}
UNET = {"sample_size": 16, "out_channels": 3, "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"], "block_out_channels": [16, 32], "layers_per_block": 1,
        "mid_block_type": "UNetMidBlock2D", "resnet_time_scale_shift": "scale_shift", "norm_num_groups": 8,
        "addition_embed_type": "image", "encoder_hid_dim_type": "image_proj", "cross_attention_dim": 8}


def decoder_json(tmp_path, retrieval: bool = True, size: int = 16) -> str:
    spec = {"unet": {**UNET, "in_channels": 6 if retrieval else 3, "sample_size": size}, "scheduler": SCHEDULER,
            "condition_norm": True, **({"retrieval_top_k": 2} if retrieval else {})}
    path = tmp_path / f"decoder-{retrieval}-{size}.json"
    path.write_text(json.dumps(spec))
    return str(path)


def colour_squares(n: int = 8, dim: int = 64):
    """Red, blue, green and yellow squares; embedding e_i means colour i % 4."""
    colours = torch.tensor([[230, 30, 30], [30, 30, 230], [30, 200, 30], [230, 230, 30]], dtype=torch.uint8)
    which = torch.arange(n) % 4
    images = colours[which][:, None, None, :].expand(n, 16, 16, 3).contiguous()
    return images, torch.eye(dim)[which] + 0.01 * torch.randn(n, dim, generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def clip():
    torch.manual_seed(0)
    return mm.create_model("tiny")


def test_lookup_draws_among_the_nearest_and_gives_null_conditions_no_image():
    images, emb = colour_squares()
    bank = NeighbourBank.from_arrays(images, emb)
    nearest = bank.nearest(emb[:2], 2)
    assert set(nearest[0].tolist()) == {0, 4} and set(nearest[1].tolist()) == {1, 5}  # the two red, the two blue
    assert bank.nearest(emb[:1], 2, exclude_above=0.999)[0, 0] == 4  # itself left out: its copy comes first
    cond = torch.cat([emb[:1], torch.zeros(1, 64)])
    out = bank.lookup(cond, 1)
    assert out.shape == (2, 3, 16, 16)
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([230, 30, 30]) / 127.5 - 1) and not out[1].any()
    from PIL import Image

    copies = bank.copy_distance([Image.fromarray(images[0].numpy()), Image.new("RGB", (32, 32), "white")])
    assert copies[0] < 1e-6 < 0.3 < copies[1]  # a bank image is its own copy; white is far from every square
    with pytest.raises(UsageError, match="embeddings"):
        NeighbourBank.from_arrays(images, emb[:3])


def test_the_pipeline_needs_the_bank_of_a_retrieval_decoder_and_only_then(tmp_path, clip):
    retrieval, scheduler = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    plain, _ = create_decoder(decoder_json(tmp_path, retrieval=False), clip.embed_dim)
    images, emb = colour_squares()
    bank = NeighbourBank.from_arrays(images, emb, clip.fingerprint())
    sampler = sampling_scheduler(scheduler.config)
    with pytest.raises(UsageError, match="pass the bank"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), retrieval, sampler)
    with pytest.raises(UsageError, match="retrieval decoder"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), plain, sampler, bank=bank)
    other = NeighbourBank.from_arrays(images, emb, "0" * 64)
    with pytest.raises(UsageError, match="another CLIP"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), retrieval, sampler, bank=other)
    with pytest.raises(UsageError, match="in_channels must be 6"):
        bad = tmp_path / "bad.json"
        spec = json.loads(open(decoder_json(tmp_path)).read())
        bad.write_text(json.dumps({**spec, "unet": {**UNET, "in_channels": 3}}))
        create_decoder(str(bad), clip.embed_dim)


def test_a_trained_retrieval_decoder_uses_its_neighbour_and_round_trips(tmp_path, clip):
    from multimodal_train.objectives import DiffusionObjective

    torch.manual_seed(0)
    unet, scheduler = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares()
    bank = NeighbourBank.from_arrays(images, emb, clip.fingerprint())
    from multimodal.generation import set_condition_stats

    set_condition_stats(unet, emb)
    neighbours = torch.stack([bank.nearest(e[None], 1, exclude_above=0.999)[0] for e in emb])  # the other square
    objective = DiffusionObjective(unet, unet, scheduler, cond_drop=0.1, ema_decay=0.9,
                                   autocast=contextlib.nullcontext, bank=bank)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    for _ in range(40):
        objective({"images": images, "cond": emb, "neighbours": neighbours}).backward()
        optimizer.step()
        optimizer.zero_grad()
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), unet, sampling_scheduler(scheduler.config), bank=bank)
    pipe.set_progress_bar_config(disable=True)
    pipe.eval_mode()
    after = condition_sensitivity(pipe.predictor(), scheduler, images.permute(0, 3, 1, 2).float() / 127.5 - 1, emb)
    assert min(after.values()) > 0.05, after  # the null condition also takes the neighbour away
    cond = emb[:2]
    kw = {"num_inference_steps": 4, "guidance_scale": 2.0, "output_type": "np"}
    made = pipe._output(pipe.sample(cond, torch.zeros_like(cond), 4, 2.0, torch.Generator().manual_seed(0), 16, 16),
                        "np", True).images
    red_minus_blue = made[..., 0].mean(axis=(1, 2)) - made[..., 2].mean(axis=(1, 2))
    assert red_minus_blue[0] > 0.2 > -0.2 > red_minus_blue[1], red_minus_blue  # a red square for e0, blue for e1
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.bank.images.dtype == torch.uint8 and torch.equal(loaded.bank.images, bank.images)
    again = pipe("a red apple", generator=torch.Generator().manual_seed(0), **kw).images
    assert abs(loaded("a red apple", generator=torch.Generator().manual_seed(0), **kw).images - again).max() < 1e-5


def test_a_plain_decoder_warm_starts_a_retrieval_decoder(tmp_path, clip):
    from multimodal_train.decoder import load_init

    plain, _ = create_decoder(decoder_json(tmp_path, retrieval=False), clip.embed_dim)
    plain.save_pretrained(tmp_path / "plain")
    retrieval, _ = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    load_init(retrieval, str(tmp_path / "plain"))
    x, t, cond = torch.randn(2, 3, 16, 16), torch.tensor([10, 500]), torch.randn(2, 64)
    from multimodal.generation import denoise

    with torch.inference_mode():  # zero weights on the new channels: whatever is beside x, the plain decoder's output
        assert torch.allclose(denoise(retrieval, x, t, cond, torch.randn(2, 3, 16, 16)), denoise(plain, x, t, cond),
                              atol=1e-5)
    from multimodal.evaluation.generation import decoder_sensitivities

    images, emb = colour_squares()
    scheduler = sampling_scheduler(json.loads(open(decoder_json(tmp_path)).read())["scheduler"])
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), retrieval, scheduler,
                               bank=NeighbourBank.from_arrays(images, emb, clip.fingerprint()))
    pixels = images.permute(0, 3, 1, 2).float() / 127.5 - 1
    unused = decoder_sensitivities(pipe, scheduler, pixels, emb)  # the neighbour's weights are zero: no use
    assert sorted(k for k in unused if k.startswith("neighbour_use")) == sorted(
        f"neighbour_use{space}_t{t}" for space in ("", "_x0") for t in (100, 300, 500, 700, 900))
    assert max(v for k, v in unused.items() if k.startswith("neighbour_use")) < 1e-5
    with torch.no_grad():
        retrieval.conv_in.weight[:, 3:] = 0.1 * torch.randn_like(retrieval.conv_in.weight[:, 3:])
    used = decoder_sensitivities(pipe, scheduler, pixels, emb)
    assert min(v for k, v in used.items() if k.startswith("neighbour_use")) > 1e-3
    plain_pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), plain, scheduler)
    assert not any(k.startswith("neighbour_use") for k in decoder_sensitivities(plain_pipe, scheduler, pixels, emb))


def test_jitter_keeps_the_image_up_to_scale_shift_and_flip():
    from multimodal_train.objectives import jitter

    images = torch.rand(6, 3, 16, 16) * 2 - 1
    still = jitter(images, scale=0.0, shift=0.0)
    for a, b in zip(images, still):  # without scale or shift: the image itself or its mirror image
        assert torch.allclose(b, a, atol=1e-5) or torch.allclose(b, a.flip(-1), atol=1e-5)
    torch.manual_seed(0)
    flips = sum(torch.allclose(b, a.flip(-1), atol=1e-5) for a, b in zip(images, jitter(images, 0.0, 0.0)))
    assert 0 < flips < len(images)  # some mirrored, some not
    assert torch.allclose(jitter(images, 0.0, 0.0, flip=False), images, atol=1e-5)  # flip=False: never mirrored
    moved = jitter(images)
    assert moved.shape == images.shape and not torch.allclose(moved, images, atol=1e-3)


def test_retrieval_scale_multiplies_the_neighbour_wherever_the_decoder_runs(tmp_path, clip):
    """A decoder with retrieval_scale s computes what the same decoder at scale 1 does with s times its neighbour
    weights: in denoise, in the pipeline's sampling loop, and after a save and load (the scale is in its config)."""
    spec = json.loads(open(decoder_json(tmp_path)).read())
    scaled_json = tmp_path / "scaled.json"
    scaled_json.write_text(json.dumps({**spec, "retrieval_scale": 4.0}))
    torch.manual_seed(0)
    scaled, scheduler = create_decoder(str(scaled_json), clip.embed_dim)
    plain, _ = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    weights = scaled.state_dict()
    weights["conv_in.weight"] = torch.cat([weights["conv_in.weight"][:, :3], 4 * weights["conv_in.weight"][:, 3:]], 1)
    plain.load_state_dict(weights)
    scaled.save_pretrained(tmp_path / "scaled")
    loaded = type(scaled).from_pretrained(tmp_path / "scaled")
    assert loaded.config.retrieval_scale == 4.0
    from multimodal.generation import denoise

    x, beside = torch.randn(2, 3, 16, 16), torch.randn(2, 3, 16, 16)
    t, cond = torch.tensor([10, 500]), torch.randn(2, 64)
    with torch.inference_mode():
        want = denoise(plain, x, t, cond, beside)
        assert not torch.allclose(denoise(plain, x, t, cond, 0.25 * beside), want, atol=1e-4)
        for unet in (scaled, loaded):
            assert torch.allclose(denoise(unet, x, t, cond, beside), want, atol=1e-5)
    from multimodal_train.decoder import load_init

    restarted, _ = create_decoder(decoder_json(tmp_path), clip.embed_dim)  # scale 1, started from the scale-4 one
    load_init(restarted, str(tmp_path / "scaled"))
    with torch.inference_mode():
        assert torch.allclose(denoise(restarted, x, t, cond, beside), want, atol=1e-5)
    images, emb = colour_squares()
    bank = NeighbourBank.from_arrays(images, emb, clip.fingerprint())
    made = [TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), unet, sampling_scheduler(scheduler.config), bank=bank)
            .sample(emb[:2], torch.zeros(2, 64), 3, 2.0, torch.Generator().manual_seed(0), 16, 16)
            for unet in (scaled, plain)]
    assert torch.allclose(made[0], made[1], atol=1e-4)


def test_a_bank_smaller_than_the_decoder_is_upscaled_where_the_decoder_sees_it(tmp_path, clip):
    """A 32 px decoder with a 16 px bank (a 64 px decoder ships a 32 px bank: a quarter of the bytes): the neighbour
    is upscaled bicubic wherever it enters, in training and in sampling; a bank whose size does not divide the
    decoder's is refused."""
    from multimodal.generation import denoise, upsampler_input
    from multimodal_train.objectives import DiffusionObjective

    torch.manual_seed(0)
    unet, scheduler = create_decoder(decoder_json(tmp_path, size=32), clip.embed_dim)
    small, emb = colour_squares()  # 16 px
    bank = NeighbourBank.from_arrays(small, emb, clip.fingerprint())
    x, t, cond, beside = torch.randn(2, 3, 32, 32), torch.tensor([10, 500]), emb[:2], bank.pixels(torch.tensor([0, 1]))
    with torch.inference_mode():
        assert torch.allclose(denoise(unet, x, t, cond, beside), denoise(unet, x, t, cond, upsampler_input(beside, 32)))
    big = small.repeat_interleave(2, dim=1).repeat_interleave(2, dim=2)  # the same squares at 32 px
    objective = DiffusionObjective(unet, unet, scheduler, cond_drop=0.1, ema_decay=0.9, autocast=contextlib.nullcontext,
                                   bank=bank, self_neighbour=0.5)
    neighbours = torch.stack([bank.nearest(e[None], 1, exclude_above=0.999)[0] for e in emb])
    loss = objective({"images": big, "cond": emb, "neighbours": neighbours})
    loss.backward()
    assert torch.isfinite(loss) and unet.conv_in.weight.grad[:, 3:].abs().sum() > 0  # the neighbour input learns
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), unet, sampling_scheduler(scheduler.config), bank=bank)
    made = pipe.sample(cond, torch.zeros_like(cond), 2, 2.0, torch.Generator().manual_seed(0), 32, 32)
    assert made.shape == (2, 3, 32, 32)
    tiny_decoder, _ = create_decoder(decoder_json(tmp_path, size=8), clip.embed_dim)
    with pytest.raises(UsageError, match="must divide"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), tiny_decoder, sampling_scheduler(scheduler.config),
                            bank=bank)


def test_neighbour_drop_takes_the_image_beside_away_and_keeps_the_condition(tmp_path, clip):
    from multimodal_train.objectives import DiffusionObjective

    torch.manual_seed(0)
    unet, scheduler = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares()
    bank = NeighbourBank.from_arrays(images, emb, clip.fingerprint())
    neighbours = torch.stack([bank.nearest(e[None], 2, exclude_above=0.999)[0] for e in emb])

    def step(drop: float, cond: torch.Tensor) -> tuple[float, float]:
        unet.zero_grad()
        torch.manual_seed(1)
        objective = DiffusionObjective(unet, unet, scheduler, cond_drop=0.0, ema_decay=0.9,
                                       autocast=contextlib.nullcontext, bank=bank, neighbour_drop=drop)
        loss = objective({"images": images, "cond": cond, "neighbours": neighbours})
        loss.backward()
        return loss.item(), unet.conv_in.weight.grad[:, 3:].abs().sum().item()

    assert step(0.0, emb)[1] > 0  # the image beside is seen and its input learns
    dropped, beside_grad = step(1.0, emb)
    assert beside_grad == 0  # every sample saw the zero image
    assert dropped != step(1.0, torch.zeros_like(emb))[0]  # and still its condition


def test_neighbour_pool_sets_how_many_nearest_others_a_decoder_trains_beside(tmp_path, clip):
    from multimodal_train.config import DecoderSection
    from multimodal_train.decoder import check_section, neighbour_bank

    unet, _ = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares()
    cache = {"images": images.numpy(), "image_emb": emb.numpy(), "clip_hash": clip.fingerprint()}
    assert neighbour_bank(unet, DecoderSection(), cache)[1].shape == (8, 2)  # retrieval_top_k, as it samples
    _, neighbours = neighbour_bank(unet, DecoderSection(neighbour_pool=5), cache)
    assert neighbours.shape == (8, 5) and not (neighbours == torch.arange(8)[:, None]).any()  # never itself
    with pytest.raises(UsageError, match="smaller than the 8 training images"):
        neighbour_bank(unet, DecoderSection(neighbour_pool=8), cache)
    plain, _ = create_decoder(decoder_json(tmp_path, retrieval=False), clip.embed_dim)
    with pytest.raises(UsageError, match="for retrieval decoders"):
        check_section(plain, DecoderSection(neighbour_drop=0.3))
    with pytest.raises(UsageError, match="for retrieval decoders"):
        check_section(plain, DecoderSection(neighbour_other_concepts=True))


def test_neighbour_other_concepts_never_trains_beside_the_same_caption(tmp_path, clip):
    from multimodal_train.config import DecoderSection
    from multimodal_train.decoder import neighbour_bank

    unet, _ = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares()  # i and i + 4 are copies of one colour, so each has 6 others
    captions = ["a", "A", "b", "b", "c", "C", "d", "d"]  # four concepts, each drawn twice
    cache = {"images": images.numpy(), "image_emb": emb.numpy(), "clip_hash": clip.fingerprint(), "captions": captions}
    plain = neighbour_bank(unet, DecoderSection(neighbour_pool=6), cache)[1]
    assert (plain == torch.tensor([1, 0, 3, 2, 5, 4, 7, 6])[:, None]).any(1).all()  # each with its concept's other
    others = neighbour_bank(unet, DecoderSection(neighbour_pool=5, neighbour_other_concepts=True), cache)[1]
    assert others.shape == (8, 5)
    for i, row in enumerate(others.tolist()):
        assert i not in row and all(captions[j].lower() != captions[i].lower() for j in row)
    with pytest.raises(UsageError, match="fewer than the 6 nearest"):
        neighbour_bank(unet, DecoderSection(neighbour_pool=6, neighbour_other_concepts=True), cache)


def test_extend_bank_adds_training_shards_embedded_by_the_pipelines_clip(tmp_path, clip):
    import subprocess
    import sys
    from pathlib import Path

    from conftest import WORDS, make_image

    from multimodal.data.sources import SourceItem
    from multimodal.data.writer import write_shards

    retrieval, scheduler = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares(dim=clip.embed_dim)
    bank = NeighbourBank.from_arrays(images, emb, clip.fingerprint())
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), retrieval, sampling_scheduler(scheduler.config),
                        bank=bank).save_pretrained(tmp_path / "pipe")
    items = [SourceItem(f"s{i}", WORDS[i], str(make_image(tmp_path / f"{i}.png", seed=i)), [WORDS[i]])
             for i in range(5)]
    write_shards(items, tmp_path / "more" / "train", progress=False)
    script = Path(__file__).resolve().parents[1] / "training" / "recipes" / "extend_bank.py"

    def extend(data: Path, pipeline: str = "pipe") -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), "--pipeline", str(tmp_path / pipeline), "--data",
                               str(data), "--out", str(tmp_path / "out")], capture_output=True, text=True, timeout=300)

    done = extend(tmp_path / "more" / "train")
    assert done.returncode == 0, done.stderr
    out = TextToImagePipeline.from_pretrained(tmp_path / "out")
    assert len(out.bank.images) == 13 and torch.equal(out.bank.images[:8], bank.images)
    assert torch.equal(out.bank.embeddings[:8], bank.embeddings)
    from multimodal.data.samples import iter_decoded

    added = clip.embed_images([sample.image for sample in iter_decoded(str(tmp_path / "more" / "train"))])
    assert torch.allclose(out.bank.embeddings[8:], added.half().float(), atol=1e-3)  # the pipeline's CLIP, unit norm
    assert out.bank.config.clip_fingerprint == clip.fingerprint()
    refused = extend(tmp_path / "more" / "eval")
    assert refused.returncode != 0 and "training images only" in refused.stderr


def test_variations_from_the_picture_keep_it_and_see_it_rather_than_a_bank_image(tmp_path, clip):
    """strength < 1 starts each variation from the picture noised part-way down the schedule (SDEdit), and a
    retrieval decoder sees the picture itself beside it, not a bank image; strength 1 draws from the embedding."""
    import numpy as np
    from PIL import Image

    torch.manual_seed(0)
    unet, scheduler = create_decoder(decoder_json(tmp_path), clip.embed_dim)
    images, emb = colour_squares()
    picture = Image.new("RGB", (24, 16), (230, 30, 30))
    picture.paste((30, 30, 230), (12, 0, 24, 16))  # red left, blue right; centre-cropped to 16 x 16

    def variations(bank_images: torch.Tensor, strength: float) -> np.ndarray:
        bank = NeighbourBank.from_arrays(bank_images, emb, clip.fingerprint())
        pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), unet, sampling_scheduler(scheduler.config),
                                   bank=bank)
        pipe.set_progress_bar_config(disable=True)
        return pipe.image_variations(picture, num_images_per_prompt=2, num_inference_steps=8, strength=strength,
                                     generator=torch.Generator().manual_seed(0), output_type="np").images

    target = np.asarray(picture.crop((4, 0, 20, 16)), np.float32) / 255
    other_bank = 255 - images
    near, far = variations(images, 0.25), variations(images, 1.0)
    assert np.abs(near - target).mean() < 0.5 * np.abs(far - target).mean()
    assert np.array_equal(near, variations(other_bank, 0.25))  # the bank is not looked at: the picture is beside
    assert not np.array_equal(far, variations(other_bank, 1.0))
    for strength, message in ((0.0, "above 0"), (1.5, "above 0"), (float("nan"), "above 0"), (0.1, "none to run")):
        with pytest.raises(UsageError, match=message):
            variations(images, strength)
