"""The decoder's conditioning path on a tiny real UNet: the condition must decide the image."""

import contextlib
import json
import logging

import pytest
import torch
from diffusers import UNet2DConditionModel

from multimodal.evaluation.generation import condition_sensitivity
from multimodal.generation import create_decoder, decoder_condition, denoise, set_condition_stats

TINY = {"sample_size": 16, "in_channels": 3, "out_channels": 3, "down_block_types": ["DownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "UpBlock2D"], "block_out_channels": [32, 32], "layers_per_block": 1,
        "mid_block_type": "UNetMidBlock2D", "resnet_time_scale_shift": "scale_shift", "norm_num_groups": 8}
SCHEDULER = {"num_train_timesteps": 1000, "beta_schedule": "squaredcos_cap_v2", "prediction_type": "epsilon"}
CONDITIONING = {  # how the embedding enters: raw projection, scaled projection, Kandinsky 2.2's Linear -> LayerNorm
    "projection": {"unet": {"class_embed_type": "projection"}},
    "scaled": {"unet": {"class_embed_type": "projection"}, "condition_scale": 8.0},
    "layernorm": {"unet": {"addition_embed_type": "image", "encoder_hid_dim_type": "image_proj",
                           "cross_attention_dim": 8}},
    "standardised": {"condition_norm": True, "unet": {"addition_embed_type": "image",
                                                      "encoder_hid_dim_type": "image_proj", "cross_attention_dim": 8}},
}


def decoder_json(tmp_path, kind: str):
    spec = CONDITIONING[kind]
    path = tmp_path / f"{kind}.json"
    path.write_text(json.dumps({**spec, "unet": {**TINY, **spec["unet"]}, "scheduler": SCHEDULER}))
    return str(path)


def two_images(n: int = 8, dim: int = 16):
    """A red and a blue square; condition e0 means red, e1 blue."""
    colours = torch.tensor([[230, 30, 30], [30, 30, 230]], dtype=torch.uint8)
    which = torch.arange(n) % 2
    images = colours[which][:, None, None, :].expand(n, 16, 16, 3).contiguous()
    return images, torch.eye(dim)[which]


@pytest.mark.parametrize("kind", ["scaled", "layernorm", "standardised"])
def test_the_condition_decides_the_image_after_a_few_steps(tmp_path, kind):
    from multimodal_train.objectives import DiffusionObjective

    torch.manual_seed(0)
    unet, scheduler = create_decoder(decoder_json(tmp_path, kind), 16)
    objective = DiffusionObjective(unet, unet, scheduler, cond_drop=0.1, ema_decay=0.9,
                                   autocast=contextlib.nullcontext)
    images, cond = two_images()
    if kind == "standardised":
        set_condition_stats(unet, cond)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=2e-3)
    unet.train()
    for _ in range(60):
        objective({"images": images, "cond": cond}).backward()
        optimizer.step()
        optimizer.zero_grad()
    unet.eval()
    after = condition_sensitivity(lambda x, t, c: denoise(unet, x, t, c), scheduler,
                                  images.permute(0, 3, 1, 2).float() / 127.5 - 1, cond)
    assert min(after.values()) > 0.02, after  # a trained noise prediction that still depends on the condition
    # denoise from pure noise at t=999 in one x0 estimate: the condition alone says which colour comes out
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    t = torch.full((2,), 999)
    with torch.inference_mode():
        eps = unet(x, t, **decoder_condition(unet, cond[:2])).sample
    ab = scheduler.alphas_cumprod[999]
    x0 = ((x - (1 - ab).sqrt() * eps) / ab.sqrt()).clamp(-1, 1)
    red_minus_blue = (x0[:, 0] - x0[:, 2]).mean(dim=(1, 2))
    assert red_minus_blue[0] > 0 > red_minus_blue[1], red_minus_blue  # red for e0, blue for e1
    assert red_minus_blue[0] - red_minus_blue[1] > 0.4, red_minus_blue


def test_condition_scale_round_trips_and_defaults_to_one(tmp_path):
    unet, _ = create_decoder(decoder_json(tmp_path, "scaled"), 16)
    unet.save_pretrained(tmp_path / "saved")
    loaded = UNet2DConditionModel.from_pretrained(tmp_path / "saved")
    assert loaded.config.condition_scale == 8.0
    cond = torch.eye(16)[:2]
    assert torch.equal(decoder_condition(loaded, cond)["class_labels"], 8.0 * cond)
    plain, _ = create_decoder(decoder_json(tmp_path, "projection"), 16)
    plain.save_pretrained(tmp_path / "plain")  # scale 1 is not written: diffusers would warn at every load
    assert "condition_scale" not in json.loads((tmp_path / "plain" / "config.json").read_text())
    assert torch.equal(decoder_condition(UNet2DConditionModel.from_pretrained(tmp_path / "plain"),
                                         cond)["class_labels"], cond)
    layernorm, _ = create_decoder(decoder_json(tmp_path, "layernorm"), 16)
    assert set(decoder_condition(layernorm, cond)) == {"encoder_hidden_states", "added_cond_kwargs"}
    assert "condition_scale" not in layernorm.config


