"""Write `SourceItem`s into webdataset `.tar` shards: parallel, resumable, and never half-written.

Layout of an output folder:
    shard-000000.tar ...   samples: <key>.{jpg|png|webp}, <key>.txt, <key>.json
    index.json             shard names and sample counts, skip counts by reason (our reader uses it)
    sizes.json             {shard name: count}, the file open_clip_train reads for the dataset size
    skipped.jsonl          one line per skipped item: key, source, reason, message (and line, for a CSV/JSONL row)
    _stats/                per-shard results, so a resumed run knows what finished shards held; plan.json
    .lock                  the PID of the writer at work (see `multimodal.data.resume`)

Items are cut into shards by position, so shard i always holds the same items. A shard is written
to a temporary name and renamed when complete; a rerun skips every shard whose final name exists.
"""

from __future__ import annotations

import io
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import webdataset as wds
from PIL import Image

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageError, has_alpha, open_image
from multimodal.data.resume import acquire_lock, atomic_write_text, check_parent, check_plan, describe_plan, init_worker
from multimodal.data.sources import SourceItem, load_image_bytes
from multimodal.errors import UsageError

INDEX_FORMAT = "multimodal-shards/1"
_KEPT_FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}


@dataclass
class ShardResult:
    name: str
    count: int
    skipped: list[dict] = field(default_factory=list)


@dataclass
class WriteReport:
    out_dir: Path
    shards: list[ShardResult]
    resumed: int  # shards found complete from an earlier run

    @property
    def num_samples(self) -> int:
        return sum(s.count for s in self.shards)

    @property
    def skipped(self) -> list[dict]:
        return [s for shard in self.shards for s in shard.skipped]

    def skip_counts(self) -> dict[str, int]:
        return dict(Counter(s["reason"] for s in self.skipped))


def encode_image(data: bytes, max_side: int | None, max_pixels: int | None,
                 name: str | None = None) -> tuple[str, bytes, tuple[int, int]]:
    """Validate by a full decode; keep the original bytes unless a resize or a format change is needed."""
    img = open_image(data, max_pixels=max_pixels, mode=None, name=name)
    size = img.size
    ext = _KEPT_FORMATS.get(img.format or "")
    if ext and (max_side is None or max(size) <= max_side):
        return ext, data, size
    transparent = has_alpha(img)
    if max_side is not None and max(size) > max_side:
        if transparent:  # a colour key must become alpha before filtering, or its colour bleeds into the edges
            img = img.convert("RGBA")
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    if ext == "jpg" and not transparent:
        img.convert("RGB").save(buf, "JPEG", quality=95)
    else:
        ext = "png"
        img.convert("RGBA" if transparent else "RGB").save(buf, "PNG", optimize=False)
    return ext, buf.getvalue(), size


def _skip(item: SourceItem, reason: str, message: str) -> dict:
    source = (item.source_name() if isinstance(item.image, str) else item.key) or item.meta.get("source", item.key)
    skip = {"key": item.key, "source": source, "reason": reason, "message": message}
    return skip if item.line is None else {**skip, "line": item.line}


