"""Indexing and tagging straight from shards, in one process and split over 2 torchrun ranks (gloo): same output."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import WORDS, free_port, make_image

import multimodal as mm
from multimodal.data.sources import load_source
from multimodal.data.writer import write_shards
from multimodal.tagging.shards import ShardEmbeddings, write_part


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """24 captioned images in 5 shards (5, 5, 5, 5, 4) and a tiny seeded CLIP."""
    root = tmp_path_factory.mktemp("shardinf")
    (root / "captions").mkdir()
    for i in range(24):
        make_image(root / "captions" / f"item{i:02d}.png", seed=i)
        (root / "captions" / f"item{i:02d}.txt").write_text(f"A {WORDS[i % len(WORDS)]} number {i}.\n")
    write_shards(load_source(root / "captions"), root / "shards", shard_size=5, progress=False)
    torch.manual_seed(0)
    mm.create_model("tiny").save_pretrained(root / "clip")
    return root


def run(*args, procs: int = 1) -> subprocess.CompletedProcess:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(procs), "--master_port",
                str(free_port())] if procs > 1 else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([*launcher, "-m", "multimodal", *args], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_index_from_shards_2_ranks_equals_1_rank(setup):
    shards, clip = str(setup / "shards"), str(setup / "clip")
    run("index", shards, "--out", str(setup / "one"), "--model", clip, "--backend", "exact")
    run("index", shards, "--out", str(setup / "two"), "--model", clip, "--backend", "exact", procs=2)
    one, two = (json.loads((setup / d / "manifest.json").read_text()) for d in ("one", "two"))
    assert len(one["files"]) == 24 and one["files"] == two["files"] and one["files"][0].endswith(".tar#item00")
    assert np.array_equal(np.load(setup / "one" / "embeddings.npy"), np.load(setup / "two" / "embeddings.npy"))
    assert not list(setup.glob(".two.parts*"))  # the parts are gone once merged
    hits = run("search", str(setup / "two"), "a red apple", "--top-k", "3", "--format", "json").stdout
    assert all(".tar#item" in hit["image"] for hit in json.loads(hits))


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_tag_shards_2_ranks_equals_1_rank(setup, fmt):
    common = ["tag", str(setup / "shards"), "--labels", "apple,car,tree", "--model", str(setup / "clip"),
              "--format", fmt]
    run(*common, "--out", str(setup / f"one.{fmt}"))
    run(*common, "--out", str(setup / f"two.{fmt}"), procs=2)
    one, two = (setup / f"one.{fmt}").read_bytes(), (setup / f"two.{fmt}").read_bytes()
    if fmt == "parquet":
        import pyarrow.parquet as pq

        one, two = (pq.read_table(setup / f"{n}.parquet").to_pylist() for n in ("one", "two"))
        assert len(one) == 24 * 3 and set(one[0]) == {"image", "label", "score"}
    assert one == two


def test_a_broken_shard_is_reported_and_the_rest_is_indexed(setup, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    for tar in sorted((setup / "shards").glob("*.tar")):
        data = tar.read_bytes()
        (shards / tar.name).write_bytes(data[: len(data) // 3] if tar.name.endswith("000001.tar") else data)
    done = subprocess.run([sys.executable, "-m", "multimodal", "index", str(shards), "--out", str(tmp_path / "idx"),
                           "--model", str(setup / "clip")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "000001.tar" in done.stderr
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert 19 <= len(manifest["files"]) < 24 and any(s["reason"] == "broken_shard" for s in manifest["skipped"])


def test_a_part_is_never_half_written(tmp_path, monkeypatch):
    def dies(path, **arrays):
        open(path, "wb").write(b"half")
        raise KeyboardInterrupt  # the rank is killed while writing

    monkeypatch.setattr(np, "savez", dies)
    part = ShardEmbeddings(["a.tar#k"], np.zeros((1, 4), np.float32), np.zeros(1, np.int64))
    with pytest.raises(KeyboardInterrupt):
        write_part(tmp_path / "part-00000-of-00002.npz", part)
    assert not (tmp_path / "part-00000-of-00002.npz").exists()
