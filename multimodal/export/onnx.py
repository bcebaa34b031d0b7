"""ONNX export of the image and text encoders, and onnxruntime sessions for them.

    multimodal export onnx builtin --out onnx/
    -> onnx/image_encoder.onnx   pixels [B, 3, S, S] float32  -> features [B, D] (L2-normalized)
       onnx/text_encoder.onnx    tokens [B, L] int64           -> features [B, D] (L2-normalized)
       onnx/export.json          model name, sizes, opset, parity measured at export time
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import nn

OPSET = 17


class _ImageEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels, normalize=True)


class _TextEncoder(nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens, normalize=True)


def _export(module: nn.Module, example: torch.Tensor, path: Path, input_name: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)  # the fused attention kernel has no ONNX form
    try:  # the TorchScript-based exporter: no extra dependency, handles every tower used here
        torch.onnx.export(module, (example,), str(tmp), input_names=[input_name], output_names=["features"],
                          dynamic_axes={input_name: {0: "batch"}, "features": {0: "batch"}}, opset_version=OPSET,
                          dynamo=False)
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    tmp.replace(path)


def session(path: str | Path, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def cosine_parity(model, onnx_dir: Path, n: int = 4) -> dict[str, float]:
    """Lowest cosine similarity between torch and onnxruntime embeddings on random inputs."""
    out = {}
    g = torch.Generator().manual_seed(0)
    pixels = torch.randn(n, 3, model.image_size, model.image_size, generator=g)
    with torch.inference_mode():
        want = model.encode_image(pixels)
    if (onnx_dir / "image_encoder.onnx").is_file():
        got = torch.from_numpy(session(onnx_dir / "image_encoder.onnx").run(None, {"pixels": pixels.numpy()})[0])
        out["image"] = float(torch.nn.functional.cosine_similarity(got, want).min())
    if (onnx_dir / "text_encoder.onnx").is_file():
        tokens = model.tokenize(["a red apple", "a photo of a blue car on a street", "x", "an emoji of a cat"][:n])
        with torch.inference_mode():
            want = model.encode_text(tokens)
        got = torch.from_numpy(session(onnx_dir / "text_encoder.onnx").run(None, {"tokens": tokens.numpy()})[0])
        out["text"] = float(torch.nn.functional.cosine_similarity(got, want).min())
    return out


def export_onnx(model, out_dir: str | Path, *, image: bool = True, text: bool = True) -> Path:
    """Write the encoders of `model` (a CLIPModel) as ONNX into `out_dir`; returns the folder."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval()
    # the wrappers must be in eval mode too: the exporter puts modules back in the mode it found them in,
    # and a fresh nn.Module is in train mode, where BatchNorm would use (and update) batch statistics
    if image:
        example = torch.randn(2, 3, model.image_size, model.image_size)
        _export(_ImageEncoder(model.model).eval(), example, out_dir / "image_encoder.onnx", "pixels")
    if text:
        _export(_TextEncoder(model.model).eval(), model.tokenize(["a photo", "a cat"]),
                out_dir / "text_encoder.onnx", "tokens")
    info = {"model": model.config["name"], "image_size": model.image_size, "context_length": model.context_length,
            "embed_dim": model.embed_dim, "opset": OPSET, "parity_min_cosine": cosine_parity(model, out_dir)}
    (out_dir / "export.json").write_text(json.dumps(info, indent=2))
    return out_dir
