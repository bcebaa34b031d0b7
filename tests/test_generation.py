"""The decoder, prior and TextToImagePipeline on tiny real components (a seeded tiny CLIP, a 32 px UNet)."""

import inspect
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler, UniPCMultistepScheduler
from PIL import Image
from torch.nn import functional as F

import multimodal as mm
from multimodal.data.images import ImageError
from multimodal.errors import UsageError
from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, guided_steps, sampling_scheduler
from multimodal_train.embedding_cache import cache_path


@pytest.fixture(scope="module")
def pipe():
    torch.manual_seed(0)
    clip = mm.create_model("tiny")
    unet, train_scheduler = create_decoder("unet-tiny", clip.embed_dim)
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 128, 2), unet,
                               sampling_scheduler(train_scheduler.config))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def generate(pipe, **kw):
    kw = {"num_inference_steps": 4, "generator": torch.Generator().manual_seed(0), "output_type": "np", **kw}
    return pipe("a red apple", **kw).images


def test_outputs_and_step_callback(pipe):
    steps = []
    out = pipe(["a red apple", "a blue car"], num_images_per_prompt=2, num_inference_steps=4,
               callback_on_step_end=lambda p, i, t, kw: steps.append(i))
    assert len(out.images) == 4 and out.images[0].size == (32, 32)
    assert steps == [0, 1, 2, 3]


def reference_loop(pipe, scheduler, guidance_scale: float, steps: int = 4, guided_steps: int = 4) -> np.ndarray:
    """diffusers' own classifier-free guidance loop, written out with the pipeline's parts (one branch at a time),
    guided in the first `guided_steps` steps."""
    scheduler.set_timesteps(steps)
    x = torch.randn((1, 3, 32, 32), generator=torch.Generator().manual_seed(0)) * scheduler.init_noise_sigma
    with torch.inference_mode():
        cond = pipe.prior(pipe.clip.embed_texts(["a red apple"]))
        for i, t in enumerate(scheduler.timesteps):
            inp = scheduler.scale_model_input(x, t)
            eps = pipe.decoder(inp, t, encoder_hidden_states=None, class_labels=cond).sample
            if guidance_scale != 1 and i < guided_steps:
                null = torch.zeros_like(cond)
                eps_uncond = pipe.decoder(inp, t, encoder_hidden_states=None, class_labels=null).sample
                eps = eps_uncond + guidance_scale * (eps - eps_uncond)
            x = scheduler.step(eps, t, x).prev_sample
    return (x / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).numpy()


def test_guidance_scale_one_is_plain_conditional_sampling(pipe):
    """Scale 1 must equal a plain diffusers loop on the conditional branch alone."""
    images = generate(pipe, guidance_scale=1.0)
    plain = reference_loop(pipe, DPMSolverMultistepScheduler.from_config(pipe.scheduler.config), 1.0)
    assert np.abs(images - plain).max() < 1e-6
    assert np.abs(generate(pipe, guidance_scale=3.0) - images).max() > 1e-4  # guidance does change the result


def test_guidance_cutoff_guides_the_first_steps_only(pipe):
    """With `guidance_cutoff` 0.5, the first half of the steps is guided and the rest is the conditional branch
    alone, exactly as the written-out loop does; out-of-range shares are refused."""
    full = generate(pipe, guidance_scale=3.0)
    pipe.guidance_cutoff = 0.5
    try:
        half = generate(pipe, guidance_scale=3.0)
        pipe.guidance_cutoff = 0.0
        with pytest.raises(UsageError, match="guidance_cutoff"):
            generate(pipe)
        with pytest.raises(UsageError, match="guidance_cutoff"):  # the path reconstruction metrics take
            pipe.sample(torch.ones(1, pipe.clip.embed_dim), torch.zeros(1, pipe.clip.embed_dim), 4, 3.0, None, 32, 32)
    finally:
        pipe.guidance_cutoff = 1.0
    scheduler = DPMSolverMultistepScheduler.from_config(pipe.scheduler.config)
    assert np.abs(half - reference_loop(pipe, scheduler, 3.0, guided_steps=2)).max() < 1e-5
    assert np.abs(half - full).max() > 1e-4
    assert np.abs(full - reference_loop(pipe, scheduler, 3.0)).max() < 1e-5
    assert [guided_steps(*case) for case in ((25, 0.28), (20, 0.5), (20, 0.01), (4, 1.0))] == [7, 10, 1, 4]


