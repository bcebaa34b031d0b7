"""Write an evaluation set's folder whole or not at all (the recipes' ImageFolders of photos, icons and glyphs)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def new_folder(out: Path) -> Iterator[Path]:
    """A temporary folder beside `out`, renamed to `out` when the block ends without an error: a run that dies leaves
    no half-written set (at most a `.NAME.*.tmp` folder). An `out` that exists is refused, never overwritten."""
    if out.exists():
        raise SystemExit(f"{out} exists; remove it to write the set again")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        yield tmp
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
