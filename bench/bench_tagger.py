"""Zero-shot tagging throughput, side by side, on the same weights, images and labels, 2 threads:

  (a) multimodal's ZeroShotTagger, warm (label embeddings cached)
  (b) a plain open_clip loop: decode + preprocess + encode_image in batches, label embeddings computed once
  (c) the transformers "zero-shot-image-classification" pipeline, on the same weights converted to CLIPModel

The default architecture is ViT-B/32 (the one all three run) with seeded weights; `--model builtin` times
the shipped model instead ((c) needs a ViT, so it is left out). It also prints the image tower's achieved
GFLOP/s at batch 32 against this machine's measured matrix-multiply peak.

    python bench/bench_tagger.py --images 512 --labels 100
    python bench/bench_tagger.py --model builtin --templates 7    # the shipped model, its default templates
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

LABELS = [
    "cat", "dog", "car", "tree", "house", "apple", "banana", "bird", "fish", "flower", "boat", "plane", "train",
    "bicycle", "horse", "cow", "sheep", "chair", "table", "cup", "bottle", "phone", "computer", "book", "clock",
    "lamp", "door", "window", "road", "mountain", "beach", "river", "cloud", "sun", "moon", "star", "snow", "rain",
    "fire", "ball", "guitar", "piano", "drum", "shoe", "hat", "shirt", "dress", "bag", "key", "knife", "fork",
    "spoon", "plate", "pizza", "cake", "bread", "cheese", "egg", "carrot", "tomato", "potato", "lemon", "orange",
    "grape", "strawberry", "cherry", "butterfly", "bee", "spider", "snake", "frog", "turtle", "lion", "tiger",
    "bear", "elephant", "giraffe", "monkey", "rabbit", "mouse", "penguin", "owl", "duck", "chicken", "pig",
    "truck", "bus", "rocket", "robot", "heart", "smile", "face", "hand", "eye", "letter", "number", "arrow",
    "flag", "map", "toy",
]


def matmul_peak(threads: int, dtype=torch.float32, n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def image_paths(n: int) -> list[Path]:
    roots = [Path("/usr/share/tuxpaint/stamps"), Path("/usr/share/openclipart/png")]
    paths = [p for root in roots if root.is_dir() for p in sorted(root.rglob("*.png"))
             if p.stat().st_size < 400_000]
    if len(paths) < n:
        raise SystemExit(f"need {n} images; install tuxpaint-stamps-default and openclipart-png (found {len(paths)})")
    return paths[:n]


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--labels", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--model", default="ViT-B-32",
                        help="an architecture (seeded, untrained) or a pretrained name or folder, e.g. builtin")
    parser.add_argument("--templates", type=int, default=1, help="how many of the default prompt templates")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import open_clip
    from PIL import Image

    import multimodal as mm
    from multimodal.data.images import open_image
    from multimodal.export.open_clip import export_open_clip
    from multimodal.prompts import DEFAULT_TEMPLATES
    from multimodal.tagging import ZeroShotTagger

    labels = LABELS[:args.labels]
    paths = image_paths(args.images)
    torch.manual_seed(0)
    work = Path(tempfile.mkdtemp(prefix="bench-tagger-"))
    pretrained = args.model not in mm.list_models()
    folder = args.model if pretrained else mm.create_model(args.model).save_pretrained(work / "model")
    oc_folder = export_open_clip(mm.from_pretrained(folder), work / "open_clip") if pretrained else folder
    templates = list(DEFAULT_TEMPLATES[:args.templates]) if args.templates > 1 else ["a photo of a {}."]
    results = {}

    # (a) multimodal
    tagger = ZeroShotTagger.from_pretrained(folder, templates=templates, batch_size=args.batch_size,
                                            threads=args.threads)
    tagger.tag(paths[:8], labels)  # warm: label embeddings cached, threads started
    secs = timed(lambda: tagger.tag(paths, labels))
    results["(a) multimodal ZeroShotTagger"] = len(paths) / secs

    bf16 = ZeroShotTagger.from_pretrained(folder, templates=templates, batch_size=args.batch_size,
                                          threads=args.threads, bf16=True)
    bf16.tag(paths[:8], labels)
    secs = timed(lambda: bf16.tag(paths, labels))
    results["(a) multimodal ZeroShotTagger, bf16"] = len(paths) / secs

    # (b) plain open_clip on the same folder (our saved folders load in open_clip as local-dir:)
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{oc_folder}")
    model.eval()
    tokenizer = open_clip.get_tokenizer(f"local-dir:{oc_folder}")

    def open_clip_loop():
        with torch.inference_mode():
            prompts = tokenizer([t.format(x) for x in labels for t in templates])
            text = model.encode_text(prompts, normalize=True).view(len(labels), len(templates), -1).mean(1)
            for i in range(0, len(paths), args.batch_size):
                batch = torch.stack([preprocess(Image.open(p).convert("RGB")) for p in paths[i:i + args.batch_size]])
                (100 * model.encode_image(batch, normalize=True) @ text.T).softmax(-1)

    results["(b) open_clip loop"] = len(paths) / timed(open_clip_loop)

    # (c) transformers pipeline on the converted weights
    if not args.skip_transformers and not pretrained:
        from hf_convert import check_same_embeddings, convert
        from transformers import pipeline

        clip = mm.from_pretrained(folder)
        hf_model, hf_tok, hf_proc = convert(clip, work / "hf")
        sample = [open_image(p) for p in paths[:4]]
        img_cos, txt_cos = check_same_embeddings(clip, hf_model, hf_tok, hf_proc, sample, ["a photo of a cat", "dog"])
        print(f"converted weights: min cosine vs multimodal, images {img_cos:.5f}, texts {txt_cos:.5f}")
        classify = pipeline("zero-shot-image-classification", model=hf_model, tokenizer=hf_tok,
                            image_processor=hf_proc, device="cpu")
        n_hf = min(len(paths), 64)  # it re-encodes all labels for every image: a subset keeps the run short
        images = [Image.open(p).convert("RGB") for p in paths[:n_hf]]
        secs = timed(lambda: classify(images, candidate_labels=labels, hypothesis_template=templates[0],
                                      batch_size=args.batch_size))
        results[f"(c) transformers pipeline ({n_hf} images)"] = n_hf / secs
        classify_bf16 = pipeline("zero-shot-image-classification", model=hf_model.to(torch.bfloat16), tokenizer=hf_tok,
                                 image_processor=hf_proc, device="cpu", dtype=torch.bfloat16)
        secs = timed(lambda: classify_bf16(images, candidate_labels=labels, hypothesis_template=templates[0],
                                           batch_size=args.batch_size))
        results[f"(c) transformers pipeline, bf16 ({n_hf} images)"] = n_hf / secs

    ours, ours_bf16 = results["(a) multimodal ZeroShotTagger"], results["(a) multimodal ZeroShotTagger, bf16"]
    print(f"\n{len(paths)} images x {len(labels)} labels, {args.model}, {args.threads} threads, "
          f"batch {args.batch_size}")
    for name, rate in results.items():
        print(f"{name:<50} {rate:8.1f} images/s   ours (fp32) is {ours / rate:5.2f}x, ours (bf16) is "
              f"{ours_bf16 / rate:5.2f}x")

    # achieved GFLOP/s of the image tower at batch 32 vs the measured matmul peak
    from torch.utils.flop_counter import FlopCounterMode

    clip = mm.from_pretrained(folder)
    pixels = torch.randn(args.batch_size, 3, clip.image_size, clip.image_size)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            clip.encode_image(pixels)
        flops = counter.get_total_flops()
        clip.encode_image(pixels)
        visual_bf16 = copy.deepcopy(clip.model.visual).to(torch.bfloat16)
        runs = {"fp32": lambda: clip.encode_image(pixels), "bf16": lambda: visual_bf16(pixels.bfloat16())}
        for dtype, fn in runs.items():
            fn()
            secs = min(timed(fn) for _ in range(3))
            peak32 = matmul_peak(args.threads)
            print(f"image tower {dtype}: {flops / secs / 1e9:6.1f} GFLOP/s = {flops / secs / 1e9 / peak32:5.1%} of "
                  f"the fp32 matmul peak ({peak32:.1f} GFLOP/s measured)")
    print(f"bf16 matmul peak: {matmul_peak(args.threads, torch.bfloat16):.1f} GFLOP/s")


if __name__ == "__main__":
    main()