def test_bf16_sampling_follows_float32_and_leaves_the_weights_alone(pipe):
    fp32 = generate(pipe, guidance_scale=3.0)
    if not pipe.enable_bf16():
        pytest.skip("this CPU has no bf16 kernels: enable_bf16() leaves the pipeline in float32")
    try:
        bf16 = generate(pipe, guidance_scale=3.0)
    finally:
        pipe.enable_bf16(False)
    assert pipe.decoder.dtype == torch.float32 and bf16.dtype == fp32.dtype
    diff = np.abs(bf16 - fp32)
    assert diff.max() > 0 and diff.mean() < 0.02  # computed in bf16, and still the same image
    assert np.array_equal(generate(pipe, guidance_scale=3.0), fp32)  # and off again


def test_the_cli_and_the_api_share_one_default_guidance(pipe, tmp_path):
    """`multimodal generate` without --guidance samples at the pipeline's DEFAULT_GUIDANCE, like the Python API."""
    from multimodal.cli import main
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE

    assert inspect.signature(TextToImagePipeline.__call__).parameters["guidance_scale"].default == DEFAULT_GUIDANCE
    pipe.save_pretrained(tmp_path / "pipe")
    outputs = {}
    runs = {"default": [], "explicit": ["--guidance", str(DEFAULT_GUIDANCE)], "one": ["--guidance", "1"]}
    for name, extra in runs.items():
        assert main(["generate", "a red apple", "--model", str(tmp_path / "pipe"), "--steps", "3", "--seed", "0",
                     "--out", str(tmp_path / name), *extra]) == 0
        (png,) = (tmp_path / name).glob("*.png")
        outputs[name] = np.asarray(Image.open(png), dtype=np.int16)
    assert np.array_equal(outputs["default"], outputs["explicit"])
    assert np.abs(outputs["default"] - outputs["one"]).max() > 0
    assert main(["generate", "a red apple", "--model", str(tmp_path / "pipe"), "--steps", "3", "--seed", "0",
                 "--out", str(tmp_path / "big"), "--upscale", "3"]) == 0
    (png,) = (tmp_path / "big").glob("*.png")
    small = Image.fromarray(outputs["default"].astype(np.uint8))
    want = small.resize((small.width * 3, small.height * 3), Image.LANCZOS)  # the same image, enlarged
    assert np.array_equal(np.asarray(Image.open(png)), np.asarray(want))


def test_save_load_round_trip_same_images(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["clip"] == ["multimodal.models.clip", "CLIPModel"]
    assert index["decoder"][1] == "UNet2DConditionModel"
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    # equal up to float rounding: the reloaded weights sit at other memory alignments (safetensors), so oneDNN
    # picks other kernels and the prior's output differs by ~1e-7 (cloning them makes it exact)
    assert np.abs(generate(pipe) - generate(loaded)).max() < 1e-5
    assert np.array_equal(pipe.image_variations(_png(tmp_path), output_type="np",
                                                num_inference_steps=3, generator=torch.Generator().manual_seed(1),
                                                num_images_per_prompt=2).images,
                          loaded.image_variations(_png(tmp_path), output_type="np", num_inference_steps=3,
                                                  generator=torch.Generator().manual_seed(1),
                                                  num_images_per_prompt=2).images)


def test_a_clip_link_checked_out_as_a_file_still_loads(pipe, tmp_path):
    """git without symlinks (Windows) writes the shipped pipeline's clip/ link as a text file holding its target."""
    pipe.save_pretrained(tmp_path / "pipe")
    (tmp_path / "pipe" / "clip").rename(tmp_path / "clip")
    (tmp_path / "pipe" / "clip").write_text("../clip")
    loaded = TextToImagePipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert loaded.clip.fingerprint() == pipe.clip.fingerprint()
    assert np.abs(generate(pipe) - generate(loaded)).max() < 1e-5


def _png(tmp_path):
    from conftest import make_image

    path = tmp_path / "img.png"
    return path if path.exists() else make_image(path, seed=3, size=(48, 40))


@pytest.mark.parametrize("scheduler_cls", [UniPCMultistepScheduler, DDIMScheduler, EulerDiscreteScheduler])
def test_any_diffusers_scheduler_can_be_swapped_in(pipe, scheduler_cls):
    original = pipe.scheduler
    try:
        pipe.scheduler = scheduler_cls.from_config(original.config)
        images = generate(pipe, guidance_scale=3.0)
        reference = reference_loop(pipe, scheduler_cls.from_config(original.config), 3.0)
        assert images.shape == (1, 32, 32, 3)
        # equal up to float rounding: the pipeline runs both guidance branches as one batch
        assert np.abs(images - reference).max() < 1e-4
    finally:
        pipe.scheduler = original


def test_bad_inputs_get_clear_errors(pipe, tmp_path):
    with pytest.raises(ValueError, match="prompt must be a non-empty string"):
        pipe("   ")
    with pytest.raises(ValueError, match="num_inference_steps"):
        pipe("a cat", num_inference_steps=0)
    with pytest.raises(ValueError, match="height must be a multiple of 8"):
        pipe("a cat", height=100000)
    with pytest.raises(ValueError, match="num_images_per_prompt"):
        pipe("a cat", num_images_per_prompt=1000)
    text_file = tmp_path / "notes.txt"
    text_file.write_text("not an image")
    with pytest.raises(ImageError, match="notes.txt"):
        pipe.image_variations(text_file)


def test_a_decoder_step_lowers_the_loss_on_a_fixed_batch():
    torch.manual_seed(0)
    unet, scheduler = create_decoder("unet-tiny", 16)
    x0, cond = torch.rand(8, 3, 32, 32) * 2 - 1, F.normalize(torch.randn(8, 16), dim=-1)
    noise, t = torch.randn_like(x0), torch.randint(0, 1000, (8,))
    noisy = scheduler.add_noise(x0, noise, t)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-3)
    losses = []
    for _ in range(8):
        loss = F.mse_loss(unet(noisy, t, encoder_hidden_states=None, class_labels=cond).sample, noise)
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9, losses


