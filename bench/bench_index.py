"""Search at scale: the exact backend against the FAISS IVF backend, on the library's own code paths.

For each size N (default 100k and 1M) it draws N synthetic 384-d unit vectors, writes them with
`multimodal.tagging.index.write_index` as both backends, and reports for each:

  build     seconds to write the index (FAISS: k-means training + adding + writing)
  memory    the index's size: on disk, and in RAM once opened (the exact .npy is memory-mapped; IVF-Flat
            holds every vector plus its id, so both are ~N x 384 x 4 bytes)
  latency   p50 / p95 of single-query searches (`OpenIndex.nearest(q, 10)`, one query at a time)
  recall@10 against the exact top 10, over held-out queries, for a sweep of nprobe

The default vectors (`--data anisotropic`) are Gaussian with a power-law spectrum (variance of the
i-th principal axis ~ 1/i, in a random basis), then L2-normalized: like image embeddings, most of the
variance sits in a few dozen directions, but there are no clean clusters for an IVF index to exploit, so
recall is lower here than on clustered data (`--data clustered`: 1,000 random centres, each point at
cosine ~0.7 to its centre). `--data uniform` has no structure at all: the worst case for any IVF index.
Queries are fresh draws from the same distribution, not database rows.

    OMP_NUM_THREADS=2 python bench/bench_index.py                       # 100k and 1M, about 6 minutes here
    python bench/bench_index.py --sizes 20000 --nprobes 4,16 --data clustered     # a quick look
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from multimodal.tagging.index import NPROBE, open_index, write_index


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def sampler(data: str, dim: int, rng: np.random.Generator):
    """A function m -> [m, dim] float32 unit vectors, all from one fixed distribution."""
    if data == "clustered":
        centres = unit(rng.standard_normal((1000, dim), dtype=np.float32))
        return lambda m: unit(centres[rng.integers(len(centres), size=m)]
                              + rng.standard_normal((m, dim), dtype=np.float32) / np.sqrt(dim))
    if data == "uniform":
        return lambda m: unit(rng.standard_normal((m, dim), dtype=np.float32))
    basis = np.linalg.qr(rng.standard_normal((dim, dim)))[0].astype(np.float32)
    scale = (np.arange(1, dim + 1) ** -0.5).astype(np.float32)  # axis i has variance 1/i
    return lambda m: unit((rng.standard_normal((m, dim), dtype=np.float32) * scale) @ basis.T)


def draw(n: int, sample, chunk: int = 100_000) -> np.ndarray:
    out = np.empty((n, sample(1).shape[1]), dtype=np.float32)
    for start in range(0, n, chunk):
        out[start:start + chunk] = sample(min(chunk, n - start))
    return out


def exact_top10(vectors: np.ndarray, queries: np.ndarray, chunk: int = 100) -> np.ndarray:
    ids = []
    for start in range(0, len(queries), chunk):
        scores = queries[start:start + chunk] @ vectors.T
        top = np.argpartition(-scores, 10, axis=1)[:, :10]
        ids.append(np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1))
    return np.concatenate(ids)


def latency_ms(opened, queries: np.ndarray, nprobe: int | None = None) -> tuple[float, float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        opened.nearest(q[None], 10, nprobe)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def recall(opened, queries: np.ndarray, truth: np.ndarray, nprobe: int) -> float:
    _, ids = opened.nearest(queries, 10, nprobe)
    return float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth)]))


def bench_size(n: int, args, rng: np.random.Generator, workdir: Path) -> list[dict]:
    sample = sampler(args.data, args.dim, rng)
    start = time.perf_counter()
    vectors = draw(n, sample)
    queries = draw(args.queries + args.latency_queries, sample)
    recall_q, latency_q = queries[:args.queries], queries[args.queries:]
    truth = exact_top10(vectors, recall_q)
    print(f"N={n:,}: drew vectors and exact top-10 of {args.queries} queries in {time.perf_counter() - start:.1f} s",
          file=sys.stderr)
    files = [f"{i}.png" for i in range(n)]
    rows = []
    for backend in ("exact", "faiss"):
        out = workdir / f"{backend}-{n}"
        start = time.perf_counter()
        manifest = write_index(out, vectors, files, root=workdir, backend=backend, progress=False)
        build = time.perf_counter() - start
        size = sum(p.stat().st_size for p in out.iterdir() if p.name != "manifest.json") / 2**20
        opened = open_index(out)
        opened.nearest(latency_q[:1], 10)  # warm: pages of the memory map, the faiss lists
        nprobes = [None] if backend == "exact" else args.nprobes
        for nprobe in nprobes:
            p50, p95 = latency_ms(opened, latency_q, nprobe)
            rows.append({"N": n, "backend": backend if nprobe is None else f"faiss {manifest['faiss']['factory']}",
                         "nprobe": nprobe, "recall": 1.0 if nprobe is None else recall(opened, recall_q, truth, nprobe),
                         "p50": p50, "p95": p95, "build": build, "size": size})
            print(fmt(rows[-1], rows[0]["p50"]), file=sys.stderr)
        del opened
    return rows


HEADER = f"{'N':>9}  {'backend':<22} {'nprobe':>6} {'recall@10':>9} {'p50 ms':>8} {'p95 ms':>8} {'speed-up':>8} " \
         f"{'build s':>8} {'index MB':>8}"


def fmt(row: dict, exact_p50: float) -> str:
    return (f"{row['N']:>9,}  {row['backend']:<22} {row['nprobe'] or '-':>6} {row['recall']:>9.3f} {row['p50']:>8.2f} "
            f"{row['p95']:>8.2f} {exact_p50 / row['p50']:>7.1f}x {row['build']:>8.1f} {row['size']:>8.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated index sizes")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--data", choices=["anisotropic", "clustered", "uniform"], default="anisotropic")
    parser.add_argument("--queries", type=int, default=1000, help="queries for recall@10")
    parser.add_argument("--latency-queries", type=int, default=100, help="single queries timed one at a time")
    parser.add_argument("--nprobes", default="32,64,128,256", help="IVF lists searched per query, swept")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    args.nprobes = [int(x) for x in args.nprobes.split(",")]
    rng = np.random.default_rng(args.seed)
    start = time.perf_counter()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            rows += bench_size(n, args, rng, Path(tmp))
    print(f"\n{args.dim}-d {args.data} unit vectors, library default nprobe {NPROBE}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}, {os.cpu_count()} CPUs, "
          f"{time.perf_counter() - start:.0f} s in all, peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.1f} GB")
    print(HEADER)
    for row in rows:
        exact = next(r for r in rows if r["N"] == row["N"] and r["nprobe"] is None)
        print(fmt(row, exact["p50"]))


if __name__ == "__main__":
    main()
