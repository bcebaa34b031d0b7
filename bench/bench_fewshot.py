"""Few-shot tagging on Fashion-MNIST with the shipped model: Tip-Adapter-style example caches against zero-shot.

    OMP_NUM_THREADS=2 python bench/bench_fewshot.py --eval-samples 2000 --out runs/fewshot/report.json

Examples: 1/2/4/8/16 per class, drawn (seeded, nested: the 8 include the 4) from
data/corpus/fashion-mnist/train; evaluation: top-1 on a seeded fixed subset of the held-out split
data/corpus/fashion-mnist/eval. Every image is embedded once (through the tagger's own image path) and the
embeddings are reused for every shot count. Also measured:

  * partial examples: 2 and 8 shots for 5 of the 10 classes (three seeded choices of the 5); accuracy on the images
    whose true class has NO examples must not drop more than 2 points below zero-shot on the same images;
  * the time to add 160 examples (16 per class) from an ImageFolder on disk: read, decode, embed, cache;
  * a linear probe (logistic regression on the example embeddings, scikit-learn) for comparison.
"""

from __future__ import annotations

import argparse
import io
import json
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "data" / "corpus" / "fashion-mnist"


def read_split(split: str) -> list[tuple[str, str, bytes]]:
    """[(key, class name, png bytes)] of a shard split, in shard order."""
    shards = sorted((CORPUS / split).glob("*.tar"))
    if not shards:
        raise SystemExit(f"no shards in {CORPUS / split}: run `multimodal shards corpus all --out data/corpus`")
    out = []
    for shard in shards:
        samples: dict[str, dict[str, bytes]] = {}
        with tarfile.open(shard) as tar:
            for member in tar:
                key, _, ext = member.name.rpartition(".")
                samples.setdefault(key, {})[ext] = tar.extractfile(member).read()
        out += [(key, json.loads(s["json"])["labels"][0], s["png"]) for key, s in samples.items()]
    return out


def pick_examples(train: list, classes: list[str], shots: int, seed: int) -> dict[str, list[int]]:
    """class -> `shots` seeded indices into `train`; a smaller shot count takes a prefix (nested draws)."""
    rng = np.random.default_rng(seed)
    by_class = {c: [i for i, (_, label, _) in enumerate(train) if label == c] for c in classes}
    return {c: [by_class[c][j] for j in rng.permutation(len(by_class[c]))[:shots]] for c in classes}


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png)).convert("RGB")


def embed(tagger, pngs: list[bytes]) -> torch.Tensor:
    feats, indices, errors = tagger.encode_images([decode(p) for p in pngs], progress=True)
    assert not errors and len(indices) == len(pngs)
    return feats