def test_prior_beats_the_text_embedding_baseline_on_what_it_learned():
    from multimodal_train.prior import prior_metrics

    torch.manual_seed(0)
    text = F.normalize(torch.randn(64, 16), dim=-1)
    image = F.normalize(text @ torch.randn(16, 16) + 0.1 * torch.randn(64, 16), dim=-1)  # a hidden linear map
    prior = EmbeddingPrior(16, 64, 2, dropout=0.0)
    opt = torch.optim.AdamW(prior.parameters(), lr=3e-3)
    for _ in range(300):
        loss = (1 - F.cosine_similarity(prior(text), image)).mean()
        loss.backward()
        opt.step()
        opt.zero_grad()
    metrics = prior_metrics(prior.eval(), text, image)
    assert metrics["prior/cosine"] > 0.9 > metrics["text_baseline/cosine"]


def test_train_prior_then_decoder_then_evaluate(tmp_path, monkeypatch):
    """The CLI path end to end on toy data: prior, decoder with EMA and sample grids, pipeline, eval generation."""
    from conftest import WORDS, make_image

    from multimodal.data.sources import SourceItem
    from multimodal.data.writer import write_shards

    items = [SourceItem(f"s{i}", WORDS[i % 8], str(make_image(tmp_path / f"{i}.png", seed=i)), [WORDS[i % 8]])
             for i in range(40)]
    write_shards(items[:32], tmp_path / "train", progress=False)
    write_shards(items[32:], tmp_path / "eval", progress=False)
    torch.manual_seed(0)
    clip = mm.create_model("tiny").save_pretrained(tmp_path / "clip")
    common = [f"data.train={tmp_path / 'train'}", "threads=2"]
    prior_keys = [f"prior.clip={clip}", f"prior.eval_data={tmp_path / 'eval'}", f"prior.cache_dir={tmp_path / 'cache'}"]

    def train(what, run, *extra):
        cmd = [sys.executable, "-m", "multimodal", "train", what, "--config", "decoder-tiny", f"run_dir={run}",
               *common, *extra]
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
        return result

    train("prior", tmp_path / "prior", "steps=10", *prior_keys)
    prior_eval = [json.loads(line) for line in (tmp_path / "prior" / "metrics.jsonl").read_text().splitlines()]
    assert "eval/prior/cosine" in prior_eval[-1] and "eval/text_baseline/cosine" in prior_eval[-1]
    result = train("decoder", tmp_path / "decoder", "steps=6", "decoder.sample_every=3", "log_every=3",
                   f"decoder.clip={clip}", f"decoder.cache_dir={tmp_path / 'cache'}",
                   f"decoder.prior={tmp_path / 'prior' / 'final'}")
    assert re.search(r"the embeddings of train-64px-\w{8}\.npz, pixels at 32 px", result.stderr)  # no CLIP pass
    small, big = (np.load(cache_path(tmp_path / "cache", tmp_path / "train", "train", n)) for n in (32, 64))
    assert np.array_equal(small["image_emb"], big["image_emb"]) and small["images"].shape[1:] == (32, 32, 3)
    assert cache_path(tmp_path, "a/train", "eval", 32) != cache_path(tmp_path, "b/train", "eval", 32)
    assert sorted(p.name for p in (tmp_path / "decoder" / "samples").iterdir()) == \
        ["final.png", "step-00000003.png", "step-00000006.png"]
    pipeline = tmp_path / "decoder" / "final" / "pipeline"
    run = subprocess.run([sys.executable, "-m", "multimodal", "eval", "generation", "--model", str(pipeline),
                          "--data", str(tmp_path / "eval"), "--num-prompts", "4", "--steps", "2,3",
                          "--guidance", "1,2", "--out", str(tmp_path / "gen.json")],
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads((tmp_path / "gen.json").read_text())["results"]
    assert [(r["steps"], r["guidance_scale"]) for r in rows] == [(2, 1.0), (2, 2.0), (3, 1.0), (3, 2.0)]
    assert all(0 <= r["retag_accuracy"] <= 1 and r["frechet_clip_distance"] >= 0 for r in rows)
    assert all(sum(r["retag_hits"].values()) == round(4 * r["retag_accuracy"]) for r in rows)  # one per prompt
    upsampler_on_top_of_the_pipeline(tmp_path, clip, pipeline, train)
    retrieval_decoder_from_the_plain_one(tmp_path, clip, train)
    rewritten_shards_are_embedded_again(tmp_path, clip, items)
    a_resaved_clip_keeps_its_caches(clip)
    warm_start_from_the_cache_without_loading_the_clip(tmp_path, clip, monkeypatch)  # last: it patches the loader


def upsampler_on_top_of_the_pipeline(tmp_path, clip, pipeline, train):
    """An upsampler run (decoder.base) writes the base pipeline completed by it; it refuses a prior."""
    from test_upsampler import upsampler_json

    keys = ["steps=4", "log_every=2", f"decoder.config={upsampler_json(tmp_path)}", f"decoder.clip={clip}",
            f"decoder.cache_dir={tmp_path / 'cache'}", "decoder.prior=", f"decoder.base={pipeline}"]
    train("decoder", tmp_path / "up", "decoder.sample_every=2", *keys)
    assert (tmp_path / "up" / "samples" / "step-00000002.png").is_file()
    pipe = TextToImagePipeline.from_pretrained(tmp_path / "up" / "final" / "pipeline")
    assert pipe("a cat", num_inference_steps=2, output_type="np").images.shape == (1, 64, 64, 3)
    refused = subprocess.run([sys.executable, "-m", "multimodal", "train", "decoder", "--config", "decoder-tiny",
                              f"run_dir={tmp_path / 'up-bad'}", *keys, f"decoder.prior={pipeline / 'prior'}"],
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "trains without decoder.prior" in refused.stderr


def retrieval_decoder_from_the_plain_one(tmp_path, clip, train):
    """A retrieval decoder warm-started from the plain one: its pipeline holds the bank of its training images, and
    eval generation reports the copy distance."""
    spec = json.loads((Path(mm.__file__).parent / "model_configs" / "decoder" / "unet-tiny.json").read_text())
    spec = {**spec, "retrieval_top_k": 2, "unet": {**spec["unet"], "in_channels": 6}}
    (tmp_path / "retrieval.json").write_text(json.dumps(spec))
    train("decoder", tmp_path / "retrieval", "steps=4", "decoder.sample_every=2", f"decoder.clip={clip}",
          f"decoder.config={tmp_path / 'retrieval.json'}", f"decoder.cache_dir={tmp_path / 'cache'}",
          f"decoder.prior={tmp_path / 'prior' / 'final'}", f"decoder.init={tmp_path / 'decoder' / 'final' / 'decoder'}",
          "decoder.self_neighbour=0.5", "decoder.jitter_flip=false", "decoder.jitter_shift=0.02",
          "decoder.bank_size=16", "decoder.neighbour_drop=0.3", "decoder.neighbour_pool=3")
    refused = subprocess.run([sys.executable, "-m", "multimodal", "train", "decoder", "--config", "decoder-tiny",
                              f"run_dir={tmp_path / 'retrieval-bad'}", f"decoder.config={tmp_path / 'retrieval.json'}",
                              f"decoder.clip={clip}", "decoder.prior=", "decoder.bank_size=24"],
                             capture_output=True, text=True, timeout=600)
    assert refused.returncode != 0 and "must divide" in refused.stderr  # at the start, before any cache is built
    assert not (tmp_path / "retrieval-bad" / "final").exists()
    pipeline = tmp_path / "retrieval" / "final" / "pipeline"
    pipe = TextToImagePipeline.from_pretrained(pipeline)
    assert pipe.bank.images.shape == (32, 16, 16, 3)  # the 32 training images at bank_size, upscaled on use
    assert pipe("a cat", num_inference_steps=2, output_type="np").images.shape == (1, 32, 32, 3)
    run = subprocess.run([sys.executable, "-m", "multimodal", "eval", "generation", "--model", str(pipeline),
                          "--data", str(tmp_path / "eval"), "--num-prompts", "4", "--steps", "2", "--reconstruction",
                          "--out", str(tmp_path / "gen-retrieval.json")], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    payload = json.loads((tmp_path / "gen-retrieval.json").read_text())
    row, recon = payload["results"][0], payload["decoder_diagnostics"][0]
    assert 0 < row["copy_distance"] <= 1 and 0 < row["copy_distance_real"] <= 1
    assert recon["num_images"] == 4 and "recon_retag_accuracy_real_at_size=" in run.stdout
    assert all(0 <= recon[f"recon_retag_accuracy{k}"] <= 1 for k in ("", "_real", "_real_at_size"))
    assert len(recon["recon_retag_hits"]) == 4 and sum(recon["recon_retag_hits"].values()) == \
        round(4 * recon["recon_retag_accuracy"])


def rewritten_shards_are_embedded_again(tmp_path, clip, items):
    """A cache belongs to its shard files, not to the spec's text: the same folder rewritten with other samples is
    embedded again, and the unchanged one is read back."""
    import shutil

    from multimodal.data.writer import write_shards
    from multimodal_train.embedding_cache import LazyClip, load_or_build

    def keys() -> list[str]:
        return [str(k) for k in load_or_build(LazyClip(str(clip)), str(tmp_path / "again"), tmp_path / "cache",
                                              "train", 32)["keys"]]

    write_shards(items[:24], tmp_path / "again", progress=False)
    first = keys()
    assert len(first) == 24 and keys() == first
    shutil.rmtree(tmp_path / "again")
    write_shards(items[:28], tmp_path / "again", progress=False)
    assert len(keys()) == 28


def warm_start_from_the_cache_without_loading_the_clip(tmp_path, clip, monkeypatch):
    """decoder.init starts from trained weights; with its caches built and no samples, a run never loads its CLIP."""
    from safetensors.torch import load_file

    from multimodal.errors import UsageError
    from multimodal_train.config import load_config
    from multimodal_train.decoder import train

    def refuse(*args, **kwargs):
        raise AssertionError("the CLIP was loaded")

    monkeypatch.setattr("multimodal.models.from_pretrained", refuse)
    trained = tmp_path / "decoder" / "final" / "decoder"
    keys = [f"data.train={tmp_path / 'train'}", "threads=2", f"decoder.clip={clip}", "decoder.prior=",
            f"decoder.cache_dir={tmp_path / 'cache'}", "decoder.eval_data=", "decoder.sample_every=0", "steps=1",
            "optim.lr=1e-12"]
    train(load_config("decoder-tiny", [*keys, f"run_dir={tmp_path / 'warm'}", f"decoder.init={trained}"]))
    before = load_file(str(trained / "diffusion_pytorch_model.safetensors"))
    after = load_file(str(tmp_path / "warm" / "final" / "decoder" / "diffusion_pytorch_model.safetensors"))
    assert before.keys() == after.keys() and all(torch.allclose(before[k], after[k], atol=1e-8) for k in before)
    with pytest.raises(UsageError, match="decoder.init=.*prior"):
        train(load_config("decoder-tiny", [*keys, f"run_dir={tmp_path / 'bad'}",
                                           f"decoder.init={tmp_path / 'prior' / 'final'}"]))


def a_resaved_clip_keeps_its_caches(clip):
    """A cache is this CLIP's by its folder's files, or, for a folder re-saved since (same weights, config rewritten),
    by the weights' fingerprint; other weights are not."""
    from multimodal_train.embedding_cache import LazyClip, made_by

    lazy = LazyClip(str(clip))
    assert made_by(lazy, {"clip_files": lazy.digest, "clip_hash": "other"})
    assert made_by(lazy, {"clip_files": "0" * 64, "clip_hash": lazy.model.fingerprint()})
    assert not made_by(lazy, {"clip_files": "0" * 64, "clip_hash": "0" * 64})
