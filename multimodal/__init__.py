"""multimodal: a CLIP-style text-image model, from webdataset shards to tagging, generation and a demo.

Importing this package is cheap: every public name is resolved lazily on first use (PEP 562),
so `import multimodal` loads neither torch nor gradio and downloads nothing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_LAZY = {
    "create_model": "multimodal.models",
    "list_models": "multimodal.models",
    "list_pretrained": "multimodal.models",
    "from_pretrained": "multimodal.models",
    "CLIPModel": "multimodal.models",
    "ZeroShotTagger": "multimodal.tagging",
    "TextToImagePipeline": "multimodal.generation",
    "ShardReader": "multimodal.data.reader",
    "write_shards": "multimodal.data.writer",
    "check_shards": "multimodal.data.check",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from multimodal.data.check import check_shards as check_shards
    from multimodal.data.reader import ShardReader as ShardReader
    from multimodal.data.writer import write_shards as write_shards


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'multimodal' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
