"""The fixed held-out split: a sample is held out when a stable hash of its key says so.

The same key lands in the same split on every machine and every run, and adding new samples
never moves old ones between splits.
"""

from __future__ import annotations

import hashlib

EVAL_FRACTION = 0.1
SALT = "multimodal-split-v1"


def is_held_out(key: str, fraction: float = EVAL_FRACTION, salt: str = SALT) -> bool:
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def split_of(key: str, fraction: float = EVAL_FRACTION) -> str:
    return "eval" if is_held_out(key, fraction) else "train"
