"""Trainers and recipes for the multimodal CLIP pair, the decoder and the prior (installed as `multimodal_train`)."""
