"""Text-to-image search over a folder: image embeddings, searched exactly or through FAISS, beside a manifest.

    INDEX/manifest.json    model, root folder, file list, skipped files, embedding size, backend
    INDEX/embeddings.npy   backend "exact": float32 [N, D], L2-normalized, row i = manifest["files"][i]
    INDEX/index.faiss      backend "faiss": a FAISS IVF-Flat index (inner product) over the same [N, D] vectors

"exact" is one matrix product per query, [N, D] x [D]; "faiss" scans only the `nprobe` nearest of `nlist` ≈ 4·√N
clusters and returns the exact cosine of what it finds. Measured by bench/bench_index.py (README, Benchmarks; D = 384,
2 busy CPU cores): exact takes 32 ms per query at 100k images and 200 ms at a million; faiss 2.4 ms (recall@10 0.99)
and 8 ms (recall@10 0.97), after a build of 21 s and 4 min. `backend="auto"` takes "exact" below `AUTO_CUTOFF`
images, where it is interactive, exact, and needs no build.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from multimodal.data.urls import REMOTE_PREFIXES
from multimodal.errors import MissingError, UsageError
from multimodal.tagging.inputs import expand_paths

EMBEDDINGS = "embeddings.npy"
FAISS_FILE = "index.faiss"
MANIFEST = "manifest.json"
FORMAT = "multimodal-index/1"
BACKENDS = ("exact", "faiss", "auto")
AUTO_CUTOFF = 100_000  # images; below it "auto" searches exactly (bench/bench_index.py: the crossover)
NPROBE = 128           # IVF lists searched per query: recall@10 0.97 at 1M, 0.99 at 100k (bench/bench_index.py)
TRAIN_PER_LIST = 40    # k-means training points per IVF list (faiss asks for 39 to 256)
ADD_CHUNK = 65_536


def build_index(tagger, directory: str | Path, out: str | Path, *, model_name: str = "builtin",
                backend: str = "auto", auto_cutoff: int = AUTO_CUTOFF, progress: bool = True) -> dict:
    """Embed every image under `directory` (recursively) into the index folder `out`; returns the manifest."""
    check_backend(backend)
    directory = Path(directory)
    files = expand_paths([directory])
    if not files:
        raise UsageError(f"{directory}: no images found (looked for .jpg, .png, .webp, ...)")
    feats, indices, errors = tagger.encode_images(files, on_error="skip", progress=progress)
    names = [str(files[i].resolve().relative_to(directory.resolve())) for i in indices]
    skipped = [{"file": str(files[i]), "reason": e.reason, "message": str(e)} for i, e in errors]
    return write_index(out, feats.numpy(), names, root=directory, model_name=model_name, backend=backend,
                       auto_cutoff=auto_cutoff, skipped=skipped, progress=progress)


def build_shard_index(tagger, spec, out: str | Path, *, model_name: str = "builtin", backend: str = "auto",
                      auto_cutoff: int = AUTO_CUTOFF, progress: bool = True) -> dict | None:
    """Embed every sample of webdataset shards into the index folder `out`, split over torchrun ranks when launched
    by torchrun (see `multimodal.tagging.shards`); returns the manifest on rank 0, None on the others.
    A hit is named `SHARD#KEY` under the shards' folder."""
    from multimodal.tagging.shards import embed_shards_distributed

    check_backend(backend)
    merged = embed_shards_distributed(tagger, spec, out, progress=progress)
    if merged is None:
        return None
    if not merged.ids:
        raise UsageError(f"{spec}: no readable image in the shards")
    return write_index(out, merged.vectors, merged.ids, root=merged.root, model_name=model_name, backend=backend,
                       auto_cutoff=auto_cutoff, skipped=merged.skipped, progress=progress)


def write_index(out: str | Path, vectors: np.ndarray, files: list[str], *, root: str | Path,
                model_name: str = "unknown", backend: str = "auto", auto_cutoff: int = AUTO_CUTOFF,
                skipped: list[dict] | None = None, nprobe: int = NPROBE, progress: bool = False) -> dict:
    """Store [N, D] unit vectors (row i: the image `files[i]`, relative to `root`) as an index folder.

    Each file appears under its final name only when complete (written to a temporary name, then renamed)."""
    chosen = choose_backend(backend, len(vectors), auto_cutoff)
    vectors = _check_vectors(vectors, len(files))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = {  # the image folder relative to the index, so that the two can move together
        "format": FORMAT, "model": model_name, "backend": chosen,
        "root": os.path.relpath(Path(root).resolve(), out.resolve()), "files": list(files),
        "skipped": list(skipped or []), "dim": int(vectors.shape[1]), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if chosen == "exact":
        _atomic(out / EMBEDDINGS, lambda tmp: np.save(tmp, vectors))
    else:
        faiss = _faiss()
        index, manifest["faiss"] = build_faiss(vectors, nprobe=nprobe, progress=progress)
        _atomic(out / FAISS_FILE, lambda tmp: faiss.write_index(index, str(tmp)))
    _atomic(out / MANIFEST, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2)))
    stale = out / (FAISS_FILE if chosen == "exact" else EMBEDDINGS)  # left by an earlier build with the other backend
    stale.unlink(missing_ok=True)
    return manifest


