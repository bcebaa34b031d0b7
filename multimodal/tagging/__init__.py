"""Zero-shot tagging and text-to-image search on top of the CLIP pair."""

from multimodal.tagging.tagger import ZeroShotTagger

__all__ = ["ZeroShotTagger"]
