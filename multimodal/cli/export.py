"""`multimodal export onnx|open-clip`."""

from __future__ import annotations

import json
import sys

from multimodal.cli import add_subcommand

EXPORT_HELP = """\
Write the image and text encoders of MODEL as ONNX (opset 17) into DIR:
  image_encoder.onnx   pixels [B, 3, S, S] float32 -> features [B, D], L2-normalized
  text_encoder.onnx    tokens [B, L] int64         -> features [B, D], L2-normalized
  export.json          sizes, and the torch-vs-onnxruntime cosine measured right after export
Use them with onnxruntime, or with ZeroShotTagger(..., backend="onnx").

`open-clip` writes a folder that plain open_clip loads:
  open_clip.create_model_and_transforms("local-dir:DIR"), open_clip.get_tokenizer("local-dir:DIR")
with every weight included (also those of the packaged pretrained towers)."""


def register(sub) -> None:
    p = add_subcommand(sub, "export", "export the encoders as ONNX, or the model as an open_clip folder", EXPORT_HELP)
    p.add_argument("format", choices=["onnx", "open-clip"], help="onnx: two encoder graphs; open-clip: a folder "
                   "that open_clip's local-dir: loads")
    p.add_argument("model", metavar="MODEL", help="'builtin', a saved model folder or an open_clip ARCH:TAG")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from multimodal.models import from_pretrained

    if args.format == "open-clip":
        from multimodal.export.open_clip import export_open_clip

        out = export_open_clip(from_pretrained(args.model), args.out)
        print(f"wrote {out}: load it with open_clip.create_model_and_transforms('local-dir:{out}')", file=sys.stderr)
        return 0
    from multimodal.export.onnx import export_onnx

    out = export_onnx(from_pretrained(args.model), args.out)
    info = json.loads((out / "export.json").read_text())
    print(f"wrote {out}/image_encoder.onnx and text_encoder.onnx; torch/onnxruntime cosine: "
          f"{info['parity_min_cosine']}", file=sys.stderr)
    return 0
