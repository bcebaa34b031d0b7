"""Where samples come from before they become shards: caption folders, ImageFolders, CSV and JSONL.

Each source yields `SourceItem`s. An item holds a *reference* to its image (a path, a URL, or a
picklable loader), never the decoded pixels, so a plan of 100k items is cheap and can be handed
to worker processes.
"""

from __future__ import annotations

import csv
import errno
import functools
import glob
import hashlib
import json
import os
import re
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from multimodal.data.images import is_image_path
from multimodal.data.urls import REMOTE_PREFIXES
from multimodal.errors import MissingError, UsageError

SOURCE_TYPES = ("auto", "captions", "imagefolder", "csv", "jsonl")
IMAGE_COLUMNS = ("image", "image_path", "filepath", "path", "file", "url", "image_url")
CAPTION_COLUMNS = ("caption", "text", "title", "description")
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


@dataclass
class SourceItem:
    key: str
    caption: str | None
    image: str | Callable[[], bytes]  # local path, http(s) URL, or a picklable loader returning encoded bytes
    labels: list[str] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    line: int | None = None  # line of a CSV/JSONL source, for reports
    problem: tuple[str, str] | None = None  # (reason, message) of an item known bad when listed; written as a skip

    def source_name(self) -> str:
        return self.image if isinstance(self.image, str) else self.meta.get("source", self.key)


def make_key(text: str) -> str:
    """A webdataset key: no dots (webdataset splits the extension at the first dot) and no slashes."""
    return _KEY_UNSAFE.sub("_", text).strip("_") or "sample"


def dedupe_keys(items: list[SourceItem], source_name: Callable[[SourceItem], str] | None = None) -> list[SourceItem]:
    """Make keys unique by suffixing a short hash of the source (`source_name(item)`, else `item.source_name()`);
    the order is kept. A renamed item keeps the split of the key it was given (`meta["split_key"]`), so two copies
    of one thing never straddle train and eval."""
    seen: set[str] = set()
    for item in items:
        if item.key in seen:
            item.meta.setdefault("split_key", item.key)
            key, salt = item.key, (source_name or SourceItem.source_name)(item)
            while key in seen:
                salt = hashlib.sha1(salt.encode()).hexdigest()
                key = f"{item.key}-{salt[:8]}"
            item.key = key
        seen.add(item.key)
    return items


def load_image_bytes(ref: str | Callable[[], bytes], timeout: float = 30.0) -> bytes:
    if callable(ref):
        return ref()
    if ref.startswith(("http://", "https://")):
        with urllib.request.urlopen(ref, timeout=timeout) as response:  # noqa: S310 - user-provided dataset URL
            return response.read()
    return Path(ref).read_bytes()


def read_caption(path: Path, whole_file: bool = False) -> str | None:
    text = path.read_text(encoding="utf-8", errors="replace")
    if whole_file:
        return " ".join(text.split()) or None
    return next((line.strip() for line in text.splitlines() if line.strip()), None)


