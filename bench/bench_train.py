"""CLIP training throughput, side by side: `multimodal train clip` vs `python -m open_clip_train.main`.

Same scratch architecture (multimodal's `small`, registered in open_clip under the same numbers), same
shards, batch size, worker count, thread count and bf16 autocast; each runs --steps optimizer steps and
reports its steady-state samples/s (median of its logged windows, the first one dropped). Then the
reader alone, with the same training transform, shows whether data loading could be the bottleneck.

    python bench/bench_train.py --shards 'data/corpus/{openclipart,tuxpaint,emoji}/train'
    python bench/bench_train.py --variants "default,foreach AdamW,channels-last,torch.compile"  # what each gives

The default trainer uses torch's fused AdamW; "foreach AdamW" is torch's (and open_clip_train's) default.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


VARIANTS = {"default": [], "foreach AdamW": ["optim.fused=false"], "channels-last": ["model.channels_last=true"],
            "torch.compile": ["model.compile=true"],
            "channels-last + compile": ["model.channels_last=true", "model.compile=true"]}


def run_ours(args, work: Path, overrides: list[str] = ()) -> float:
    run_dir = work / f"ours-{len(list(work.glob('ours-*')))}"
    cmd = [sys.executable, "-m", "multimodal", "train", "clip", "--config", "scratch-small", f"run_dir={run_dir}",
           f"data.train={args.shards}", f"steps={args.steps}", f"data.batch_size={args.batch_size}",
           f"data.num_workers={args.workers}", f"threads={args.threads}", "log_every=5", "eval.every=0",
           "eval.zeroshot={}", "eval.retrieval={}", f"checkpoint_every={args.steps * 10}", "data.caption_templates=[]",
           f"precision={args.precision}", "optim.warmup_steps=5", *overrides]
    subprocess.run(cmd, check=True, env=env(args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rates = [json.loads(line)["train/samples_per_s"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()
             if "train/samples_per_s" in line]
    return statistics.median(rates[1:])


def run_open_clip(args, work: Path, num_samples: int) -> float:
    theirs_precision = "amp_bf16" if args.precision == "bf16" else "fp32"
    from multimodal.models import get_config

    arch = work / "mm-small.json"
    arch.write_text(json.dumps(get_config("small").model_cfg))
    # open_clip_train 3.3 with webdataset >= 0.2.96 crashes on the end-of-shard marker (KeyError 'fname',
    # open_clip issue #935); its maintainers' one-line fix, eof_value=None, is applied here for the run.
    code = ("import sys, functools, open_clip, open_clip_train.data as d; open_clip.add_model_config(sys.argv[1]); "
            "d.tar_file_expander = functools.partial(d.tar_file_expander, eof_value=None); "
            "from open_clip_train.main import main; main(sys.argv[2:])")
    from multimodal.data.urls import expand_urls

    shards = "::".join(expand_urls(args.shards))  # open_clip_train wants shard files, not folders
    cmd = [sys.executable, "-c", code, str(arch), "--model", "mm-small", "--train-data", shards,
           "--dataset-type", "webdataset", "--train-num-samples", str(num_samples), "--batch-size",
           str(args.batch_size), "--workers", str(args.workers), "--precision", theirs_precision, "--device", "cpu",
           "--epochs", "1000", "--warmup", "5", "--lr", "1e-3", "--wd", "0.1", "--log-every-n-steps", "5",
           "--logs", str(work / "open_clip_logs"), "--save-frequency", "0", "--zeroshot-frequency", "0",
           "--val-frequency", "0", "--report-to", "", "--local-loss", "--gather-with-grad", "--dataset-resampled",
           "--grad-clip-norm", "1.0",
           "--seed", "0", "--name", "bench"]
    proc = subprocess.Popen(cmd, env=env(args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rates = []
    for line in proc.stdout:  # "... Batch (t): 1.234, 103.7/s, 103.7/s/gpu ...": the first number is the mean
        match = re.search(r"Batch \(t\): ([\d.]+),", line)  # step time of the window (the /s is the last step's)
        if match:
            rates.append(args.batch_size / float(match.group(1)))
            if len(rates) * 5 >= args.steps:
                break
    proc.kill()
    proc.wait()
    if len(rates) < 2:
        raise RuntimeError("open_clip_train logged no throughput; run it by hand to see why")
    return statistics.median(rates[1:])


def run_reader(args) -> float:
    import torch

    from multimodal.data.reader import ShardReader
    from multimodal.models import create_model

    torch.set_num_threads(args.threads)
    model = create_model("small")
    reader = ShardReader(args.shards, image_transform=model.image_transform(train=True), tokenizer=model.tokenizer,
                         batch_size=args.batch_size, train=True, num_workers=args.workers)
    batches = iter(reader)
    next(batches)
    start, n = time.perf_counter(), 0
    for _ in range(args.reader_batches):
        n += len(next(batches)["caption"])
    return n / (time.perf_counter() - start)


def env(args) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONWARNINGS": "ignore"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="data/corpus/{openclipart,tuxpaint,emoji}/train")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--reader-batches", type=int, default=30)
    parser.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                        help="both trainers; auto: bf16 where the CPU has native bf16 kernels, else fp32")
    parser.add_argument("--variants", default="default", help=f"ours, comma-separated, from {list(VARIANTS)}")
    args = parser.parse_args()
    if args.precision == "auto":
        from multimodal.precision import bf16_is_fast

        args.precision = "bf16" if bf16_is_fast("cpu") else "fp32"
    from multimodal.data.reader import ShardReader

    num_samples = ShardReader(args.shards, image_transform=lambda x: x).num_samples or 10_000
    work = Path(tempfile.mkdtemp(prefix="bench-train-"))
    ours = {name: run_ours(args, work, VARIANTS[name]) for name in args.variants.split(",")}
    theirs = run_open_clip(args, work, num_samples)
    reader = run_reader(args)
    print(f"scratch 'small' CLIP, batch {args.batch_size}, {args.workers} worker(s), {args.threads} threads, "
          f"{args.precision}, {args.steps} steps")
    for name, rate in ours.items():
        print(f"multimodal train clip, {name:<15} {rate:8.1f} samples/s  {rate / theirs:5.2f}x open_clip_train")
    print(f"open_clip_train.main                   {theirs:8.1f} samples/s")
    best = max(ours.values())
    print(f"reader alone                           {reader:8.1f} samples/s = {reader / best:.1f}x what training "
          "consumes")

if __name__ == "__main__":
    main()
