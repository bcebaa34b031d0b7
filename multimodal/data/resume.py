"""What makes rerunning `write_shards` safe: one writer per folder, workers that die with it, a record of the plan.

The folder lock is an flock on `.lock`, which also holds the writer's PID. The kernel drops an flock when the
last process holding it exits, so pool workers drop their inherited copy and die with their parent: `kill -9`
of a writer frees the folder at once. A lock still held although its recorded writer is dead (a leftover
process that inherited it) is stale and is taken over.

The plan (`_stats/plan.json`) holds digests of everything that shapes a sample: keys, captions, labels and
metadata, the image files (size and modification time; the URL or loader for others) and the settings.
A rerun resumes only the very same plan.
"""

from __future__ import annotations

import ctypes
import fcntl
import functools
import hashlib
import json
import os
import pickle
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from multimodal.data.sources import SourceItem
from multimodal.errors import UsageError

_PR_SET_PDEATHSIG = 1
_parent: int | None = None  # in a pool worker: the PID of its parent when it started


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def is_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")  # a zombie has exited; it only waits to be reaped


def _recorded_holder(fd: int) -> int | None:
    """The PID written in the lock file, if it is one of this machine's."""
    fields = os.pread(fd, 256, 0).decode(errors="replace").split()
    if not fields or not fields[0].isdigit() or (len(fields) > 1 and fields[1] != socket.gethostname()):
        return None
    return int(fields[0])


def acquire_lock(out_dir: Path) -> int:
    """Lock `out_dir` for this process and return the lock's file descriptor (close it to release)."""
    path = out_dir / ".lock"
    for _ in range(5):
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder, seen = _recorded_holder(fd), os.fstat(fd)
            os.close(fd)
            if holder is None or is_alive(holder):
                who = f"pid {holder}" if holder else "pid unknown"
                raise UsageError(f"{out_dir}: another `shards write` ({who}) is writing here") from None
            _take_over(out_dir, path, seen)
            continue
        if os.path.samestat(os.fstat(fd), os.stat(path)):  # else a takeover replaced the file meanwhile
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()} {socket.gethostname()}\n".encode())
            return fd
        os.close(fd)
    raise UsageError(f"{out_dir}: could not lock the folder; is another `shards write` starting here?")


def _take_over(out_dir: Path, path: Path, seen: os.stat_result) -> None:
    """Put a fresh lock file in place of a stale one, unless another writer did so first."""
    guard = os.open(out_dir, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(guard, fcntl.LOCK_EX)  # held for a moment: two writers never both replace the same stale file
        if os.path.samestat(os.stat(path), seen):
            fresh = path.with_name(f".lock.{os.getpid()}.tmp")
            fresh.touch()
            os.replace(fresh, path)
    finally:
        os.close(guard)


def init_worker(writer: int, lock_fd: int, lock_id: tuple[int, int]) -> None:
    """Pool initializer: die with the writer and drop the inherited copy of its folder lock."""
    global _parent
    if sys.platform.startswith("linux"):
        # SIGKILL when the parent exits (strictly: when the thread that started this worker does; the pool
        # starts its workers from the writer's main thread); elsewhere `check_parent` notices between samples
        try:
            ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    _parent = os.getppid()
    try:
        st = os.fstat(lock_fd)
        if (st.st_dev, st.st_ino) == lock_id:  # only a forked worker holds the writer's descriptor
            os.close(lock_fd)
    except OSError:
        pass
    if not is_alive(writer):  # it died before the signal was armed
        os._exit(1)


def check_parent() -> None:
    """In a pool worker: exit at once if the process that started it is gone."""
    if _parent is not None and os.getppid() != _parent:
        os._exit(1)


DIGESTS = ("sample keys", "captions", "labels or metadata", "image files")


def _image_identity(ref) -> str:
    if isinstance(ref, functools.partial):
        func = ref.func
        return f"{func.__module__}.{func.__qualname__}{ref.args!r}{sorted(ref.keywords.items())!r}"
    if callable(ref):
        try:
            return hashlib.sha256(pickle.dumps(ref, protocol=4)).hexdigest()
        except Exception:  # noqa: BLE001 - an unpicklable loader (workers=1 only) is named by its type
            return f"{type(ref).__module__}.{getattr(ref, '__qualname__', type(ref).__qualname__)}"
    ref = str(ref)
    if ref.startswith(("http://", "https://")):
        return ref
    try:
        st = os.stat(ref)
    except OSError as e:
        return f"error {e.errno}"
    return f"{st.st_size} {st.st_mtime_ns}"


def describe_plan(items: Sequence[SourceItem], settings: dict) -> dict:
    """What the shards of `items` written with `settings` hold, as digests that a rerun compares."""
    digests = {name: hashlib.sha256() for name in DIGESTS}
    for item in items:
        parts = (item.key, json.dumps(item.caption),
                 json.dumps([item.labels, item.meta, item.problem], sort_keys=True, default=str),
                 _image_identity(item.image))
        for name, part in zip(DIGESTS, parts):
            digests[name].update(part.encode() + b"\0")
    return {"samples": len(items), "settings": settings,
            "digests": {name: h.hexdigest()[:16] for name, h in digests.items()}}


def plan_changes(old: dict, new: dict) -> list[str]:
    if "digests" not in old:
        return ["its record, from an older version, cannot tell whether captions or images changed"]
    changes = [f"--{name.replace('_', '-')} {old['settings'].get(name)} -> {value}"
               for name, value in new["settings"].items() if old["settings"].get(name) != value]
    if old["samples"] != new["samples"]:
        changes.append(f"{old['samples']} -> {new['samples']} items")
    return changes + [f"{name} changed" for name in DIGESTS if old["digests"].get(name) != new["digests"][name]]


def check_plan(out_dir: Path, plan: dict, overwrite: bool) -> None:
    """Refuse to resume into shards of another plan unless `overwrite`, which deletes them; record `plan`."""
    plan_path = out_dir / "_stats" / "plan.json"
    if plan_path.exists() and not overwrite:
        changes = plan_changes(json.loads(plan_path.read_text()), plan)
        if changes:
            raise UsageError(f"{out_dir} holds shards of a different source or settings ({'; '.join(changes)}); "
                             "write to another folder or pass --overwrite to rewrite them")
    if overwrite:
        for stale in [*out_dir.glob("*.tar"), *(out_dir / "_stats").glob("*.json")]:
            stale.unlink()
    atomic_write_text(plan_path, json.dumps(plan, indent=2))