def humanize(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def iter_image_files(root: Path, *, broken_links: bool = False) -> Iterator[Path]:
    """Image files under `root`, sorted; with `broken_links`, also dangling or looping symlinks named like images."""
    yield from sorted(p for p in root.rglob("*") if is_image_path(p)
                      and (p.is_file() or (broken_links and p.is_symlink() and not p.exists())))


def link_problem(path: Path) -> tuple[str, str] | None:
    """("broken_symlink", why) for a symlink that leads to no file, else None."""
    if not path.is_symlink() or path.exists():
        return None
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "broken_symlink", f"{path}: symlink loop"
    return "broken_symlink", f"{path}: dangling symlink to {os.readlink(path)}"


def caption_folder(root: Path, *, whole_file: bool = False) -> list[SourceItem]:
    """Images with a same-stem `.txt` caption; images without one are kept with caption None (skipped later)."""
    items = []
    for path in iter_image_files(root, broken_links=True):
        rel = path.relative_to(root)
        txt = path.with_suffix(".txt")
        caption = read_caption(txt, whole_file) if txt.is_file() else None
        items.append(SourceItem(make_key(str(rel.with_suffix(""))), caption, str(path), meta={"source": str(rel)},
                                problem=link_problem(path)))
    return items


def image_folder(root: Path, *, template: str = "{}") -> list[SourceItem]:
    """One subfolder per class; the caption is `template` filled with the humanized class name."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    if not classes:
        raise UsageError(f"{root}: an ImageFolder needs one subfolder per class, found none")
    items = []
    for label in classes:
        for path in iter_image_files(root / label, broken_links=True):
            rel = path.relative_to(root)
            caption = template.format(humanize(label))
            key = make_key(str(rel.with_suffix("")))
            items.append(SourceItem(key, caption, str(path), [label], {"source": str(rel)}, problem=link_problem(path)))
    return items


def _pick_column(columns: list[str], wanted: str | None, candidates: tuple[str, ...], what: str, src: Path) -> str:
    if wanted:
        if wanted not in columns:
            raise UsageError(f"{src}: no {what} column {wanted!r}; columns are {columns}")
        return wanted
    for name in candidates:
        if name in columns:
            return name
    raise UsageError(f"{src}: cannot tell which column holds the {what} (tried {list(candidates)}); "
                     f"columns are {columns}. Name it with --{what}-col")


def table_rows(src: Path, kind: str) -> Iterator[tuple[int, dict | str]]:
    """(line number, row) for each row; a row that is not a record comes as a string saying why."""
    yield from (_jsonl_rows(src) if kind == "jsonl" else _csv_rows(src))


def _jsonl_rows(src: Path) -> Iterator[tuple[int, dict | str]]:
    names = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}
    with open(src, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise UsageError(f"{src}:{lineno}: not valid JSON ({e.msg})") from None
                yield lineno, row if isinstance(row, dict) else f"a JSON {names[type(row)]}, not an object"


def _csv_rows(src: Path) -> Iterator[tuple[int, dict | str]]:
    with open(src, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, dialect="excel-tab" if src.suffix.lower() == ".tsv" else "excel")
        header = next(reader, [])
        start = reader.line_num + 1
        for row in reader:
            if len(row) > len(header):  # csv.DictReader would cut such a row silently
                yield start, f"{len(row)} fields where the header has {len(header)} (quote a field that holds a comma)"
            elif row:  # a blank line is no row, as for csv.DictReader
                yield start, dict(zip(header, row + [None] * (len(header) - len(row))))
            start = reader.line_num + 1


def table_source(src: Path, kind: str, *, image_col: str | None = None, caption_col: str | None = None,
                 label_col: str | None = None) -> list[SourceItem]:
    """A CSV/TSV or JSONL file with an image path-or-URL column and a caption column."""
    rows = list(table_rows(src, kind))
    if not rows:
        raise UsageError(f"{src}: no rows")
    records = [row for _, row in rows if isinstance(row, dict)]
    if not records:
        hint = "a JSONL file holds one JSON object per line" if kind == "jsonl" else "no row of the file is usable"
        raise UsageError(f"{src}:{rows[0][0]}: {rows[0][1]}; {hint}")
    columns = list(records[0].keys())
    cols = (_pick_column(columns, image_col, IMAGE_COLUMNS, "image", src),
            _pick_column(columns, caption_col, CAPTION_COLUMNS, "caption", src), label_col)
    return [_table_item(src, i, lineno, row, *cols) for i, (lineno, row) in enumerate(rows)]


def _table_item(src: Path, i: int, lineno: int, row: dict | str, image_col: str, caption_col: str,
                label_col: str | None) -> SourceItem:
    if isinstance(row, str):
        return SourceItem(make_key(f"{i:07d}_row{i}"), None, "", meta={"source": f"{src}:{lineno}", "row": i},
                          line=lineno, problem=("bad_row", f"{src}:{lineno}: {row}"))
    ref = str(row.get(image_col) or "").strip()
    if ref and not ref.startswith(("http://", "https://")) and not Path(ref).is_absolute():
        ref = str(src.parent / ref)
    caption = row.get(caption_col)
    caption = " ".join(str(caption).split()) if caption is not None else None
    labels = row.get(label_col) if label_col else None
    labels = labels if isinstance(labels, list) else [str(labels)] if labels else []
    stem = Path(ref.split("?")[0]).stem if ref else f"row{i}"
    meta = {"source": ref or f"{src}:{lineno}", "row": i}
    meta.update({k: v for k, v in row.items() if k not in (image_col, caption_col, label_col)})
    problem = None if ref else ("missing", f"{src}:{lineno}: empty image path")
    return SourceItem(make_key(f"{i:07d}_{stem}"), caption or None, ref, labels, meta, line=lineno, problem=problem)


def detect_kind(spec: str | Path) -> str:
    """What a data argument names: "shards" (a .tar, a folder of them, a glob, brace pattern, `::` list, URL or
    `pipe:`), else the layout of a source to be written into shards ("captions", "imagefolder", "csv", "jsonl")."""
    return "shards" if is_shard_spec(spec) else detect_source_type(Path(spec))


def is_shard_spec(spec: str | Path) -> bool:
    """Whether a data argument names webdataset shards rather than images or a source to be written."""
    text = str(spec)
    return (text.endswith(".tar") or text.startswith(REMOTE_PREFIXES) or "::" in text or "{" in text
            or glob.has_magic(text) or (Path(text).is_dir() and any(Path(text).glob("*.tar"))))


def detect_source_type(src: Path) -> str:
    if src.is_file():
        suffix = src.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return "csv"
        if suffix in (".jsonl", ".ndjson"):
            return "jsonl"
        raise UsageError(f"{src}: a file source must be .csv, .tsv or .jsonl")
    if not src.is_dir():
        raise MissingError(f"{src}: no such file or folder")
    for path in iter_image_files(src):
        if path.with_suffix(".txt").is_file():
            return "captions"
    if any(d.is_dir() for d in src.iterdir()):
        return "imagefolder"
    raise UsageError(f"{src}: found no image with a same-stem .txt caption and no class subfolders; "
                     "say which layout it is with --source-type")


def load_source(src: str | Path, source_type: str = "auto", **options) -> list[SourceItem]:
    src = Path(src)
    kind = detect_source_type(src) if source_type == "auto" else source_type
    builders: dict[str, Callable[..., list[SourceItem]]] = {
        "captions": functools.partial(caption_folder, whole_file=options.get("whole_caption", False)),
        "imagefolder": functools.partial(image_folder, template=options.get("caption_template", "{}")),
        "csv": functools.partial(table_source, kind="csv", image_col=options.get("image_col"),
                                 caption_col=options.get("caption_col"), label_col=options.get("label_col")),
        "jsonl": functools.partial(table_source, kind="jsonl", image_col=options.get("image_col"),
                                   caption_col=options.get("caption_col"), label_col=options.get("label_col")),
    }
    if kind not in builders:
        raise UsageError(f"unknown source type {kind!r}; choose from {SOURCE_TYPES}")
    return dedupe_keys(builders[kind](src))
