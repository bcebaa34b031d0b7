import json
import subprocess
import sys

import numpy as np
import torch
from conftest import make_image
from PIL import Image

import multimodal as mm
from multimodal_train.finetune import interpolate


def test_wise_ft_interpolation():
    base = {"w": torch.zeros(3), "n": torch.tensor(5)}
    tuned = {"w": torch.ones(3), "n": torch.tensor(9)}
    assert torch.equal(interpolate(base, tuned, 0.0)["w"], torch.zeros(3))
    assert torch.equal(interpolate(base, tuned, 0.25)["w"], torch.full((3,), 0.25))
    assert interpolate(base, tuned, 0.5)["n"] == 9  # integer buffers are not averaged


def test_finetune_on_an_imagefolder_reports_before_after_and_alphas(tmp_path):
    domain = tmp_path / "domain"
    for c, name in enumerate(["ankle_boot", "t-shirt", "bag"]):
        (domain / name).mkdir(parents=True)
        for i in range(12):
            make_image(domain / name / f"{i}.png", seed=100 * c + i, mode="L")
    torch.manual_seed(0)
    base = mm.create_model("tiny").save_pretrained(tmp_path / "base")
    run_dir = tmp_path / "ft"
    cmd = [sys.executable, "-m", "multimodal", "train", "finetune", "--config", "finetune-fashion", "--wise-alpha",
           "0.5", f"run_dir={run_dir}", "steps=4", "data.batch_size=8", "data.num_workers=0", "threads=1",
           "model.channels_last=false", f"finetune.base={base}", f"finetune.data={domain}", "finetune.eval_data=",
           f"finetune.reference={{ref: {run_dir / 'data' / 'eval'}}}", "finetune.wise_alphas=[0, 1]",
           "finetune.max_eval_samples=0"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((run_dir / "finetune_report.json").read_text())
    assert [row["alpha"] for row in report["alphas"]] == [0, 0.5, 1]
    assert set(report["alphas"][0]["results"]) == {"domain", "ref"}
    held_out = report["alphas"][0]["results"]["domain"]["num_samples"]
    assert 0 < held_out < 36  # the hash split held some of the 36 images out
    assert "alpha" in run.stdout and "domain top1" in run.stdout  # the printed table
    tuned = mm.from_pretrained(run_dir / "final")
    assert "WiSE-FT alpha=0.5" in tuned.config["description"]


def colour_folder(root, per_class: int = 16):
    """An ImageFolder that a linear probe separates: each class is one colour, with pixel noise."""
    colours = {"crimson": (220, 20, 60), "lime": (50, 205, 50), "navy": (0, 0, 128)}
    for c, (name, rgb) in enumerate(colours.items()):
        (root / name).mkdir(parents=True)
        rng = np.random.default_rng(c)
        for i in range(per_class):
            pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_finetune_learns_a_separable_domain_and_alpha_zero_is_the_base(tmp_path):
    domain = colour_folder(tmp_path / "colours")
    torch.manual_seed(0)
    base = mm.create_model("tiny").save_pretrained(tmp_path / "base")
    run_dir = tmp_path / "ft"
    cmd = [sys.executable, "-m", "multimodal", "train", "finetune", "--config", "finetune-fashion", "--wise-alpha",
           "0", f"run_dir={run_dir}", "steps=40", "data.batch_size=16", "data.num_workers=0", "threads=2",
           "model.channels_last=false", "optim.lr=2e-3", "optim.warmup_steps=5", f"finetune.base={base}",
           f"finetune.data={domain}", "finetune.eval_data=", "finetune.reference={}", "finetune.wise_alphas=[1]",
           "finetune.templates=['{}']", "eval.batch_size=64"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    rows = {row["alpha"]: row["results"]["domain"]["top1"] for row in
            json.loads((run_dir / "finetune_report.json").read_text())["alphas"]}
    assert rows[1] >= 0.9 and rows[1] > rows[0] + 0.4, rows  # the untrained base is near chance (1/3)
    before, after = mm.from_pretrained(base).state_dict(), mm.from_pretrained(run_dir / "final").state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # WiSE-FT alpha 0 is the base model, exactly
