"""Saved pipeline folders load in plain diffusers: DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch

import multimodal as mm
from multimodal.generation import EmbeddingPrior, TextToImagePipeline, create_decoder, sampling_scheduler
from multimodal.generation.folder_code import CODE, MODULE


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A tiny real pipeline (seeded tiny CLIP, 32 px UNet), saved the way users save theirs."""
    torch.manual_seed(0)
    clip = mm.create_model("tiny")
    unet, train_scheduler = create_decoder("unet-tiny", clip.embed_dim)
    pipe = TextToImagePipeline(clip, EmbeddingPrior(64, 128, 2), unet, sampling_scheduler(train_scheduler.config))
    out = tmp_path_factory.mktemp("interop") / "pipe"
    pipe.save_pretrained(out)
    return out


def plain_diffusers(code: str, tmp_path) -> subprocess.CompletedProcess:
    """`code` in a fresh interpreter that imports nothing of ours itself; diffusers' module cache in tmp_path."""
    env = {**os.environ, "HF_MODULES_CACHE": str(tmp_path / "modules"), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env,
                          cwd=tmp_path)


def snippet(folder, trust: bool = True) -> str:
    return ("from diffusers import DiffusionPipeline\n"
            f"pipe = DiffusionPipeline.from_pretrained({str(folder)!r}{', trust_remote_code=True' if trust else ''})\n"
            "out = pipe('a red apple', num_inference_steps=2)\n"
            "print(type(pipe).__name__, out.images[0].size)\n")


def test_the_folder_names_its_code_the_diffusers_way(folder):
    index = json.loads((folder / "model_index.json").read_text())
    assert index["_class_name"] == [MODULE, "TextToImagePipeline"]
    assert (folder / f"{MODULE}.py").read_text() == CODE
    assert index["clip"] == ["multimodal.models.clip", "CLIPModel"]
    assert index["prior"] == ["multimodal.generation.components", "EmbeddingPrior"]


def test_plain_diffusers_loads_and_runs_a_saved_folder(folder, tmp_path):
    run = plain_diffusers(snippet(folder), tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[-1] == "TextToImagePipeline (32, 32)"


def test_without_trust_remote_code_diffusers_says_what_to_pass(folder, tmp_path):
    run = plain_diffusers(snippet(folder, trust=False), tmp_path)
    assert run.returncode != 0 and "trust_remote_code=True" in run.stderr


def test_our_own_loader_never_runs_the_folder_file(folder, tmp_path):
    copy = shutil.copytree(folder, tmp_path / "pipe")
    (copy / f"{MODULE}.py").write_text("raise RuntimeError('the folder file ran')\n")
    pipe = TextToImagePipeline.from_pretrained(copy)
    assert type(pipe) is TextToImagePipeline
    pipe.save_pretrained(tmp_path / "again")  # and saving a loaded pipeline writes the folder file afresh
    assert (tmp_path / "again" / f"{MODULE}.py").read_text() == CODE


def test_the_shipped_pipeline_folder_is_saved_this_way():
    from multimodal_assets import ASSETS_DIR

    shipped = ASSETS_DIR / "builtin" / "pipeline"
    assert json.loads((shipped / "model_index.json").read_text())["_class_name"] == [MODULE, "TextToImagePipeline"]
    assert (shipped / f"{MODULE}.py").read_text() == CODE
