"""Index and search, both backends: exact (.npy) and FAISS (IVF), on synthetic vectors and on a real folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image

import multimodal as mm
from multimodal.tagging import ZeroShotTagger
from multimodal.tagging.index import (
    EMBEDDINGS,
    FAISS_FILE,
    MANIFEST,
    build_index,
    choose_backend,
    open_index,
    read_manifest,
    search,
    search_vectors,
    write_index,
)


def unit_vectors(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(tmp_path, name: str, vectors: np.ndarray, **kw) -> tuple[Path, dict]:
    files = [f"img{i:05d}.png" for i in range(len(vectors))]
    out = tmp_path / name
    return out, write_index(out, vectors, files, root=tmp_path / "images", model_name="synthetic", **kw)


def test_faiss_top_k_equals_exact_top_k(tmp_path):
    vectors, queries = unit_vectors(3000), unit_vectors(20, seed=1)
    exact, _ = write(tmp_path, "exact", vectors, backend="exact")
    ivf, manifest = write(tmp_path, "faiss", vectors, backend="faiss")
    # a small index is searched in every IVF list (nprobe = nlist), so the answer is the exact one
    assert manifest["faiss"]["nprobe"] == manifest["faiss"]["nlist"] == 3000 // 39
    want, got = search_vectors(exact, queries, top_k=10), search_vectors(ivf, queries, top_k=10)
    assert [[path for path, _ in hits] for hits in got] == [[path for path, _ in hits] for hits in want]
    assert np.allclose([[s for _, s in hits] for hits in got], [[s for _, s in hits] for hits in want], atol=1e-5)
    brute = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]  # and both are the brute-force answer
    assert [[int(Path(p).stem[3:]) for p, _ in hits] for hits in want] == brute.tolist()


def test_fewer_lists_searched_still_finds_most_neighbours(tmp_path):
    vectors, queries = unit_vectors(3000), unit_vectors(50, seed=1)
    ivf, _ = write(tmp_path, "faiss", vectors, backend="faiss")
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]
    hits = search_vectors(ivf, queries, top_k=10, nprobe=40)
    found = [{int(Path(p).stem[3:]) for p, _ in row} & set(t) for row, t in zip(hits, truth.tolist())]
    assert 0.6 < np.mean([len(f) / 10 for f in found]) < 1.0  # approximate, and not useless


@pytest.mark.parametrize("backend", ["exact", "faiss"])
def test_manifest_round_trip_and_atomic_files(tmp_path, backend):
    out, manifest = write(tmp_path, "idx", unit_vectors(200), backend=backend)
    assert read_manifest(out) == json.loads(json.dumps(manifest)) and manifest["backend"] == backend
    assert manifest["root"] == "../images" and manifest["dim"] == 32 and len(manifest["files"]) == 200
    data = EMBEDDINGS if backend == "exact" else FAISS_FILE
    assert sorted(p.name for p in out.iterdir()) == sorted([data, MANIFEST])  # no temporary file left behind
    other = "faiss" if backend == "exact" else "exact"
    _, manifest = write(tmp_path, "idx", unit_vectors(100, seed=2), backend=other)  # rebuilt in place
    assert sorted(p.name for p in out.iterdir()) == sorted([EMBEDDINGS if other == "exact" else FAISS_FILE, MANIFEST])
    assert len(open_index(out).manifest["files"]) == 100  # the process's cached copy follows the new files


def test_auto_picks_exact_below_the_cutoff(tmp_path):
    vectors = unit_vectors(500)
    assert choose_backend("auto", 99_999) == "exact" and choose_backend("auto", 100_000) == "faiss"
    assert write(tmp_path, "small", vectors, backend="auto", auto_cutoff=501)[1]["backend"] == "exact"
    assert write(tmp_path, "large", vectors, backend="auto", auto_cutoff=500)[1]["backend"] == "faiss"
    assert choose_backend("exact", 10**9) == "exact" and choose_backend("faiss", 1) == "faiss"


def test_index_written_before_the_faiss_backend_reads_as_exact(tmp_path):
    out, manifest = write(tmp_path, "old", unit_vectors(50), backend="exact")
    del manifest["backend"]
    (out / MANIFEST).write_text(json.dumps(manifest))
    assert read_manifest(out)["backend"] == "exact"
    assert len(search_vectors(out, unit_vectors(1, seed=3), top_k=3)[0]) == 3


def test_bad_indexes_and_inputs_get_clear_errors(tmp_path):
    vectors = unit_vectors(300)
    with pytest.raises(ValueError, match="backend must be one of exact, faiss, auto"):
        write(tmp_path, "x", vectors, backend="hnsw")
    with pytest.raises(ValueError, match="must be L2-normalized"):
        write(tmp_path, "x", vectors * 2, backend="faiss")
    with pytest.raises(ValueError, match="one embedding per file"):
        write_index(tmp_path / "x", vectors, ["a.png"], root=tmp_path)
    with pytest.raises(FileNotFoundError, match="not an index folder"):
        search_vectors(tmp_path, vectors[:1])
    big, _ = write(tmp_path, "d32", vectors, backend="faiss")
    small, _ = write(tmp_path, "d16", unit_vectors(300, dim=16), backend="faiss")
    with pytest.raises(ValueError, match="built with a 32-d model .* embeds in 16-d"):
        search_vectors(big, unit_vectors(1, dim=16))
    shutil.copy(small / FAISS_FILE, big / FAISS_FILE)  # a faiss file of another dimension than its manifest
    with pytest.raises(ValueError, match="index.faiss holds 16-d vectors but the manifest says 32-d"):
        search_vectors(big, vectors[:1])
    (small / FAISS_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="backend 'faiss' but index.faiss is missing"):
        search_vectors(small, unit_vectors(1, dim=16))
    with pytest.raises(ValueError, match="top_k must be at least 1"):
        search_vectors(big, vectors[:1], top_k=0)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder of real PNG files and a seeded tiny CLIP (untrained: search needs embeddings, not good ones)."""
    root = tmp_path_factory.mktemp("index")
    photos = root / "photos"
    (photos / "sub").mkdir(parents=True)
    for i in range(12):
        make_image(photos / ("sub" if i % 3 == 0 else "") / f"p{i:02d}.png", seed=i, size=(40, 40))
    torch.manual_seed(0)
    clip_dir = mm.create_model("tiny").save_pretrained(root / "clip")
    return {"root": root, "photos": photos, "clip": clip_dir, "tagger": ZeroShotTagger.from_pretrained(clip_dir)}


