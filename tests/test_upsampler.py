"""The optional 2x upsampler stage of TextToImagePipeline, on tiny real UNets."""

import contextlib
import json

import pytest
import torch

import multimodal as mm
from multimodal.errors import UsageError
from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, sampling_scheduler
from multimodal_assets import ASSETS_DIR

SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}


def upsampler_json(tmp_path, low_res_size: int = 32) -> str:
    unet = {"sample_size": 2 * low_res_size, "in_channels": 6, "out_channels": 3,
            "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
            "block_out_channels": [16, 32], "layers_per_block": 1, "mid_block_type": "UNetMidBlock2D",
            "class_embed_type": "projection", "resnet_time_scale_shift": "scale_shift", "norm_num_groups": 8}
    path = tmp_path / f"upsampler-{low_res_size}.json"
    path.write_text(json.dumps({"low_res_size": low_res_size, "unet": unet, "scheduler": SCHEDULER}))
    return str(path)


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    torch.manual_seed(0)
    clip = mm.create_model("tiny")
    decoder, train_scheduler = create_decoder("unet-tiny", clip.embed_dim)
    upsampler, up_scheduler = create_decoder(upsampler_json(tmp_path_factory.mktemp("up")), clip.embed_dim)
    return clip, decoder, sampling_scheduler(train_scheduler.config), upsampler, sampling_scheduler(up_scheduler.config)


def test_the_upsampler_doubles_the_images_and_round_trips(parts, tmp_path):
    clip, decoder, scheduler, upsampler, up_scheduler = parts
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler, upsampler, up_scheduler)
    pipe.set_progress_bar_config(disable=True)
    kw = {"num_inference_steps": 3, "output_type": "np"}
    steps = []
    images = pipe("a red apple", generator=torch.Generator().manual_seed(0),
                  callback_on_step_end=lambda p, i, t, k: steps.append(i), **kw).images
    assert images.shape == (1, 64, 64, 3)
    assert steps == list(range(6)) and pipe.total_steps(3) == 6  # the upsampler's steps follow the decoder's
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.upsampler.config.low_res_size == 32
    again = loaded("a red apple", generator=torch.Generator().manual_seed(0), **kw).images
    assert abs(again - images).max() < 1e-5
    variations = loaded.image_variations(ASSETS_DIR / "examples" / "cat.jpg", num_images_per_prompt=1, **kw).images
    assert variations.shape == (1, 64, 64, 3)


def test_a_pipeline_without_upsampler_saves_and_loads_as_before(parts, tmp_path):
    clip, decoder, scheduler, *_ = parts
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler).save_pretrained(tmp_path / "plain")
    index = json.loads((tmp_path / "plain" / "model_index.json").read_text())
    assert index.get("upsampler") in (None, [None, None])
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "plain")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.upsampler is None
    assert loaded("a cat", num_inference_steps=2, output_type="np").images.shape == (1, 32, 32, 3)


def test_mismatched_or_half_given_upsampler_is_refused(parts, tmp_path):
    clip, decoder, scheduler, _, up_scheduler = parts
    wrong, _ = create_decoder(upsampler_json(tmp_path, low_res_size=16), clip.embed_dim)
    with pytest.raises(UsageError, match="takes 16 px images, the decoder makes 32 px"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler, wrong, up_scheduler)
    with pytest.raises(UsageError, match="needs its scheduler"):
        TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler, wrong, None)


def test_the_upsampler_learns_from_its_low_res_input(tmp_path):
    """Red and blue squares under one (null) condition: only the low-res input can tell which colour to draw."""
    from multimodal_train.objectives import DiffusionObjective

    torch.manual_seed(0)
    unet, scheduler = create_decoder(upsampler_json(tmp_path, low_res_size=8), 16)
    objective = DiffusionObjective(unet, unet, scheduler, cond_drop=0.0, ema_decay=0.9,
                                   autocast=contextlib.nullcontext)
    colours = torch.tensor([[230, 30, 30], [30, 30, 230]], dtype=torch.uint8)
    images = colours[torch.arange(8) % 2][:, None, None, :].expand(8, 16, 16, 3).contiguous()
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    for _ in range(60):
        objective({"images": images, "cond": torch.zeros(8, 16)}).backward()
        optimizer.step()
        optimizer.zero_grad()
    x0 = images[:2].permute(0, 3, 1, 2).float() / 127.5 - 1
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 999)
    with torch.inference_mode():
        eps = unet(torch.cat([x, objective.low_res(x0)], dim=1), t, encoder_hidden_states=None,
                   class_labels=torch.zeros(2, 16)).sample
    ab = scheduler.alphas_cumprod[999]
    pred = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
    red_minus_blue = (pred[:, 0] - pred[:, 2]).mean(dim=(1, 2))
    assert red_minus_blue[0] > 0 > red_minus_blue[1], red_minus_blue
    assert red_minus_blue[0] - red_minus_blue[1] > 0.4, red_minus_blue


def test_decoder_base_is_checked_before_training(tmp_path, parts):
    from dataclasses import replace

    from multimodal_train.config import DecoderSection
    from multimodal_train.decoder import check_section

    clip, decoder, scheduler, upsampler, up_scheduler = parts
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler).save_pretrained(tmp_path / "base")
    section = DecoderSection(config="x.json", base=str(tmp_path / "base"), prior="", eval_data="")
    check_section(upsampler, section)  # a 32 px decoder under a 32 -> 64 upsampler: fine
    with pytest.raises(UsageError, match="decoder.base is for upsamplers"):
        check_section(decoder, section)
    small, _ = create_decoder(upsampler_json(tmp_path, low_res_size=16), clip.embed_dim)
    with pytest.raises(UsageError, match="does not make the 16 px images"):
        check_section(small, section)
    with pytest.raises(UsageError, match="not a pipeline folder"):
        check_section(upsampler, replace(section, base=str(tmp_path)))


def test_add_upsampler_pairs_a_later_decoder_with_a_trained_upsampler(parts, tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    clip, decoder, scheduler, upsampler, up_scheduler = parts
    script = Path(__file__).resolve().parents[1] / "training" / "recipes" / "add_upsampler.py"
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler).save_pretrained(tmp_path / "base")
    TextToImagePipeline(clip, EmbeddingPrior(64, 64, 1), decoder, scheduler, upsampler,
                        up_scheduler).save_pretrained(tmp_path / "up")

    def add(donor: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), "--pipeline", str(tmp_path / "base"),
                               "--upsampler", str(tmp_path / donor), "--out", str(tmp_path / "out")],
                              capture_output=True, text=True, timeout=300)

    assert add("up").returncode == 0
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "out")
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a cat", num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)
    refused = add("base")
    assert refused.returncode != 0 and "has no upsampler stage" in refused.stderr
    other = mm.create_model("tiny")  # different random weights: another CLIP space
    TextToImagePipeline(other, EmbeddingPrior(64, 64, 1), decoder, scheduler, upsampler,
                        up_scheduler).save_pretrained(tmp_path / "other")
    refused = add("other")
    assert refused.returncode != 0 and "different CLIP models" in refused.stderr
