"""SVG to PNG with librsvg's `rsvg-convert` (Debian librsvg2-bin): fast, and it draws emoji and icon SVGs faithfully."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from multimodal.data.images import ImageError
from multimodal.errors import MissingError

RENDER_SIZE = 160
INSTALL = "apt-get install librsvg2-bin"


def require_rsvg() -> str:
    rsvg = shutil.which("rsvg-convert")
    if rsvg is None:
        raise MissingError(f"rsvg-convert not found (needed to render SVGs); install it with: {INSTALL}")
    return rsvg


def render_svg(svg: str | bytes, size: int = RENDER_SIZE) -> bytes:
    """PNG bytes of an SVG (a file path, or the SVG document as bytes), fitted into size x size, alpha kept."""
    source, data = (None, svg) if isinstance(svg, bytes) else (str(svg), None)
    args = [require_rsvg(), "-w", str(size), "-h", str(size), "--keep-aspect-ratio", "-f", "png"]
    run = subprocess.run(args + ([source] if source else []), input=data, capture_output=True)
    if run.returncode != 0 or not run.stdout:
        name = Path(source).name if source else "inline SVG"
        raise ImageError("render_failed", f"rsvg-convert failed on {name}: {run.stderr.decode(errors='replace')}")
    return run.stdout
