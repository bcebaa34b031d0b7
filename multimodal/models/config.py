"""Model configs: one JSON per architecture in `multimodal/model_configs/`, loaded into `ModelConfig`.

The JSON is a superset of open_clip's `open_clip_config.json` (`model_cfg` + `preprocess_cfg`), so
the architecture part is exactly what open_clip's model classes take; we add the tokenizer and how
each tower is initialised and locked.
"""

from __future__ import annotations

import copy
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multimodal.errors import UsageError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "model_configs"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class ModelConfig:
    name: str
    model_cfg: dict  # open_clip architecture: embed_dim, vision_cfg, text_cfg (+ init_logit_scale/bias ...)
    preprocess_cfg: dict = field(default_factory=dict)  # open_clip PreprocessCfg fields
    tokenizer: dict = field(default_factory=lambda: {"type": "clip", "context_length": 77})
    towers: dict = field(default_factory=dict)  # {"image": {"init", "lock", "unlocked_groups", ...}, "text": {...}}
    description: str = ""

    @classmethod
    def from_dict(cls, data: dict, name: str | None = None, drop_none: bool = False) -> ModelConfig:
        if drop_none:
            data = {k: v for k, v in data.items() if v is not None}
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(data) - known - {"multimodal_version", "format"}
        if unknown:
            raise UsageError(f"model config {name or data.get('name')!r} has unknown keys {sorted(unknown)}")
        data = copy.deepcopy(data)
        data.setdefault("name", name or "unnamed")
        if "model_cfg" not in data:
            raise UsageError(f"model config {data['name']!r} has no 'model_cfg'")
        config = cls(**{k: v for k, v in data.items() if k in known})
        config.preprocess_cfg = {"size": config.image_size, "mean": list(OPENAI_MEAN), "std": list(OPENAI_STD),
                                 "interpolation": "bicubic", "resize_mode": "shortest", **config.preprocess_cfg}
        return config

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        path = Path(path)
        return cls.from_dict(json.loads(path.read_text()), name=path.stem if path.name != "config.json" else None)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def image_size(self) -> int:
        size = self.model_cfg["vision_cfg"].get("image_size", 224)
        return size if isinstance(size, int) else size[0]

    @property
    def context_length(self) -> int:
        return int(self.tokenizer.get("context_length", self.model_cfg["text_cfg"].get("context_length", 77)))

    @property
    def embed_dim(self) -> int:
        return int(self.model_cfg["embed_dim"])


def list_configs() -> dict[str, Path]:
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.json"))}


def get_config(name: str) -> ModelConfig:
    configs = list_configs()
    if name not in configs:
        raise UsageError(f"unknown model architecture {name!r}; choose from {sorted(configs)}")
    return ModelConfig.from_json(configs[name])