def write_one_shard(path: Path, items: Sequence[SourceItem], max_side: int | None, max_pixels: int | None,
                    stats_path: Path) -> ShardResult:
    """Write one shard to a temporary file, record its stats, then rename it into place."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    result = ShardResult(path.name, 0)
    with wds.TarWriter(str(tmp)) as sink:
        for item in items:
            check_parent()
            if item.problem:
                result.skipped.append(_skip(item, *item.problem))
                continue
            if not item.caption or not item.caption.strip():
                result.skipped.append(_skip(item, "missing_caption", "no caption text"))
                continue
            try:
                data = load_image_bytes(item.image)
                ext, encoded, size = encode_image(data, max_side, max_pixels, name=item.source_name())
            except ImageError as e:
                result.skipped.append(_skip(item, e.reason, str(e)))
                continue
            except OSError as e:  # missing file, unreachable URL
                result.skipped.append(_skip(item, "unreadable", f"{item.source_name()}: {e}"))
                continue
            meta = {"source": item.meta.get("source", item.source_name()), "width": size[0], "height": size[1],
                    "labels": item.labels, **{k: v for k, v in item.meta.items() if k != "source"}}
            sink.write({"__key__": item.key, ext: encoded, "txt": item.caption.strip(),
                        "json": json.dumps(meta, ensure_ascii=False).encode()})
            result.count += 1
    atomic_write_text(stats_path, json.dumps({"name": result.name, "count": result.count, "skipped": result.skipped}))
    os.replace(tmp, path)
    return result


def write_shards(items: Sequence[SourceItem], out_dir: str | Path, *, shard_size: int = 1000,
                 max_side: int | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int = 1,
                 prefix: str = "shard", overwrite: bool = False, index_extra: dict | None = None,
                 progress: bool = True) -> WriteReport:
    """Write `items` as shards of `shard_size` samples into `out_dir`; resumes an interrupted run."""
    if shard_size < 1:
        raise UsageError(f"shard_size must be at least 1, got {shard_size}")
    out_dir = Path(out_dir)
    (out_dir / "_stats").mkdir(parents=True, exist_ok=True)
    lock = acquire_lock(out_dir)
    try:
        settings = {"shard_size": shard_size, "max_side": max_side, "max_pixels": max_pixels, "prefix": prefix}
        check_plan(out_dir, describe_plan(items, settings), overwrite)
        for leftover in [*out_dir.glob(".*.tmp"), *(out_dir / "_stats").glob(".*.tmp")]:
            leftover.unlink()  # debris of a killed run; the lock says nobody else writes here
        chunks = [items[i:i + shard_size] for i in range(0, len(items), shard_size)]
        names = [f"{prefix}-{i:06d}.tar" for i in range(len(chunks))]
        results: dict[str, ShardResult] = {}
        todo = []
        for name, chunk in zip(names, chunks):
            stats = out_dir / "_stats" / f"{name}.json"
            if (out_dir / name).exists() and stats.exists():
                results[name] = ShardResult(**json.loads(stats.read_text()))
            else:
                todo.append((name, chunk, stats))
        resumed = len(results)
        _run_jobs(out_dir, todo, results, max_side, max_pixels, workers, progress, len(items), resumed, lock)
        shards = [results[name] for name in names]
        report = WriteReport(out_dir, shards, resumed)
        _write_index(report, shard_size, index_extra or {})
        return report
    finally:
        os.close(lock)


def _run_jobs(out_dir, todo, results, max_side, max_pixels, workers, progress, total, resumed, lock) -> None:
    from tqdm.auto import tqdm

    done_items = sum(r.count + len(r.skipped) for r in results.values())
    bar = tqdm(total=total, initial=done_items, unit="img", desc=f"shards -> {out_dir.name}",
               disable=not progress, file=sys.stderr)
    if resumed and progress:
        bar.write(f"resuming: {resumed} shard(s) already complete")
    try:
        if workers <= 1:
            for name, chunk, stats in todo:
                results[name] = write_one_shard(out_dir / name, chunk, max_side, max_pixels, stats)
                bar.update(len(chunk))
            return
        lock_id = (os.fstat(lock).st_dev, os.fstat(lock).st_ino)
        with ProcessPoolExecutor(max_workers=workers, initializer=init_worker,
                                 initargs=(os.getpid(), lock, lock_id)) as pool:
            futures = {pool.submit(write_one_shard, out_dir / name, chunk, max_side, max_pixels, stats): (name, chunk)
                       for name, chunk, stats in todo}
            for future in as_completed(futures):
                name, chunk = futures[future]
                results[name] = future.result()
                bar.update(len(chunk))
    finally:
        bar.close()


def _write_index(report: WriteReport, shard_size: int, extra: dict) -> None:
    out_dir = report.out_dir
    index = {
        "format": INDEX_FORMAT,
        "num_samples": report.num_samples,
        "shard_size": shard_size,
        "shards": [{"name": s.name, "count": s.count} for s in report.shards],
        "skipped": report.skip_counts(),
        "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        **extra,
    }
    atomic_write_text(out_dir / "index.json", json.dumps(index, indent=2, ensure_ascii=False))
    atomic_write_text(out_dir / "sizes.json", json.dumps({s.name: s.count for s in report.shards}, indent=2))
    lines = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in report.skipped)
    atomic_write_text(out_dir / "skipped.jsonl", lines)
