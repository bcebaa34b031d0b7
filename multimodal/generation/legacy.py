"""Pipeline folders saved by multimodal 0.1, whose CLIP was wrapped in a `CLIPEncoder` component.

    python -m multimodal.generation.legacy FOLDER      # rewrites FOLDER in today's format, in place
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from multimodal.errors import UsageError
from multimodal.generation.folder_code import make_loadable_by_diffusers

LEGACY_CLIP = ["multimodal.generation.components", "CLIPEncoder"]
CLIP = ["multimodal.models.clip", "CLIPModel"]


def check_not_legacy(folder: Path) -> None:
    index = folder / "model_index.json"
    if index.is_file() and json.loads(index.read_text()).get("clip") == LEGACY_CLIP:
        raise UsageError(f"{folder} was saved by multimodal 0.1 (its CLIP is a CLIPEncoder); rewrite it in today's "
                         f"format with: python -m multimodal.generation.legacy {folder}")


def upgrade_pipeline_folder(folder: str | Path) -> Path:
    """Re-save the CLIP of a 0.1 pipeline folder as a `CLIPModel` and point model_index.json at it."""
    from multimodal.models import from_pretrained

    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    if index.get("clip") != LEGACY_CLIP:
        return folder
    staged = folder / ".clip.upgrade"
    shutil.rmtree(staged, ignore_errors=True)
    from_pretrained(folder / "clip").save_pretrained(staged)  # the factory still reads 0.1 CLIP folders
    shutil.rmtree(folder / "clip")
    os.replace(staged, folder / "clip")
    index["clip"] = CLIP
    tmp = folder / ".model_index.json.tmp"
    tmp.write_text(json.dumps(index, indent=2) + "\n")
    os.replace(tmp, folder / "model_index.json")
    return make_loadable_by_diffusers(folder)


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"upgraded {upgrade_pipeline_folder(arg)}")
