"""The CLIP pair: architectures (model_configs/*.json), the factory, and save/load."""

from multimodal.models.clip import CLIPModel
from multimodal.models.config import ModelConfig, get_config
from multimodal.models.factory import create_model, from_pretrained, list_models, list_pretrained

__all__ = ["CLIPModel", "ModelConfig", "create_model", "from_pretrained", "get_config", "list_models",
           "list_pretrained"]