def check_backend(backend: str) -> None:
    if backend not in BACKENDS:
        raise UsageError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


def choose_backend(backend: str, n: int, auto_cutoff: int = AUTO_CUTOFF) -> str:
    """'exact' or 'faiss' for an index of `n` images; 'auto' is exact below `auto_cutoff` images."""
    check_backend(backend)
    if backend == "auto":
        return "exact" if n < auto_cutoff else "faiss"
    return backend


def _check_vectors(vectors: np.ndarray, n_files: int) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or len(vectors) != n_files:
        raise UsageError(f"need one embedding per file: got an array of shape {vectors.shape} for {n_files} files")
    if not np.isfinite(vectors).all():
        raise UsageError("the embeddings hold NaN or inf values")
    norms = np.linalg.norm(vectors, axis=1)
    if len(vectors) and np.abs(norms - 1).max() > 1e-3:
        raise UsageError(f"the embeddings must be L2-normalized (norms range {norms.min():.3g} to {norms.max():.3g})")
    return vectors


def _atomic(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _faiss():
    try:
        import faiss
    except ImportError as e:
        raise MissingError("the faiss backend needs the faiss-cpu package: pip install faiss-cpu") from e
    return faiss


def ivf_lists(n: int) -> int:
    """IVF cluster count for `n` vectors: about 4·√n, with at least 39 training points per cluster."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39))


def build_faiss(vectors: np.ndarray, *, nlist: int | None = None, nprobe: int = NPROBE, seed: int = 0,
                progress: bool = False):
    """[N, D] float32 unit vectors -> (trained and filled faiss IVF-Flat inner-product index, its manifest entry)."""
    from tqdm.auto import tqdm

    faiss = _faiss()
    n, dim = vectors.shape
    if n == 0:
        raise UsageError("the faiss backend needs at least one image")
    nlist = nlist or ivf_lists(n)
    factory = f"IVF{nlist},Flat"
    index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.extract_index_ivf(index)
    ivf.cp.niter, ivf.cp.seed, ivf.cp.min_points_per_centroid = 10, seed, 1
    sample = np.random.default_rng(seed).permutation(n)[: nlist * TRAIN_PER_LIST]
    with tqdm(total=n, desc=f"faiss: k-means, {nlist} lists", unit="image", disable=not progress) as bar:
        index.train(vectors[np.sort(sample)])
        bar.set_description("faiss: adding")
        for start in range(0, n, ADD_CHUNK):
            index.add(vectors[start:start + ADD_CHUNK])
            bar.update(min(ADD_CHUNK, n - start))
    return index, {"file": FAISS_FILE, "factory": factory, "nlist": nlist, "nprobe": min(nprobe, nlist)}


# --- reading and searching ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OpenIndex:
    """An index folder read into memory: `vectors` [N, D] (exact, memory-mapped) or `faiss` (an IVF index)."""

    path: Path
    manifest: dict
    vectors: np.ndarray | None = None
    faiss: object | None = None

    @property
    def root(self) -> Path:
        return index_root(self.path, self.manifest)

    def nearest(self, queries: np.ndarray, top_k: int, nprobe: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """queries [Q, D] unit vectors -> (cosine [Q, k], row ids [Q, k]) best first; id -1 pads a short answer."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        dim = self.manifest["dim"]
        if queries.shape[1] != dim:
            raise UsageError(f"{self.path} was built with a {dim}-d model ({self.manifest['model']}); "
                             f"this model embeds in {queries.shape[1]}-d")
        k = min(top_k, len(self.manifest["files"]))
        if self.faiss is None:
            return _exact_top_k(self.vectors, queries, k)
        import faiss

        params = faiss.SearchParametersIVF(nprobe=nprobe or self.manifest["faiss"].get("nprobe", NPROBE))
        return self.faiss.search(queries, k, params=params)


def _exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import torch

    scores = torch.from_numpy(np.asarray(queries @ vectors.T if len(queries) > 1 else (vectors @ queries[0])[None]))
    best = scores.topk(k, dim=1)
    return best.values.numpy(), best.indices.numpy()


def read_manifest(index: str | Path) -> dict:
    """The manifest of an index folder, checked: its backend's data file is there."""
    index = Path(index)
    if not (index / MANIFEST).is_file():
        raise MissingError(f"{index}: not an index folder (no {MANIFEST}); build one with `multimodal index DIR --out "
                           "INDEX`")
    try:
        manifest = json.loads((index / MANIFEST).read_text())
    except json.JSONDecodeError as e:
        raise UsageError(f"{index / MANIFEST}: not valid JSON ({e})") from e
    manifest.setdefault("backend", "exact")  # indexes written before the faiss backend existed
    backend = manifest["backend"]
    if backend not in ("exact", "faiss"):
        raise UsageError(f"{index / MANIFEST}: unknown backend {backend!r} (expected 'exact' or 'faiss')")
    if backend == "faiss" and not isinstance(manifest.get("faiss"), dict):
        raise UsageError(f"{index / MANIFEST}: backend 'faiss' but no 'faiss' settings; rebuild the index")
    data = EMBEDDINGS if backend == "exact" else manifest["faiss"].setdefault("file", FAISS_FILE)
    if not (index / data).is_file():
        raise MissingError(f"{index}: the manifest says backend {backend!r} but {data} is missing; rebuild it with "
                           "`multimodal index DIR --out INDEX`")
    return manifest


def _load(index: Path) -> OpenIndex:
    manifest = read_manifest(index)
    n, dim = len(manifest["files"]), manifest["dim"]
    if manifest["backend"] == "exact":
        data = np.load(index / EMBEDDINGS, mmap_mode="r")
        found_n, found_dim, what = data.shape[0], data.shape[1], EMBEDDINGS
        loaded = OpenIndex(index, manifest, vectors=data)
    else:
        data = _faiss().read_index(str(index / manifest["faiss"]["file"]))
        found_n, found_dim, what = data.ntotal, data.d, manifest["faiss"]["file"]
        loaded = OpenIndex(index, manifest, faiss=data)
    if found_dim != dim:
        raise UsageError(f"{index}: {what} holds {found_dim}-d vectors but the manifest says {dim}-d; "
                         "rebuild the index")
    if found_n != n:
        raise UsageError(f"{index}: {found_n} embeddings in {what} but {n} files listed in {MANIFEST}")
    return loaded


_OPEN: dict[str, tuple[tuple, OpenIndex]] = {}
_OPEN_LOCK = threading.Lock()


def open_index(index: str | Path) -> OpenIndex:
    """The index folder, read once per process and read again only when its files change (a web demo's searches)."""
    index = Path(index)
    key = str(index.resolve())
    stamp = tuple((p.stat().st_mtime_ns, p.stat().st_ino, p.stat().st_size) if p.exists() else None
                  for p in (index / MANIFEST, index / EMBEDDINGS, index / FAISS_FILE))
    with _OPEN_LOCK:
        cached = _OPEN.get(key)
    if cached and cached[0] == stamp:
        return cached[1]
    loaded = _load(index)
    with _OPEN_LOCK:
        _OPEN[key] = (stamp, loaded)  # replaces an older version of the same folder
    return loaded


def search_vectors(index: str | Path, queries: np.ndarray, top_k: int = 5,
                   nprobe: int | None = None) -> list[list[tuple[str, float]]]:
    """queries [Q, D] unit vectors -> per query [(image path, cosine similarity), ...] best first."""
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    opened = open_index(index)
    scores, ids = opened.nearest(queries, top_k, nprobe)
    files, root = opened.manifest["files"], opened.root
    return [[(files[i] if files[i].startswith(REMOTE_PREFIXES) else str(root / files[i]), float(s))
             for s, i in zip(row_s, row_i) if i >= 0] for row_s, row_i in zip(scores, ids)]


def search(tagger, index: str | Path, query: str, top_k: int = 5) -> list[tuple[str, float]]:
    """[(image path, cosine similarity), ...] best first, from either backend."""
    if not query.strip():
        raise UsageError("the search query is empty")
    if top_k < 1:
        raise UsageError(f"top_k must be at least 1, got {top_k}")
    open_index(index)  # a missing or broken index is named before the text tower runs
    query_emb = tagger.model.embed_texts([query])[0].cpu().numpy()  # the query as written, no template
    return search_vectors(index, query_emb[None], top_k)[0]


def index_root(index: str | Path, manifest: dict | None = None) -> Path:
    """The image folder of an index (stored relative to the index folder, or absolute)."""
    index = Path(index)
    manifest = manifest or json.loads((index / MANIFEST).read_text())
    return (index / manifest["root"]).resolve()
