"""Label checking and the label-embedding cache.

The text embedding of a label (averaged over the prompt templates) depends only on the model
weights, the templates and the label, so it is computed once: an in-memory dict serves repeated
calls, and an optional on-disk cache keyed by a hash of all three serves later processes.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from multimodal.errors import MissingError, UsageError


def check_labels(labels: Sequence[str] | str) -> list[str]:
    if isinstance(labels, str):
        labels = [labels]
    labels = [str(label).strip() for label in labels]
    if not labels:
        raise UsageError("the label list is empty: give at least one label, e.g. labels=['cat', 'dog']")
    if any(not label for label in labels):
        raise UsageError("a label is empty (after stripping whitespace)")
    duplicates = sorted(label for label, n in Counter(labels).items() if n > 1)
    if duplicates:
        raise UsageError(f"duplicate labels: {duplicates}; each label may appear once")
    return labels


def read_labels_file(path: str | Path) -> list[str]:
    """One label per line; blank lines and lines starting with '#' are skipped."""
    path = Path(path)
    if not path.is_file():
        raise MissingError(f"{path}: no such labels file")
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]


def check_label_lengths(model, labels: Sequence[str], templates: Sequence[str]) -> None:
    """Tokenizers cut prompts at the context length, which would silently tag a shorter label: refuse it instead."""
    context = model.context_length
    longest = max(templates, key=len)
    tokens = model.tokenize([longest.format(label) for label in labels])  # [N, L]
    too_long = [label for label, row in zip(labels, tokens) if row[-1] != 0]
    if too_long:
        raise UsageError(f"label {too_long[0][:60]!r} is too long: in the template {longest!r} it is over the "
                         f"model's context of {context} tokens; shorten it ({len(too_long)} label(s) are too long)")


class LabelCache:
    """label -> [D] embedding for one (weights, templates) pair; memory first, then an optional folder."""

    def __init__(self, model_key: str, templates: Sequence[str], directory: str | Path | None = None):
        self.templates = tuple(templates)
        self.prefix = hashlib.sha256(("\x1f".join(self.templates) + "\x1e" + model_key).encode()).hexdigest()[:16]
        self.directory = Path(directory) / model_key[:16] if directory else None
        self.memory: dict[str, torch.Tensor] = {}

    def _path(self, label: str) -> Path:
        digest = hashlib.sha256(f"{self.prefix}\x1f{label}".encode()).hexdigest()[:32]
        return self.directory / f"{digest}.npy"

    def get_many(self, labels: Sequence[str], compute: Callable[[list[str]], torch.Tensor]) -> torch.Tensor:
        """[N, D] embeddings of `labels`; `compute` is called once, for the labels found nowhere."""
        missing = [label for label in labels if label not in self.memory and not self._load(label)]
        if missing:
            for label, emb in zip(missing, compute(missing)):
                self.memory[label] = emb
                self._store(label, emb)
        return torch.stack([self.memory[label] for label in labels])

    def _load(self, label: str) -> bool:
        if self.directory is None:
            return False
        path = self._path(label)
        if not path.is_file():
            return False
        self.memory[label] = torch.from_numpy(np.load(path))
        return True

    def _store(self, label: str, emb: torch.Tensor) -> None:
        if self.directory is None:
            return
        path = self._path(label)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.npy")
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            np.save(tmp, emb.numpy())
            os.replace(tmp, path)
        except OSError as e:  # a cache is an optimisation: a read-only or full disk must not stop tagging
            warnings.warn(f"label cache disabled: cannot write {self.directory} ({e.strerror or e})", stacklevel=2)
            self.directory = None


def default_cache_dir() -> Path:
    """Where the CLI keeps label embeddings between runs: $XDG_CACHE_HOME/multimodal/labels (~/.cache/...)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "multimodal" / "labels"
