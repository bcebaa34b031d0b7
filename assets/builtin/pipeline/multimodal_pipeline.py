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
