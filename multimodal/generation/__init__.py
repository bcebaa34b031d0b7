"""Text-to-image: a CLIP-conditioned diffusion decoder, a prior, and the pipeline that joins them."""

from multimodal.generation.components import (
    EmbeddingPrior,
    create_decoder,
    decoder_condition,
    sampling_scheduler,
    set_condition_stats,
    upsampler_input,
)
from multimodal.generation.pipeline import TextToImagePipeline

__all__ = ["EmbeddingPrior", "TextToImagePipeline", "create_decoder", "decoder_condition", "sampling_scheduler",
           "set_condition_stats", "upsampler_input"]