def test_standardised_condition_round_trips_and_keeps_the_null_at_zero(tmp_path):
    unet, _ = create_decoder(decoder_json(tmp_path, "standardised"), 16)
    embeddings = torch.nn.functional.normalize(torch.randn(50, 16) + 3.0, dim=-1)  # one shared direction, like CLIP's
    set_condition_stats(unet, embeddings)
    unet.save_pretrained(tmp_path / "saved")
    seen = []  # what diffusers' loggers let through (they do not propagate to pytest's)
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logging.getLogger("diffusers").addHandler(handler)
    try:
        loaded = UNet2DConditionModel.from_pretrained(tmp_path / "saved")
    finally:
        logging.getLogger("diffusers").removeHandler(handler)
    assert not [m for m in seen if "condition_mean" in m]  # diffusers' unknown-key warning would print the lists
    cond = torch.cat([embeddings[:3], torch.zeros(1, 16)])
    normed = decoder_condition(loaded, cond)["added_cond_kwargs"]["image_embeds"]
    assert torch.allclose(normed[:3].mean(), torch.tensor(0.0), atol=0.5)
    assert normed[:3].std() > 0.5  # unit-scale per dimension, against ~0.1 for the raw unit-norm rows
    assert torch.equal(normed[3], torch.zeros(16))  # the null condition stays the zero vector
    assert torch.allclose(normed[:3], (embeddings[:3] - embeddings.mean(0)) / embeddings.std(0), atol=1e-5)


def test_a_warm_start_keeps_the_condition_statistics_its_weights_learned(tmp_path):
    from multimodal_train.decoder import load_init

    trained, _ = create_decoder(decoder_json(tmp_path, "standardised"), 16)
    set_condition_stats(trained, torch.nn.functional.normalize(torch.randn(50, 16) + 3.0, dim=-1))
    trained.save_pretrained(tmp_path / "trained")
    fresh, _ = create_decoder(decoder_json(tmp_path, "standardised"), 16)
    assert load_init(fresh, str(tmp_path / "trained"))
    assert fresh.config.condition_mean == trained.config.condition_mean
    assert fresh.config.condition_std == trained.config.condition_std
    other_clip, _ = create_decoder(decoder_json(tmp_path, "standardised"), 16)  # decoder.restandardise=true
    assert not load_init(other_clip, str(tmp_path / "trained"), keep_stats=False)  # the run computes its own
    assert other_clip.config.condition_mean != trained.config.condition_mean


def test_condition_statistics_and_warm_starts_refuse_what_cannot_work(tmp_path):
    from multimodal.errors import UsageError
    from multimodal_train.decoder import load_init

    unet, _ = create_decoder(decoder_json(tmp_path, "standardised"), 16)
    with pytest.raises(UsageError, match="at least 2 training embeddings"):
        set_condition_stats(unet, torch.randn(1, 16))
    plain, _ = create_decoder(decoder_json(tmp_path, "layernorm"), 16)
    plain.save_pretrained(tmp_path / "plain")
    with pytest.raises(UsageError, match="standardises its condition"):
        load_init(unet, str(tmp_path / "plain"))


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_sensitivity_in_image_space_is_not_capped_at_high_noise(prediction_type):
    """A decoder whose output implies the real image under its condition and a grey one without: the implied images
    differ by the whole image at every timestep, while noise space sees only sqrt(ab / (1 - ab)) of that."""
    from diffusers import DDPMScheduler

    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type)
    images = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    cond = torch.ones(4, 5)

    def predict(xt, t, c):  # the exact output for x0 = images when conditioned, x0 = 0 for the null condition
        ab = scheduler.alphas_cumprod[t][:, None, None, None]
        x0 = images[: len(xt)] * (c.abs().sum(-1) > 0)[:, None, None, None]
        eps = (xt - ab.sqrt() * x0) / (1 - ab).sqrt()
        return ab.sqrt() * eps - (1 - ab).sqrt() * x0 if prediction_type == "v_prediction" else eps

    out = condition_sensitivity(predict, scheduler, images, cond, timesteps=(500, 900))
    assert out["sensitivity_x0_t500"] == pytest.approx(1.0, abs=1e-3)
    assert out["sensitivity_x0_t900"] == pytest.approx(1.0, abs=1e-3)
    ab = scheduler.alphas_cumprod[900]
    assert out["sensitivity_t900"] < 1.5 * (ab / (1 - ab)).sqrt()  # noise space: capped near 0.16 here
