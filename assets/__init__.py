"""Shipped weights, model card and example images (installed as `multimodal_assets`)."""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent
