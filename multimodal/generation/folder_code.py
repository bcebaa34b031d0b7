"""Pipeline folders that plain diffusers loads: `DiffusionPipeline.from_pretrained(FOLDER, trust_remote_code=True)`.

diffusers' convention for a pipeline whose class is not part of diffusers: `_class_name` in model_index.json is a
pair [module, class], and FOLDER/module.py defines the class; diffusers imports that file (only when the caller
passes `trust_remote_code=True`) and builds the pipeline with it. `save_pretrained` writes that file,
`multimodal_pipeline.py`, and points model_index.json at it:

    "_class_name": ["multimodal_pipeline", "TextToImagePipeline"]
    "clip":  ["multimodal.models.clip", "CLIPModel"]               components stay named by their full module path
    "prior": ["multimodal.generation.components", "EmbeddingPrior"]

The file holds no copy of the pipeline: it imports it from the installed `multimodal` package, so the folder runs
the code of the package that is installed, as it does through `TextToImagePipeline.from_pretrained`. Importing it
also imports the components' modules; diffusers resolves a component named by a module path from the modules
already imported (`_get_library_or_raise`), and the pipeline class is always resolved before the components.

`TextToImagePipeline.from_pretrained` never runs the folder's file: it reads the pair as its own class name.
A folder saved before multimodal wrote the file gets it, weights untouched, with

    python -m multimodal.generation.folder_code FOLDER
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

MODULE = "multimodal_pipeline"
CLASS_NAME = "TextToImagePipeline"

CODE = '''\
"""The code of this pipeline folder, for plain diffusers:

    from diffusers import DiffusionPipeline
    pipe = DiffusionPipeline.from_pretrained(FOLDER, trust_remote_code=True)
    image = pipe("a red apple", num_inference_steps=20).images[0]

It names classes of the installed `multimodal` package (pip install multimodal), which holds their code:
the pipeline (model_index.json: "_class_name") and its "clip", "prior" and "bank" components, whose modules this
import brings in for diffusers to find. Written by multimodal's TextToImagePipeline.save_pretrained.
"""

try:
    from multimodal.generation.components import EmbeddingPrior  # noqa: F401  (the "prior" component)
    from multimodal.generation.pipeline import TextToImagePipeline
    from multimodal.generation.retrieval import NeighbourBank  # noqa: F401  (the "bank" component, if any)
    from multimodal.models.clip import CLIPModel  # noqa: F401  (the "clip" component)
except ImportError as e:
    raise ImportError(f"this pipeline folder runs on the multimodal package: pip install multimodal ({e})") from e

__all__ = ["TextToImagePipeline"]
'''


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def make_loadable_by_diffusers(folder: str | Path) -> Path:
    """Write FOLDER/multimodal_pipeline.py, then point model_index.json's `_class_name` at it."""
    folder = Path(folder)
    _write(folder / f"{MODULE}.py", CODE)
    index = json.loads((folder / "model_index.json").read_text())
    index["_class_name"] = [MODULE, CLASS_NAME]
    _write(folder / "model_index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
    return folder


def own_class_name(config: dict) -> dict:
    """model_index.json as TextToImagePipeline reads it: the [module, class] pair of its own folder file becomes
    the plain class name, so that diffusers builds the installed class and never imports the folder's file."""
    if list(config.get("_class_name") or []) == [MODULE, CLASS_NAME]:
        config["_class_name"] = CLASS_NAME
    return config


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        print(f"{make_loadable_by_diffusers(arg)} now loads with DiffusionPipeline.from_pretrained(..., "
              "trust_remote_code=True)")
