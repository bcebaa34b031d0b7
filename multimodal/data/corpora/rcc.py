"""Files inside a Qt binary resource archive (`.rcc`), the format GCompris ships its pictures in.

Hand-written because no maintained pure-Python reader exists; PySide6 reads it too, at ~100x the install size.
The format (Qt's rcc.cpp): a `qres` header with the offsets of a node tree, a data block and a name block; a
node is 22 bytes (name offset, flags, then child count + first child, or locale + data offset; then an mtime that
version 1 lacks, 14 bytes).
"""

from __future__ import annotations

import functools
import struct
import zlib
from pathlib import Path

from multimodal.errors import UsageError

COMPRESSED, DIRECTORY, COMPRESSED_ZSTD = 1, 2, 4


def index(path: str | Path) -> dict[str, tuple[int, int]]:
    """{"/dir/file": (data offset, flags)} of every file in the archive."""
    return _index(str(path), Path(path).stat().st_mtime_ns)


@functools.lru_cache(maxsize=8)
def _read(path: str, mtime_ns: int) -> bytes:  # keyed by mtime too: a rewritten archive is read again
    return Path(path).read_bytes()


@functools.lru_cache(maxsize=8)
def _index(path: str, mtime_ns: int) -> dict[str, tuple[int, int]]:
    blob = _read(path, mtime_ns)
    if blob[:4] != b"qres":
        raise UsageError(f"{path}: not a Qt resource archive (no 'qres' header)")
    version, tree, data, names = struct.unpack(">IIII", blob[4:20])
    if version not in (1, 2, 3):
        raise UsageError(f"{path}: Qt resource format version {version}; this reader knows versions 1 to 3")
    node_size = 22 if version >= 2 else 14

    def name(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset:names + offset + 2])
        start = names + offset + 6  # after the length and a 4-byte hash
        return blob[start:start + 2 * length].decode("utf-16-be")

    files, stack, seen = {}, [(0, "")], set()
    try:
        while stack:
            node, prefix = stack.pop()
            if node in seen:
                raise UsageError(f"{path}: corrupt Qt resource archive (node {node} is reached twice)")
            seen.add(node)
            at = tree + node * node_size
            name_offset, flags = struct.unpack(">IH", blob[at:at + 6])
            path_here = f"{prefix}/{name(name_offset)}" if node else ""
            if flags & DIRECTORY:
                count, first = struct.unpack(">II", blob[at + 6:at + 14])
                stack.extend((child, path_here) for child in range(first, first + count))
            else:
                (offset,) = struct.unpack(">I", blob[at + 10:at + 14])
                files[path_here] = (data + offset, flags)
    except (struct.error, UnicodeDecodeError) as error:
        raise UsageError(f"{path}: truncated or corrupt Qt resource archive ({error})") from error
    return files


def read_resource(archive: str | Path, name: str) -> bytes:
    """The bytes of one file of the archive, e.g. read_resource("lang.rcc", "/gcompris/.../apple.webp")."""
    mtime_ns = Path(archive).stat().st_mtime_ns
    files = _index(str(archive), mtime_ns)
    if name not in files:
        raise UsageError(f"{archive}: no resource {name!r}")
    offset, flags = files[name]
    if flags & COMPRESSED_ZSTD:
        raise UsageError(f"{archive}: {name} is zstd-compressed, which this reader does not handle")
    blob = _read(str(archive), mtime_ns)
    try:
        (size,) = struct.unpack(">I", blob[offset:offset + 4])
        raw = blob[offset + 4:offset + 4 + size]
        return zlib.decompress(raw[4:]) if flags & COMPRESSED else raw  # qCompress: 4-byte length, then zlib
    except (struct.error, zlib.error) as error:
        raise UsageError(f"{archive}: {name} is truncated or corrupt ({error})") from error
