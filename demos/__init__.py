"""The Gradio demo of multimodal (installed as `multimodal_demo`); thin: it calls the library's public API."""
