"""The shipped default model: `builtin` resolves offline from the installed assets and does its job."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from multimodal.tagging.labels import read_labels_file
from multimodal_assets import ASSETS_DIR

EXAMPLES = ASSETS_DIR / "examples"
EVERYDAY = ASSETS_DIR / "labels" / "everyday.txt"


def test_assets_stay_under_75_mb_besides_the_bank():
    """The retrieval decoder's bank (its 16,047 training images at 32 px and their embeddings: 62 MB, 29 MB
    compressed in git) is the decoder's knowledge and has its own budget; everything else stays under 75 MB: two
    CLIPs of 23 MB (the tagger's, and the pipeline's own, whose embeddings its prior and decoder were trained on)
    and the rest."""
    files = [p for p in ASSETS_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    bank = sum(p.stat().st_size for p in files if "bank" in p.parts)
    rest = sum(p.stat().st_size for p in files) - bank
    assert rest < 75e6 and bank < 65e6, f"assets/ holds {rest / 1e6:.1f} MB besides the bank's {bank / 1e6:.1f} MB"


@pytest.fixture(scope="module")
def tagger():
    from multimodal import ZeroShotTagger

    return ZeroShotTagger.from_pretrained("builtin")


def test_builtin_tags_photos_and_drawings_sensibly(tagger):
    """Regression guard on the shipped weights: these were right when the model shipped (see the model card)."""
    # CLIP v10 loses the astronaut photo from its top 3 (pizza, bicycle, telephone; README and model card)
    expected = {"cat.jpg": "cat", "coffee.jpg": "cup of coffee",
                "clipart-apple.png": "apple", "clipart-car.png": "car", "clipart-guitar.png": "guitar",
                "clipart-tree.png": "tree"}
    results = tagger.tag([EXAMPLES / name for name in expected], read_labels_file(EVERYDAY), top_k=3)
    for (name, label), tags in zip(expected.items(), results):
        assert label in [t for t, _ in tags], f"{name}: expected {label!r} in the top 3, got {tags}"


def test_the_readme_tagging_command_writes_valid_json():
    out = subprocess.run([sys.executable, "-m", "multimodal", "tag", str(EXAMPLES), "--labels-file", str(EVERYDAY),
                          "--top-k", "3", "--format", "json"], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines()]  # JSON lines, one image each (DESIGN.md)
    assert sorted(row["image"].rsplit("/", 1)[-1] for row in rows) == sorted(p.name for p in EXAMPLES.iterdir())
    assert all(len(row["tags"]) == 3 for row in rows)


def test_builtin_pipeline_generates_reproducibly():
    from multimodal import TextToImagePipeline

    pipe = TextToImagePipeline.from_pretrained("builtin")
    assert pipe.decoder.dtype == torch.float32  # shipped as float16, loaded back as float32

    def run():
        return pipe("a red apple", num_inference_steps=4, generator=torch.Generator().manual_seed(0),
                    output_type="np").images

    first, second = run(), run()
    size = pipe.decoder.config.sample_size  # 32 px since decoder v4 (a retrieval decoder: it ships its bank)
    assert first.shape == (1, size, size, 3) and np.array_equal(first, second) and pipe.bank is not None
    assert first.std() > 0.05  # not a flat image
    # not the saturated primary-colour noise a diverged sampler gives (share of pixels with all channels at 0 or 1
    # and not grey): a diverged trajectory makes most pixels so, a real picture almost none
    saturated = ((first < 0.02) | (first > 0.98)).all(-1) & (first.max(-1) - first.min(-1) > 0.9)
    assert saturated.mean() < 0.05, f"{saturated.mean():.0%} saturated pixels"
