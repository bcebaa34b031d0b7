"""Embedding shards for an index with 1 process and with N torchrun processes (gloo), same machine, same shards.

Each configuration runs `multimodal index SHARDS` end to end (imports, model load, embedding, merge, writing);
the figure reported is images per second of the whole command, and the merged indexes are checked equal.
With N processes each gets `--threads / N` intra-op threads, so every row uses the same cores.

    python bench/bench_shard_inference.py --shards data/corpus/emoji/train --procs 1,2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def run(shards: str, model: str, out: Path, procs: int, threads: int) -> float:
    launcher = [sys.executable] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port", "29611"]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // procs))}
    start = time.perf_counter()
    subprocess.run([*launcher, "-m", "multimodal", "index", shards, "--out", str(out), "--model", model,
                    "--backend", "exact"], check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shards", default="data/corpus/emoji/train", help="shard spec to embed")
    parser.add_argument("--model", default="builtin", help="model to embed with")
    parser.add_argument("--procs", default="1,2", help="comma-separated process counts")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads in all, shared by the processes")
    args = parser.parse_args()
    rows, reference = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for procs in [int(p) for p in args.procs.split(",")]:
            out = Path(tmp) / f"index-{procs}"
            seconds = run(args.shards, args.model, out, procs, args.threads)
            files = json.loads((out / "manifest.json").read_text())["files"]
            vectors = np.load(out / "embeddings.npy")
            if reference is None:
                reference = (files, vectors)
            same = files == reference[0] and np.array_equal(vectors, reference[1])
            rows.append((procs, len(files), seconds, len(files) / seconds, same))
    print(f"{'processes':>9} {'images':>7} {'seconds':>8} {'images/s':>9}  equal to 1 process")
    for procs, n, seconds, rate, same in rows:
        print(f"{procs:>9} {n:>7} {seconds:>8.1f} {rate:>9.1f}  {same}")


if __name__ == "__main__":
    main()
