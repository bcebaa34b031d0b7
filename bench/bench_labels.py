"""Encoding many labels: `ZeroShotTagger.label_embeddings` (length-sorted batches, each cut to its longest
prompt) against the plain open_clip way (every prompt padded to the full context), same model, same prompts.

    python bench/bench_labels.py --labels 5000            # builtin, the 7 default templates, 2 threads

Labels: the Unicode emoji names and ImageNet's class names (real label text of mixed length).
"""

from __future__ import annotations

import argparse
import time

import torch


def real_labels(n: int) -> list[str]:
    import emoji
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = [data["en"].strip(":").replace("_", " ") for data in emoji.EMOJI_DATA.values()] + list(IMAGENET_CLASSNAMES)
    unique = list(dict.fromkeys(names))
    if len(unique) < n:
        unique += [f"{name} {i}" for i, name in enumerate(unique)][: n - len(unique)]
    return unique[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=int, default=5000)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-plain", action="store_true", help="only time multimodal")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from multimodal.prompts import DEFAULT_TEMPLATES
    from multimodal.tagging import ZeroShotTagger

    tagger = ZeroShotTagger.from_pretrained(args.model)
    labels = real_labels(args.labels)
    start = time.perf_counter()
    ours = tagger.label_embeddings(labels)
    ours_s = time.perf_counter() - start
    print(f"multimodal: {len(labels)} labels x {len(DEFAULT_TEMPLATES)} templates in {ours_s:.1f} s")
    if args.skip_plain:
        return
    model = tagger.model
    start = time.perf_counter()
    with torch.inference_mode():
        rows = []
        for label in labels:  # open_clip's zero-shot recipe: one batch of templates per class, full context
            tokens = model.tokenize([t.format(label) for t in DEFAULT_TEMPLATES])
            emb = torch.nn.functional.normalize(model.model.encode_text(tokens), dim=-1).mean(0)
            rows.append(torch.nn.functional.normalize(emb, dim=0))
    plain_s = time.perf_counter() - start
    cos = torch.nn.functional.cosine_similarity(torch.stack(rows), ours).min().item()
    print(f"plain open_clip loop: {plain_s:.1f} s; speed-up {plain_s / ours_s:.2f}x; min cosine {cos:.6f}")


if __name__ == "__main__":
    main()
