"""The CLIP pair: `CLIPModel` (the one place that embeds), architectures (model_configs/*.json) and the factory."""

from multimodal.models.clip import CLIPModel
from multimodal.models.config import ModelConfig, get_config
from multimodal.models.factory import create_model, from_pretrained, list_models, list_pretrained

__all__ = ["CLIPModel", "ModelConfig", "create_model", "from_pretrained", "get_config", "list_models",
           "list_pretrained"]
