"""`shards check`: read every shard to the end, decode every sample, and report each problem by shard and key.

Problems found: truncated or unreadable tar, corrupt or truncated image, decompression bomb, sample
without an image, missing or empty caption, bad JSON metadata, a key seen twice (in one shard or
across shards), and a shard whose sample count disagrees with `index.json`.
"""

from __future__ import annotations

import sys
import tarfile
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageError, open_image
from multimodal.data.samples import parse_sample
from multimodal.data.urls import expand_urls, read_index, shard_dir
from multimodal.errors import MissingError


@dataclass
class Problem:
    shard: str
    key: str | None
    kind: str
    message: str


@dataclass
class ShardCheck:
    shard: str
    samples: int = 0
    keys: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> int:
        """Samples with no problem of their own (shard-level problems carry no key)."""
        return self.samples - len({p.key for p in self.problems if p.key is not None})


@dataclass
class CheckReport:
    shards: list[ShardCheck]

    @property
    def problems(self) -> list[Problem]:
        return [p for s in self.shards for p in s.problems]

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict:
        return {
            "ok": self.ok,
            "num_shards": len(self.shards),
            "num_samples": sum(s.samples for s in self.shards),
            "num_ok_samples": sum(s.ok for s in self.shards),
            "problem_counts": dict(Counter(p.kind for p in self.problems)),
            "shards": [{"shard": s.shard, "samples": s.samples, "ok": s.ok, "problems": len(s.problems)}
                       for s in self.shards],
            "problems": [asdict(p) for p in self.problems],
        }


def _split_name(name: str) -> tuple[str, str]:
    """webdataset's rule: the key runs to the first dot of the file name."""
    directory, _, base = name.rpartition("/")
    stem, _, ext = base.partition(".")
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def _check_sample(shard: str, key: str, files: dict[str, bytes], max_pixels: int | None) -> list[Problem]:
    raw = parse_sample(files, key)
    problems = [Problem(shard, key, kind, message) for kind, message in raw.problems]
    if raw.image is not None:
        try:
            open_image(raw.image, max_pixels=max_pixels, mode=None)
        except ImageError as e:
            kind = e.reason if e.reason == "decompression_bomb" else "corrupt_image"
            problems.insert(0, Problem(shard, key, kind, str(e).replace("<bytes>", f"{key}.{raw.image_ext}")))
    return problems


def check_one_shard(url: str, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> ShardCheck:
    name = Path(url).name
    result = ShardCheck(name)
    current_key, files = None, {}

    def flush():
        if current_key is None:
            return
        result.samples += 1
        result.keys.append(current_key)
        result.problems.extend(_check_sample(name, current_key, files, max_pixels))

    try:
        with tarfile.open(url, mode="r|*") as tar:
            for member in tar:
                if not member.isreg():
                    continue
                key, ext = _split_name(member.name)
                data = tar.extractfile(member).read()
                if key != current_key:
                    flush()
                    current_key, files = key, {}
                if ext in files:
                    result.problems.append(Problem(name, key, "duplicate_key", f"{member.name} appears twice"))
                files[ext] = data
    except (tarfile.TarError, EOFError, OSError) as e:
        result.problems.append(Problem(name, None, "truncated_tar",
                                       f"tar ends early or is unreadable after key {current_key!r}: {e}"))
        current_key = None  # the sample being read when the tar broke is incomplete; it is not counted
    flush()
    return result


def check_shards(spec: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS, workers: int = 1,
                 progress: bool = True) -> CheckReport:
    """Check every shard that `spec` names (a folder, glob, brace pattern or list)."""
    from tqdm.auto import tqdm

    urls = expand_urls(spec)
    missing = [u for u in urls if not Path(u).is_file()]
    if missing:
        raise MissingError(f"shard(s) not found: {missing[:5]}")
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(check_one_shard, urls, [max_pixels] * len(urls)), total=len(urls),
                                unit="shard", disable=not progress, file=sys.stderr))
    else:
        results = [check_one_shard(u, max_pixels) for u in tqdm(urls, unit="shard", disable=not progress,
                                                                 file=sys.stderr)]
    _check_duplicates_across(results)
    folder = shard_dir(urls)
    if folder is not None:
        _check_against_index(results, read_index(folder))
    return CheckReport(results)


def _check_duplicates_across(results: list[ShardCheck]) -> None:
    first_seen: dict[str, str] = {}
    for shard in results:
        for key in shard.keys:
            if key in first_seen:
                where = "earlier in this shard" if first_seen[key] == shard.shard else f"in {first_seen[key]}"
                shard.problems.append(Problem(shard.shard, key, "duplicate_key", f"key already used {where}"))
            else:
                first_seen[key] = shard.shard


def _check_against_index(results: list[ShardCheck], index: dict | None) -> None:
    if not index:
        return
    expected = {s["name"]: s["count"] for s in index.get("shards", [])}
    for shard in results:
        want = expected.get(shard.shard)
        if want is not None and want != shard.samples:
            shard.problems.append(Problem(shard.shard, None, "count_mismatch",
                                          f"index.json says {want} samples, the tar holds {shard.samples}"))


def format_table(report: CheckReport) -> str:
    lines = [f"{'shard':<28} {'samples':>8} {'ok':>8} {'problems':>9}"]
    for s in report.shards:
        lines.append(f"{s.shard:<28} {s.samples:>8} {s.ok:>8} {len(s.problems):>9}")
    d = report.to_dict()
    lines.append(f"{'total':<28} {d['num_samples']:>8} {d['num_ok_samples']:>8} {len(report.problems):>9}")
    if report.problems:
        lines.append("")
        lines.append("problems:")
        for p in report.problems:
            lines.append(f"  {p.shard} {p.key or '-'}: {p.kind}: {p.message}")
    return "\n".join(lines)
