"""Export of the CLIP encoders (ONNX)."""