def test_both_backends_on_a_real_folder_agree(folder, tmp_path):
    tagger, photos = folder["tagger"], folder["photos"]
    exact = build_index(tagger, photos, tmp_path / "exact", backend="exact", progress=False)
    forced = build_index(tagger, photos, tmp_path / "faiss", backend="auto", auto_cutoff=1, progress=False)
    assert exact["backend"] == "exact" and forced["backend"] == "faiss" and exact["files"] == forced["files"]
    assert len(exact["files"]) == 12 and "sub/p00.png" in exact["files"]
    for query in ("a red apple", "a blue car"):
        want, got = search(tagger, tmp_path / "exact", query, 5), search(tagger, tmp_path / "faiss", query, 5)
        assert [p for p, _ in got] == [p for p, _ in want] and Path(got[0][0]).is_file()
        assert np.allclose([s for _, s in got], [s for _, s in want], atol=1e-5)


def cli(*args):
    return subprocess.run([sys.executable, "-m", "multimodal", *args], capture_output=True, text=True, timeout=300)


def test_cli_builds_either_backend_and_search_reads_the_manifest(folder, tmp_path):
    for backend in ("faiss", "exact"):
        run = cli("index", str(folder["photos"]), "--out", str(tmp_path / backend), "--model", str(folder["clip"]),
                  "--backend", backend)
        assert run.returncode == 0 and f"({backend} search)" in run.stderr, run.stderr
    hits = {b: json.loads(cli("search", str(tmp_path / b), "a red apple", "--top-k", "3", "--format", "json").stdout)
            for b in ("faiss", "exact")}
    assert [h["image"] for h in hits["faiss"]] == [h["image"] for h in hits["exact"]] and len(hits["exact"]) == 3
    bad = cli("index", str(folder["photos"]), "--out", str(tmp_path / "x"), "--backend", "annoy")
    assert bad.returncode == 2 and "invalid choice: 'annoy'" in bad.stderr
