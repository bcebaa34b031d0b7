"""Text-to-image: a CLIP-conditioned diffusion decoder, a prior, and the pipeline that joins them."""

from multimodal.generation.components import (
    EmbeddingPrior,
    create_decoder,
    decoder_condition,
    denoise,
    guided_steps,
    sampling_scheduler,
    set_condition_stats,
    upsampler_input,
    with_beside,
)
from multimodal.generation.pipeline import TextToImagePipeline
from multimodal.generation.retrieval import NeighbourBank

__all__ = ["EmbeddingPrior", "NeighbourBank", "TextToImagePipeline", "create_decoder", "decoder_condition", "denoise",
           "guided_steps", "sampling_scheduler", "set_condition_stats", "upsampler_input", "with_beside"]
