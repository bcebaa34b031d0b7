"""Saving and loading `CLIPModel` folders: `config.json` beside `model.safetensors`.

Tensors identical to a packaged pretrained tower (EfficientNet-Lite0, MiniLM) are left out of
`model.safetensors` by default and come back from the installed package on load, so a LiT model
ships only what was trained here. A folder with complete weights also gets `open_clip_config.json`,
which lets raw open_clip load it with `create_model("local-dir:FOLDER")`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from multimodal import __version__
from multimodal.models.clip import CLIPModel
from multimodal.models.config import ModelConfig
from multimodal.models.towers import effnet_lite0_imagenet_state_dict, resolve, resolve_model_cfg

WEIGHTS = "model.safetensors"
PICKLE_NAMES = ("pytorch_model.bin", "model.bin", "model.pt", "model.pth", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")


class PickleCheckpointRefused(ValueError):
    pass


def packaged_tower_state(config: ModelConfig) -> dict[str, torch.Tensor]:
    """The open_clip state-dict entries that come from packaged towers, as the packages hold them."""
    state: dict[str, torch.Tensor] = {}
    image_init = config.towers.get("image", {}).get("init")
    if image_init:
        state.update({f"visual.trunk.{k}": v for k, v in effnet_lite0_imagenet_state_dict().items()})
    text_init = config.towers.get("text", {}).get("init")
    if text_init:
        from safetensors.torch import load_file as load_st

        tower = load_st(str(Path(resolve(text_init)) / "model.safetensors"))
        state.update({f"text.transformer.{k.removeprefix('bert.')}": v for k, v in tower.items()})
    return state


def _atomic_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


def save_pretrained(model: CLIPModel, directory: str | Path, *, include_packaged_towers: bool = False) -> Path:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.model.state_dict().items()}
    omitted = []
    if not include_packaged_towers and model.config.towers:
        base = packaged_tower_state(model.config)
        omitted = [k for k, v in state.items() if k in base and base[k].shape == v.shape and torch.equal(base[k], v)]
        for k in omitted:
            del state[k]
    tmp = directory / f".{WEIGHTS}.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "multimodal_version": __version__})
    os.replace(tmp, directory / WEIGHTS)
    config = model.config.to_dict() | {"format": "multimodal-clip/1", "multimodal_version": __version__,
                                       "packaged_tensors_omitted": len(omitted)}
    _atomic_json(directory / "config.json", config)
    if not omitted:
        _write_open_clip_view(model.config, directory)
    return directory


def _write_open_clip_view(config: ModelConfig, directory: Path) -> None:
    oc = {"model_cfg": resolve_model_cfg(config.model_cfg), "preprocess_cfg": config.preprocess_cfg}
    if config.tokenizer.get("type") == "hf":  # open_clip reads an HF tokenizer from the folder itself
        source = Path(resolve(config.tokenizer["name"]))
        for name in TOKENIZER_FILES:
            if (source / name).is_file():
                shutil.copy(source / name, directory / name)
        oc["model_cfg"]["text_cfg"]["hf_tokenizer_name"] = str(directory)
    _atomic_json(directory / "open_clip_config.json", oc)


def read_weights(directory: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    if (directory / WEIGHTS).is_file():
        return load_file(str(directory / WEIGHTS))
    pickles = [directory / n for n in PICKLE_NAMES if (directory / n).is_file()]
    if not pickles:
        raise FileNotFoundError(f"{directory}: no {WEIGHTS} (nor a pickle checkpoint)")
    if not allow_pickle:
        raise PickleCheckpointRefused(
            f"{pickles[0]} is a pickle checkpoint, which can run code when loaded; it is refused unless you pass "
            "allow_pickle=True (it is then read with torch.load(weights_only=True))")
    state = torch.load(pickles[0], map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def load_pretrained_dir(directory: Path, *, allow_pickle: bool = False, device="cpu") -> CLIPModel:
    from multimodal.models.factory import create_model

    config_path = directory / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"{directory}: no config.json; is this a folder written by save_pretrained?")
    raw = json.loads(config_path.read_text())
    omitted = int(raw.pop("packaged_tensors_omitted", 0))
    config = ModelConfig.from_dict(raw)
    state = read_weights(directory, allow_pickle)
    model = create_model(config, pretrained_towers=omitted > 0)
    missing, unexpected = model.model.load_state_dict(state, strict=False)
    if unexpected:
        raise RuntimeError(f"{directory}: weights that the architecture does not have: {unexpected[:10]}")
    allowed = set(packaged_tower_state(config)) if omitted else set()
    really_missing = [k for k in missing if k not in allowed]
    if really_missing:
        raise RuntimeError(f"{directory}: weights missing from {WEIGHTS}: {really_missing[:10]}")
    return model.to(device).eval()


def load_open_clip_pretrained(name: str, *, allow_pickle: bool = False, device="cpu") -> CLIPModel:
    """`ARCH:TAG` through open_clip: a known tag downloads (needs a network), a file path loads locally."""
    import open_clip

    arch, _, tag = name.partition(":")
    if arch not in open_clip.list_models():
        raise ValueError(f"{arch!r} is not an open_clip architecture (see open_clip.list_models())")
    if Path(tag).is_file() and Path(tag).suffix != ".safetensors" and not allow_pickle:
        raise PickleCheckpointRefused(f"{tag} is a pickle checkpoint; pass allow_pickle=True to load it "
                                      "(with torch.load(weights_only=True))")
    oc_model = open_clip.create_model(arch, pretrained=tag, weights_only=True)
    model_cfg = open_clip.get_model_config(arch)
    config = ModelConfig.from_dict({
        "name": name, "model_cfg": model_cfg, "preprocess_cfg": dict(oc_model.visual.preprocess_cfg),
        "tokenizer": {"type": "open_clip", "name": arch,
                      "context_length": model_cfg["text_cfg"].get("context_length", 77)},
        "description": f"open_clip {arch} with weights {tag}"})
    return CLIPModel(config, oc_model, open_clip.get_tokenizer(arch)).to(device).eval()
