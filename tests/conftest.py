"""Shared fixtures: tiny real image sources built in tmp_path that mimic the real layouts."""

from __future__ import annotations

import socket
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

WORDS = ["red apple", "blue car", "green tree", "smiling face", "yellow star", "black cat", "white dog", "orange fish"]


def free_port() -> int:
    """A port nobody listens on now (torchrun's rendezvous, the demo's server): fixed ports collide between runs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_image(path: Path, seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Path:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 255, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode).save(path)
    return path


COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220), "yellow": (240, 220, 20),
           "black": (10, 10, 10), "white": (245, 245, 245)}


def colour_image(path: Path, rgb, seed: int) -> Path:
    """A 40x40 patch of one colour with a little noise: a concept a tiny CLIP learns in a minute."""
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(rgb)[None, None] + rng.normal(0, 12, (40, 40, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def train_tiny_clip(shards: Path, run_dir: Path, steps: int, batch_size: int, threads: int = 2) -> Path:
    """A tiny scratch CLIP (tiny-ci) trained for real on `shards`; returns its saved folder."""
    from multimodal_train.clip import train
    from multimodal_train.config import load_config

    cfg = load_config("tiny-ci", [f"run_dir={run_dir}", f"data.train={shards}", f"steps={steps}",
                                  f"data.batch_size={batch_size}", "data.num_workers=0", "data.augment=false",
                                  "optim.lr=2e-3", "optim.warmup_steps=10", "eval.zeroshot={}", "eval.retrieval={}",
                                  "checkpoint_every=1000", f"threads={threads}", "log_every=20"])
    train(cfg)
    return run_dir / "final"


def png_bomb_bytes(width: int = 50_000, height: int = 50_000) -> bytes:
    """A tiny PNG whose header claims width x height pixels (the pixel data is a stub)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(autouse=True, scope="session")
def private_cache_home(tmp_path_factory):
    """The CLI's default label cache lives under $XDG_CACHE_HOME: keep the tests' own, never the user's."""
    import os

    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))


@pytest.fixture
def caption_dir(tmp_path: Path) -> Path:
    """Tux Paint-like: nested folders of X.png / X.jpg beside X.txt captions (first line English)."""
    root = tmp_path / "captions"
    for i in range(24):
        folder = root / ("animals" if i % 2 else "food") / f"group{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        ext = ".jpg" if i % 4 == 0 else ".png"
        make_image(folder / f"item{i:02d}{ext}", seed=i)
        (folder / f"item{i:02d}.txt").write_text(f"A {WORDS[i % len(WORDS)]} number {i}.\nfr.utf8=Une chose.\n")
    return root


@pytest.fixture
def imagefolder_dir(tmp_path: Path) -> Path:
    root = tmp_path / "imagefolder"
    for c, name in enumerate(["ankle_boot", "t-shirt", "bag"]):
        (root / name).mkdir(parents=True)
        for i in range(5):
            make_image(root / name / f"{i}.png", seed=100 * c + i, mode="L")
    return root
