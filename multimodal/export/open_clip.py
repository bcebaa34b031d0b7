"""A folder that plain open_clip loads: `open_clip.create_model_and_transforms("local-dir:DIR")`.

    multimodal export open-clip builtin --out DIR
    -> DIR/open_clip_config.json      model_cfg + preprocess_cfg, as open_clip's hub configs
       DIR/open_clip_model.safetensors every tensor under open_clip's names, packaged towers included
       DIR/tokenizer files            for models whose text tower is a Hugging Face model

One difference stays: open_clip drops an image's alpha channel (transparent pixels turn black), where
multimodal composites it on white; on transparent drawings such as emoji that changes the embeddings.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from multimodal.models.io import save_safetensors
from multimodal.models.towers import resolve, resolve_model_cfg

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
WEIGHTS = "open_clip_model.safetensors"


def export_open_clip(model, out_dir: str | Path) -> Path:
    """Write `model` (a CLIPModel) as an open_clip `local-dir:` folder; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = model.spec
    state = {k: v.detach().cpu().contiguous() for k, v in model.model.state_dict().items()}
    save_safetensors(state, out_dir / WEIGHTS)
    config = {"model_cfg": resolve_model_cfg(spec.model_cfg), "preprocess_cfg": spec.preprocess_cfg}
    if spec.tokenizer.get("type") == "hf":  # open_clip reads an HF tokenizer (and config) from the folder itself
        source = Path(resolve(spec.tokenizer["name"]))
        for name in (*TOKENIZER_FILES, "config.json"):
            if (source / name).is_file():
                shutil.copy(source / name, out_dir / name)
        text_cfg = config["model_cfg"]["text_cfg"]
        text_cfg["hf_tokenizer_name"] = text_cfg["hf_model_name"] = str(out_dir.resolve())
        text_cfg["hf_model_pretrained"] = False
    (out_dir / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    return out_dir
