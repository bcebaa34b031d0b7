"""Few-shot examples for the tagger: a per-label cache of image embeddings blended with the zero-shot logits,
training-free, as in Tip-Adapter (Zhang et al., ECCV 2022).

For an image x (unit embedding) and a label l with examples e_l1..e_lK (unit embeddings):

    affinity[x, l] = mean_k exp(-beta * (1 - cos(x, e_lk)))             in (0, 1]; 1 = identical to an example
    logit[x, l]    = logit_scale * (cos(x, text_l) + alpha * (affinity[x, l] - centre[x]))
    centre[x]      = max_l affinity[x, l] - lift[x]
    lift[x]        = max_l [affinity[x, l] >= G_l] * max(0, affinity[x, l] - R_l)

Among the labels with examples only affinity differences count (centre[x] is the same for all of them), so when
every label has examples this is Tip-Adapter. A label without examples keeps its zero-shot logit (cache term
0); lift[x] decides how far the labels with examples may rise above it, and it is 0 unless x looks like some
label's examples both
  * as much as they look like each other: G_l is the lower quartile of the leave-one-out affinities of l's
    examples, loosened by a cosine of 0.01 (x exp(-beta * 0.01)) so that near-duplicates of tight examples pass
    (no condition for a label with one example), and
  * more than other labels' examples do: R_l is the 99th percentile of the affinities of the other labels'
    examples to l's (with no other labels, R_l = G_l; with one example and no other labels, R_l = 1: no lift).
With no lift every cache term is <= 0: an image can lose labels with examples but never gain one, so images of
labels without examples keep their zero-shot label. Affinities are averaged over a label's examples
(Tip-Adapter sums them), so a label with 16 examples does not outweigh one with 2. bench/bench_fewshot.py
measured these choices on Fashion-MNIST (README, "Few-shot tagging").

    ROOT/examples.safetensors   "features" float32 [K, D] unit rows; "label_ids" int64 [K] into the label list
    ROOT/tagger.json            "examples": {"labels": [...], "alpha": A, "beta": B, "model": weights hash}
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.nn import functional as F

from multimodal.data.images import is_image_path
from multimodal.data.sources import iter_image_files
from multimodal.errors import MissingError, UsageError
from multimodal.tagging.inputs import name_of

EXAMPLES_FILE = "examples.safetensors"
DEFAULT_ALPHA = 9.0  # weight of the cache term, in cosine units (x logit_scale, ~18 for builtin, gives logits)
DEFAULT_BETA = 5.0  # sharpness of the affinity: exp(-beta * (1 - cos))
OWN_QUANTILE = 0.25  # G_l: this quantile of the leave-one-out affinities of l's examples ...
GATE_TOLERANCE = 0.01  # ... loosened by this much cosine
OTHERS_QUANTILE = 0.99  # R_l: this quantile of the affinities of the other labels' examples to l's


@dataclass
class ExamplesAdded:
    """What `add_examples` did: examples embedded per label, and the files skipped with the reason."""

    added: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, message)


class ExampleCache:
    """label -> [K, D] unit image embeddings of that label's examples, and the blend with the zero-shot logits."""

    def __init__(self, model_key: str, alpha: float = DEFAULT_ALPHA, beta: float = DEFAULT_BETA):
        if not (alpha >= 0 and beta > 0):  # also refuses NaN
            raise UsageError(f"few-shot alpha must be >= 0 and beta > 0, got alpha={alpha!r}, beta={beta!r}")
        self.model_key, self.alpha, self.beta = model_key, float(alpha), float(beta)
        self.features: dict[str, torch.Tensor] = {}
        self._reference: dict[tuple[str, ...], tuple[torch.Tensor, torch.Tensor]] = {}

    def __len__(self) -> int:
        return sum(len(f) for f in self.features.values())

    @property
    def labels(self) -> list[str]:
        return list(self.features)

    def add(self, label: str, features: torch.Tensor) -> None:
        """features [K, D] (re-normalized here) are appended to the label's examples."""
        features = F.normalize(features.detach().float().cpu(), dim=-1)
        old = self.features.get(label)
        self.features[label] = features if old is None else torch.cat([old, features])
        self._reference.clear()

    def clear(self) -> None:
        self.features.clear()
        self._reference.clear()

    def check_labels(self, labels: Sequence[str]) -> None:
        """Examples of a label that is not in `labels` would be silently unused: refuse, naming them."""
        unknown = [label for label in self.features if label not in set(labels)]
        if unknown:
            raise UsageError(f"examples for label(s) {unknown[:5]} that are not in the label list "
                             f"({len(labels)} labels, e.g. {list(labels)[:3]}): add them to the labels, rename "
                             "the example folders to match, or drop them with tagger.clear_examples()")

    def logits(self, image_features: torch.Tensor, labels: Sequence[str], logit_scale: float) -> torch.Tensor:
        """image_features [M, D] -> [M, N] cache term to add to the zero-shot logits (0 for labels without examples)."""
        out = torch.zeros(len(image_features), len(labels))
        cols = [j for j, label in enumerate(labels) if label in self.features]
        if not cols:
            return out
        have = tuple(labels[j] for j in cols)
        affinity = torch.stack([self.affinity(image_features, self.features[label]) for label in have], dim=1)
        gate, base = self.references(have)  # [E], [E]
        lift = ((affinity >= gate) * (affinity - base).clamp_min(0)).max(dim=1, keepdim=True).values
        centre = affinity.max(dim=1, keepdim=True).values - lift
        out[:, cols] = logit_scale * self.alpha * (affinity - centre)
        return out

    def references(self, labels: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        """(G, R), each [E] (see the module docstring), cached until the examples change."""
        if labels not in self._reference:
            pairs = [self._references_of(label, labels) for label in labels]
            self._reference[labels] = (torch.tensor([g for g, _ in pairs]), torch.tensor([r for _, r in pairs]))
        return self._reference[labels]

    def _references_of(self, label: str, labels: Sequence[str]) -> tuple[float, float]:
        own = self.features[label]
        gate = 0.0
        if len(own) > 1:
            pairs = torch.exp(-self.beta * (1 - own @ own.T))
            gate = _quantile((pairs.sum(1) - pairs.diagonal()) / (len(own) - 1), OWN_QUANTILE)
            gate *= math.exp(-self.beta * GATE_TOLERANCE)
        others = [self.affinity(self.features[other], own) for other in labels if other != label]
        if others:
            return gate, _quantile(torch.cat(others), OTHERS_QUANTILE)
        return gate, gate if len(own) > 1 else 1.0

    def affinity(self, image_features: torch.Tensor, examples: torch.Tensor) -> torch.Tensor:
        """[M, D] x [K, D] -> [M]: mean over the examples of exp(-beta * (1 - cosine))."""
        return torch.exp(-self.beta * (1 - image_features.float() @ examples.T)).mean(dim=1)

    # --- saving -------------------------------------------------------------------------------------------
    def save(self, directory: Path) -> dict:
        """Writes examples.safetensors; returns the entry for tagger.json."""
        from multimodal.models.io import save_safetensors

        labels = self.labels
        features = torch.cat([self.features[label] for label in labels]).contiguous()
        ids = torch.cat([torch.full((len(self.features[label]),), j) for j, label in enumerate(labels)])
        save_safetensors({"features": features, "label_ids": ids}, directory / EXAMPLES_FILE)
        return {"labels": labels, "alpha": self.alpha, "beta": self.beta, "model": self.model_key,
                "file": EXAMPLES_FILE}

    @classmethod
    def load(cls, directory: Path, entry: dict, model_key: str) -> ExampleCache:
        from safetensors.torch import load_file

        path = directory / entry.get("file", EXAMPLES_FILE)
        if not path.is_file():
            raise MissingError(f"{path}: tagger.json lists few-shot examples but their embeddings file is missing")
        if entry.get("model") not in (None, model_key):
            raise UsageError(f"{path}: these example embeddings were made by other model weights than the ones in "
                             f"{directory}; add the examples again (tagger.add_examples) and save")
        tensors = load_file(str(path))
        cache = cls(model_key, entry.get("alpha", DEFAULT_ALPHA), entry.get("beta", DEFAULT_BETA))
        labels, ids = entry["labels"], tensors["label_ids"]
        for j, label in enumerate(labels):
            cache.features[label] = tensors["features"][ids == j].float()
        return cache


def _quantile(values: torch.Tensor, q: float) -> float:
    """The q-quantile as an element of `values` (kthvalue: no size limit, unlike torch.quantile)."""
    return float(values.kthvalue(max(1, math.ceil(q * len(values)))).values)


# --- reading examples ---------------------------------------------------------------------------------------
def read_example_folder(root: str | os.PathLike) -> tuple[dict[str, list[Path]], list[tuple[str, str]]]:
    """An ImageFolder: ({label: image files, walked recursively}, [(file, why skipped)] for images outside any
    label folder). Raises if the folder is missing, has no label folders, or a label folder holds no image."""
    root = Path(root)
    if not root.is_dir():
        raise MissingError(f"{root}: no such examples folder (want one subfolder per label, named by the label)")
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise UsageError(f"{root}: 0 examples: an examples folder needs one subfolder per label, named by the "
                         "label, holding a few images of it")
    stray = [(str(p), f"{p}: not inside a label folder, ignored") for p in sorted(root.iterdir())
             if p.is_file() and is_image_path(p)]
    examples = {}
    for folder in folders:
        files = list(iter_image_files(folder))
        if not files:
            raise UsageError(f"{folder}: label folder {folder.name!r} holds no image (looked for .jpg, .png, ...)")
        examples[folder.name.strip()] = files
    return examples, stray


def check_examples(examples: Mapping[str, Sequence]) -> None:
    if not isinstance(examples, Mapping):
        raise UsageError("examples must be {label: [images or paths]} or an examples folder, "
                         f"got a {type(examples).__name__}")
    if not examples:
        raise UsageError("0 examples given: pass {label: [images or paths], ...} with at least one image")
    for label, images in examples.items():
        if not isinstance(label, str) or not label.strip():
            raise UsageError(f"example label {label!r} is not a non-empty string")
        if isinstance(images, (str, os.PathLike)) or not len(images):
            raise UsageError(f"label {label!r}: give a list of its example images (got {type(images).__name__}"
                             f"{'' if isinstance(images, (str, os.PathLike)) else ', empty'})")


def gather_examples(tagger, examples: Mapping[str, Sequence] | str | os.PathLike, labels: Sequence[str] | None,
                    progress: bool = False) -> tuple[dict[str, torch.Tensor], ExamplesAdded]:
    """Check and embed {label: [images or paths]} or an examples folder -> ({label: [K, D]}, what was done).
    Every example label must be in `labels` (unless None)."""
    stray = []
    if isinstance(examples, (str, os.PathLike)):
        examples, stray = read_example_folder(examples)
    check_examples(examples)
    unknown = [k.strip() for k in examples if labels is not None and k.strip() not in labels]
    if unknown:
        raise UsageError(f"example label(s) {unknown[:5]} are not in the label list ({len(labels)} labels, "
                         f"e.g. {list(labels)[:3]}): add them to the labels or rename the example folders")
    features, skipped = embed_examples(tagger, examples, progress=progress)
    return features, ExamplesAdded({label: len(f) for label, f in features.items()}, stray + skipped)


def embed_examples(tagger, examples: Mapping[str, Sequence], progress: bool = False) -> tuple[dict, list]:
    """({label: [K, D] features}, [(file, message)] skipped). Unreadable images are skipped; a label left
    with none raises, naming the label and why its images failed."""
    items = [(label.strip(), image) for label, images in examples.items() for image in images]
    feats, indices, errors = tagger.encode_images([image for _, image in items], on_error="skip", progress=progress)
    rows: dict[str, list[int]] = {}
    for row, i in enumerate(indices):
        rows.setdefault(items[i][0], []).append(row)
    skipped = [(name_of(items[i][1], i), str(e)) for i, e in errors]
    empty = [label for label in dict.fromkeys(label for label, _ in items) if label not in rows]
    if empty:
        reasons = [str(e) for i, e in errors if items[i][0] == empty[0]]
        more = f" (and {len(reasons) - 1} more)" if len(reasons) > 1 else ""
        raise UsageError(f"label {empty[0]!r} has no readable example image: {reasons[0]}{more}")
    return {label: feats[r] for label, r in rows.items()}, skipped

