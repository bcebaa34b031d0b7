"""Image inputs for the tagger: paths, PIL images or tensors, decoded and preprocessed in background
threads (Pillow releases the GIL) while the model works on the previous batch."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image, to_mode
from multimodal.data.sources import iter_image_files
from multimodal.errors import MissingError, UsageError

ImageInput = str | os.PathLike | Image.Image | torch.Tensor | bytes  # bytes: an encoded file (e.g. from a shard)


def as_list(images: ImageInput | Sequence[ImageInput]) -> tuple[list[ImageInput], bool]:
    """(list of inputs, whether a single input was given). A folder stands for its images, walked recursively
    (as the CLI walks it); it counts as several inputs."""
    if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
        files = expand_paths([images])
        if not files:
            raise UsageError(f"{images}: no images found in this folder (looked for .jpg, .png, .webp, ...)")
        return list(files), False
    single = (str, os.PathLike, Image.Image, bytes)
    if isinstance(images, single) or (isinstance(images, torch.Tensor) and images.ndim == 3):
        return [images], True
    if isinstance(images, torch.Tensor):  # a batch [B, 3, H, W]
        return list(images), False
    images = [item for image in images for item in (as_list(image)[0] if _is_dir(image) else [image])]
    if not images:
        raise UsageError("no images given")
    return images, False


def _is_dir(item) -> bool:
    return isinstance(item, (str, os.PathLike)) and Path(item).is_dir()


def name_of(item: ImageInput, index: int) -> str:
    return str(item) if isinstance(item, (str, os.PathLike)) else f"<{type(item).__name__} #{index}>"


def prepare(item: ImageInput, preprocess: Callable, image_size: int, max_pixels: int | None) -> torch.Tensor:
    """One input -> [3, S, S] float tensor ready for the model; raises ImageError naming the problem."""
    if isinstance(item, (str, os.PathLike, bytes)):
        return preprocess(open_image(item, max_pixels=max_pixels))
    if isinstance(item, Image.Image):
        from multimodal.data.images import check_pixels

        check_pixels(item.size, max_pixels)
        return preprocess(to_mode(item, "RGB"))
    if isinstance(item, torch.Tensor):
        if item.dtype == torch.uint8:  # raw pixels, [3, H, W] or [H, W, 3]
            hwc = item if item.shape[-1] == 3 else item.permute(1, 2, 0)
            return preprocess(Image.fromarray(hwc.contiguous().numpy()))
        if item.shape != (3, image_size, image_size):
            raise ImageError("bad_tensor", f"a float tensor must be a preprocessed image of shape "
                                           f"(3, {image_size}, {image_size}); got {tuple(item.shape)}")
        return item.float()
    raise ImageError("bad_input", f"cannot tag a {type(item).__name__}: give a path, encoded bytes, a PIL image "
                                  "or a tensor")


@dataclass
class Batch:
    indices: list[int]  # positions in the input list of the images that loaded
    pixels: torch.Tensor | None  # [B, 3, S, S]
    errors: list[tuple[int, ImageError]]


def iter_batches(items: Sequence[ImageInput], preprocess: Callable, image_size: int, batch_size: int = 32,
                 threads: int = 2, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> Iterator[Batch]:
    """Batches in input order; up to two batches are prepared ahead in `threads` background threads."""

    def load(index: int):
        try:
            return index, prepare(items[index], preprocess, image_size, max_pixels), None
        except ImageError as e:
            if isinstance(items[index], (str, os.PathLike)) and str(items[index]) not in str(e):
                e = ImageError(e.reason, f"{items[index]}: {e}")
            return index, None, e

    def load_batch(start: int) -> Batch:
        results = list(pool.map(load, range(start, min(start + batch_size, len(items)))))
        ok = [(i, t) for i, t, e in results if e is None]
        return Batch([i for i, _ in ok], torch.stack([t for _, t in ok]) if ok else None,
                     [(i, e) for i, _, e in results if e is not None])

    with ThreadPoolExecutor(max(1, threads)) as pool, ThreadPoolExecutor(1) as ahead:
        starts = list(range(0, len(items), batch_size))
        pending = [ahead.submit(load_batch, s) for s in starts[:2]]
        for k in range(len(starts)):
            batch = pending.pop(0).result()
            if k + 2 < len(starts):
                pending.append(ahead.submit(load_batch, starts[k + 2]))
            yield batch


def expand_paths(inputs: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given, folders walked recursively for images (sorted)."""
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            out.extend(iter_image_files(path))
        elif path.exists():
            out.append(path)
        else:
            raise MissingError(f"{path}: no such file or folder")
    return out