def top1(scores: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    hit = scores.argmax(1) == targets
    return float(hit[mask].float().mean() if mask is not None else hit.float().mean())


def linear_probe(examples: dict[str, torch.Tensor], shots: int, eval_x: torch.Tensor) -> torch.Tensor | None:
    """Logistic regression (C=10) on the first `shots` example embeddings per class -> [M, C] scores."""
    try:
        from sklearn.linear_model import LogisticRegression
    except ImportError:
        return None
    x = torch.cat([f[:shots] for f in examples.values()]).numpy()
    y = np.repeat(np.arange(len(examples)), shots)
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(x, y)
    return torch.from_numpy(probe.predict_proba(eval_x.numpy()))


def set_examples(tagger, examples: dict[str, torch.Tensor], shots: int, classes: list[str]) -> None:
    tagger.clear_examples()
    for c in classes:
        tagger.examples.add(c, examples[c][:shots])


def partial_runs(tagger, examples, eval_x, eval_y, classes, seed: int, shots=(2, 8), runs: int = 3) -> list[dict]:
    """Examples for a seeded 5 of the 10 classes: top-1 on images of classes with / without examples, vs zero-shot."""
    rng = np.random.default_rng(seed)
    tagger.clear_examples()
    zero = tagger.scores(eval_x, classes)
    subsets = [sorted(rng.permutation(len(classes))[: len(classes) // 2].tolist()) for _ in range(runs)]
    out = []
    for k, have in [(k, have) for k in shots for have in subsets]:
        set_examples(tagger, examples, k, [classes[c] for c in have])
        scores = tagger.scores(eval_x, classes)
        with_ex = torch.isin(eval_y, torch.tensor(have))
        out.append({"shots": k, "classes_with_examples": [classes[c] for c in have],
                    "no_examples_zero_shot": top1(zero, eval_y, ~with_ex),
                    "no_examples_fewshot": top1(scores, eval_y, ~with_ex),
                    "with_examples_zero_shot": top1(zero, eval_y, with_ex),
                    "with_examples_fewshot": top1(scores, eval_y, with_ex)})
    return out


def time_adding(tagger, train: list, picks: dict[str, list[int]], repeats: int = 3) -> list[float]:
    """Seconds to add the picked examples from an ImageFolder on disk (PNG files): read, decode, embed, cache."""
    with tempfile.TemporaryDirectory() as tmp:
        for c, indices in picks.items():
            (Path(tmp) / c).mkdir()
            for i in indices:
                (Path(tmp) / c / f"{train[i][0]}.png").write_bytes(train[i][2])
        times = []
        for _ in range(repeats):
            tagger.clear_examples()
            start = time.perf_counter()
            report = tagger.add_examples(tmp)
            times.append(time.perf_counter() - start)
            assert sum(report.added.values()) == sum(map(len, picks.values())) and not report.skipped
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--eval-samples", type=int, default=2000, help="seeded subset of the held-out split (0: all)")
    parser.add_argument("--shots", default="1,2,4,8,16", help="examples per class, comma-separated")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default="runs/fewshot/report.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from multimodal.tagging import ZeroShotTagger

    shots = [int(s) for s in args.shots.split(",")]
    train, held_out = read_split("train"), read_split("eval")
    classes = sorted({label for _, label, _ in held_out})
    picks = pick_examples(train, classes, max(shots), args.seed)
    order = np.random.default_rng(args.seed).permutation(len(held_out))[: args.eval_samples or len(held_out)]
    tagger = ZeroShotTagger.from_pretrained("builtin", labels=classes)
    start = time.perf_counter()
    eval_x = embed(tagger, [held_out[i][2] for i in order])
    eval_y = torch.tensor([classes.index(held_out[i][1]) for i in order])
    flat = embed(tagger, [train[i][2] for c in classes for i in picks[c]]).view(len(classes), max(shots), -1)
    examples = dict(zip(classes, flat))
    print(f"embedded {len(order)} + {flat.shape[0] * flat.shape[1]} images in {time.perf_counter() - start:.0f} s")

    zero_shot = top1(tagger.scores(eval_x, classes), eval_y)
    rows = []
    for k in shots:
        set_examples(tagger, examples, k, classes)
        probe = linear_probe(examples, k, eval_x)
        rows.append({"shots": k, "fewshot": top1(tagger.scores(eval_x, classes), eval_y),
                     "linear_probe": None if probe is None else top1(probe, eval_y)})
    partial = partial_runs(tagger, examples, eval_x, eval_y, classes, args.seed)
    times = time_adding(tagger, train, picks)
    report = {"eval_samples": len(order), "seed": args.seed, "threads": args.threads, "zero_shot": zero_shot,
              "alpha": tagger.examples.alpha, "beta": tagger.examples.beta, "shots": rows, "partial": partial,
              "add_examples_seconds": times, "examples_added": sum(map(len, picks.values()))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print_tables(report)


def print_tables(r: dict) -> None:
    print(f"\nFashion-MNIST held-out top-1 ({r['eval_samples']} images), zero-shot {100 * r['zero_shot']:.1f} %")
    print("| examples per class | few-shot (Tip-Adapter) | gain over zero-shot | linear probe |")
    print("| ---: | ---: | ---: | ---: |")
    for row in r["shots"]:
        probe = "—" if row["linear_probe"] is None else f"{100 * row['linear_probe']:.1f} %"
        gain = 100 * (row["fewshot"] - r["zero_shot"])
        print(f"| {row['shots']} | {100 * row['fewshot']:.1f} % | {gain:+.1f} | {probe} |")
    print("\n| examples per class | for the classes | classes without examples: zero-shot → few-shot "
          "| classes with examples: zero-shot → few-shot |")
    print("| ---: | --- | ---: | ---: |")
    for p in r["partial"]:
        print(f"| {p['shots']} | {', '.join(p['classes_with_examples'])} | {100 * p['no_examples_zero_shot']:.1f} → "
              f"{100 * p['no_examples_fewshot']:.1f} % | {100 * p['with_examples_zero_shot']:.1f} → "
              f"{100 * p['with_examples_fewshot']:.1f} % |")
    times = ", ".join(f"{t:.1f}" for t in r["add_examples_seconds"])
    print(f"\nadding {r['examples_added']} examples from a folder: {times} s ({r['threads']} threads)")


if __name__ == "__main__":
    main()
