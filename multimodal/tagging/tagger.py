"""`ZeroShotTagger`: tag images with any labels, zero-shot, from the CLIP pair.

    tagger = ZeroShotTagger.from_pretrained("builtin")
    tagger.tag("cat.jpg", ["cat", "dog", "car"], top_k=2)       # [("cat", 0.93), ("dog", 0.05)]
    tagger.tag(["a.jpg", "b.png"], labels)                       # one list per image

Single-label mode: softmax over the labels (scores sum to 1). Multi-label mode: each label scored on
its own, sigmoid(logit_scale * (cosine - threshold[label])), with per-label thresholds fitted by
`calibrate` and saved with the tagger, so a score of 0.5 is the calibrated decision boundary.

Few-shot: `tagger.add_examples({"cat": ["cat1.jpg", ...]})` or `from_pretrained(..., examples="DIR")` (one
subfolder per label) caches the examples' image embeddings and adds a Tip-Adapter term to both modes' logits
(see `multimodal.tagging.examples`); they are saved with the tagger.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.nn import functional as F

from multimodal.data.images import DEFAULT_MAX_PIXELS, ImageError
from multimodal.errors import UsageError
from multimodal.precision import bf16_is_fast
from multimodal.prompts import DEFAULT_TEMPLATES, check_templates
from multimodal.tagging.examples import DEFAULT_ALPHA, DEFAULT_BETA, ExampleCache, ExamplesAdded, gather_examples
from multimodal.tagging.inputs import ImageInput, as_list, iter_batches
from multimodal.tagging.labels import LabelCache, check_label_lengths, check_labels

MODES = ("single", "multi")
TAGGER_FILE = "tagger.json"
DEFAULT_COSINE_THRESHOLD = 0.25  # used for labels that were never calibrated


class ZeroShotTagger:
    def __init__(self, model, *, templates: Sequence[str] = DEFAULT_TEMPLATES, thresholds: dict | None = None,
                 cache_dir: str | Path | None = None, backend: str = "torch", onnx_dir: str | Path | None = None,
                 bf16: bool = False, batch_size: int = 32, threads: int = 2,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, labels: Sequence[str] | None = None,
                 fewshot_alpha: float = DEFAULT_ALPHA, fewshot_beta: float = DEFAULT_BETA):
        if backend not in ("torch", "onnx"):
            raise UsageError(f"backend must be 'torch' or 'onnx', got {backend!r}")
        self.model = model.eval()
        self.templates = check_templates(templates)
        self.thresholds: dict[str, float] = dict(thresholds or {})
        self.default_threshold: float | None = None  # calibrated for this model; None = the generic fallback
        self._warned_uncalibrated = False
        self.batch_size, self.threads, self.max_pixels = batch_size, threads, max_pixels
        self.device = next(model.parameters()).device
        self.logit_scale = float(model.model.logit_scale.detach().exp())
        self.backend = backend
        self._onnx = self._onnx_session(model, onnx_dir) if backend == "onnx" else None
        # bf16 *weights* for the image tower: measured 3.2x faster than fp32 on a CPU with AMX, while
        # autocast (fp32 weights cast on the fly) was slower than fp32; text stays fp32 (it is cached anyway)
        self.bf16 = bf16 and bf16_is_fast(self.device)
        self._visual_bf16 = copy.deepcopy(model.model.visual).to(torch.bfloat16).eval() if self.bf16 else None
        self.model_key = model.fingerprint()
        self.cache = LabelCache(self.model_key, self.templates, cache_dir)
        self.text_encoder_calls = 0
        self.labels: list[str] | None = check_labels(labels) if labels else None  # the default for tag()
        self.examples = ExampleCache(self.model_key, fewshot_alpha, fewshot_beta)

    @classmethod
    def from_pretrained(cls, name_or_path: str | Path = "builtin", *, allow_pickle: bool = False,
                        device: str = "cpu", examples: str | Path | None = None, progress: bool = False,
                        **kwargs) -> ZeroShotTagger:
        """`builtin`, a folder from `save_pretrained` (model or tagger), or an open_clip `ARCH:TAG` name.
        `examples`: a folder with one subfolder of example images per label, added with `add_examples`."""
        from multimodal.models import from_pretrained
        from multimodal.models.factory import model_folder

        model = from_pretrained(name_or_path, allow_pickle=allow_pickle, device=device)
        folder = model_folder(name_or_path)
        state = json.loads((folder / TAGGER_FILE).read_text()) if folder and (folder / TAGGER_FILE).is_file() else {}
        kwargs.setdefault("templates", state.get("templates", DEFAULT_TEMPLATES))
        kwargs.setdefault("thresholds", state.get("thresholds"))
        kwargs.setdefault("labels", state.get("labels"))
        tagger = cls(model, **kwargs)
        tagger.default_threshold = state.get("default_threshold")
        if state.get("examples"):
            tagger.examples = ExampleCache.load(folder, state["examples"], tagger.model_key)
        if examples is not None:
            tagger.add_examples(examples, progress=progress)
        return tagger

    def save_pretrained(self, directory: str | Path) -> Path:
        directory = self.model.save_pretrained(directory)
        state = {"templates": list(self.templates), "thresholds": self.thresholds,
                 "default_threshold": self.default_threshold, "labels": self.labels,
                 "examples": self.examples.save(directory) if len(self.examples) else None}
        (directory / TAGGER_FILE).write_text(json.dumps(state, indent=2))
        return directory

    # --- embeddings -----------------------------------------------------------------------------------
    def label_embeddings(self, labels: Sequence[str]) -> torch.Tensor:
        """[N, D] normalized, template-averaged text embeddings; each label is encoded once per tagger."""
        labels = check_labels(labels)

        def compute(missing: list[str]) -> torch.Tensor:
            check_label_lengths(self.model, missing, self.templates)
            self.text_encoder_calls += 1
            return self.model.zero_shot_classifier(missing, self.templates).cpu()

        return self.cache.get_many(labels, compute)

    @torch.inference_mode()
    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        if self._onnx is not None:
            (out,) = self._onnx.run(None, {"pixels": pixels.numpy()})
            return F.normalize(torch.from_numpy(out).float(), dim=-1)
        if self._visual_bf16 is not None:
            features = self._visual_bf16(pixels.to(self.device, torch.bfloat16))
            return F.normalize(features.float(), dim=-1).cpu()
        return self.model.embed_images(pixels).cpu()

    def encode_images(self, images: ImageInput | Sequence[ImageInput], on_error: str = "raise",
                      progress: bool = False) -> tuple[torch.Tensor, list[int], list[tuple[int, ImageError]]]:
        """(features [M, D], input index of each row, [(index, error)] of inputs that failed to load)."""
        items, _ = as_list(images)
        feats, indices, errors = [], [], []
        bar = _progress(len(items), progress)
        for batch in iter_batches(items, self.model.preprocess, self.model.image_size, self.batch_size,
                                  self.threads, self.max_pixels):
            if batch.errors and on_error == "raise":
                raise batch.errors[0][1]
            errors += batch.errors
            if batch.pixels is not None:
                feats.append(self._encode_pixels(batch.pixels))
                indices += batch.indices
            bar.update(len(batch.indices) + len(batch.errors))
        bar.close()
        return (torch.cat(feats) if feats else torch.empty(0, self.model.embed_dim)), indices, errors

    # --- few-shot examples ------------------------------------------------------------------------------
    def add_examples(self, examples: dict | str | os.PathLike, *, labels: Sequence[str] | None = None,
                     progress: bool = False) -> ExamplesAdded:
        """Cache the image embeddings of {label: [images or paths]}, or of an examples folder (one subfolder per
        label). `labels` (else the tagger's label list, if any) must hold every example label; it becomes the
        default label list of `tag`. Unreadable files are skipped, warned about and listed in the result."""
        labels = check_labels(labels) if labels is not None else self.labels
        if labels is not None:
            self.examples.check_labels(labels)
        features, report = gather_examples(self, examples, labels, progress=progress)
        for label, feats in features.items():
            self.examples.add(label, feats)
        self.labels = labels
        if report.skipped:
            warnings.warn(f"skipped {len(report.skipped)} example file(s): {report.skipped[0][1]}", stacklevel=2)
        return report

    def clear_examples(self) -> None:
        self.examples.clear()

    def with_examples(self, examples: ExampleCache | None = None) -> ZeroShotTagger:
        """A copy that shares the model and the label-embedding cache but has its own few-shot examples (`examples`,
        else none): one user's examples never change another's tags, and no model is copied."""
        other = copy.copy(self)
        other.examples = examples if examples is not None else ExampleCache(
            self.model_key, self.examples.alpha, self.examples.beta)
        return other

    def _labels(self, labels: Sequence[str] | None) -> list[str]:
        if labels is None:
            labels = self.labels or self.examples.labels
            if not labels:
                raise UsageError("no labels given, and this tagger has no label list: pass labels=[...]")
        labels = check_labels(labels)
        self.examples.check_labels(labels)
        return labels

    # --- scoring --------------------------------------------------------------------------------------
    def scores(self, image_features: torch.Tensor, labels: Sequence[str] | None = None,
               mode: str = "single") -> torch.Tensor:
        """[M, D] features -> [M, N] scores: softmax over labels (single) or calibrated sigmoids (multi), with the
        few-shot cache term added to the logits of both."""
        if mode not in MODES:
            raise UsageError(f"mode must be one of {MODES}, got {mode!r}")
        labels = self._labels(labels)
        cosine = image_features @ self.label_embeddings(labels).T
        fewshot = self.examples.logits(image_features, labels, self.logit_scale)  # [M, N], zeros without examples
        if mode == "single":
            return (self.logit_scale * cosine + fewshot).softmax(dim=-1)
        default = DEFAULT_COSINE_THRESHOLD if self.default_threshold is None else self.default_threshold
        uncalibrated = [label for label in labels if label not in self.thresholds]
        if uncalibrated and self.default_threshold is None and not self._warned_uncalibrated:
            self._warned_uncalibrated = True  # once per tagger, not once per call
            warnings.warn(f"this model has no calibrated multi-label thresholds: {len(uncalibrated)} label(s) (e.g. "
                          f"{uncalibrated[0]!r}) use a generic cosine of {default:.2f}; calibrate with "
                          "tagger.calibrate(images, labels_per_image) and save_pretrained", stacklevel=3)
        t = torch.tensor([self.thresholds.get(label, default) for label in labels])
        return torch.sigmoid(self.logit_scale * (cosine - t) + fewshot)

    def tag(self, images: ImageInput | Sequence[ImageInput], labels: Sequence[str] | None = None,
            top_k: int | None = None, threshold: float | None = None, mode: str = "single") -> list | dict:
        """Each image's [(label, score), ...] sorted by score; a list of those for a list of images, and
        {path: [(label, score), ...]} for a folder (its images, walked recursively as the CLI does).

        top_k keeps the best K; threshold keeps scores >= it, from 0 to 1 (multi-label mode defaults to 0.5,
        the calibrated boundary). A file that cannot be read raises `ImageError` naming it. `labels` defaults to
        the tagger's label list (saved with it, or set by `add_examples`).
        """
        labels = self._labels(labels)
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
            raise UsageError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:
            raise UsageError(f"threshold must be a number from 0 to 1, got {threshold!r}")
        items, single = as_list(images)
        if isinstance(images, (str, os.PathLike)) and Path(images).is_dir():
            return dict(zip(map(str, items), self.tag(items, labels, top_k, threshold, mode)))
        feats, _, _ = self.encode_images(items)
        results = self.format(self.scores(feats, labels, mode), labels, top_k,
                              0.5 if threshold is None and mode == "multi" else threshold)
        return results[0] if single else results

    @staticmethod
    def format(scores: torch.Tensor, labels: Sequence[str], top_k: int | None, threshold: float | None) -> list:
        out = []
        for row in scores.tolist():
            pairs = sorted(zip(labels, row), key=lambda p: -p[1])
            if threshold is not None:
                pairs = [p for p in pairs if p[1] >= threshold]
            out.append(pairs[:top_k] if top_k else pairs)
        return out

    # --- multi-label calibration ------------------------------------------------------------------------
    def calibrate(self, images: Sequence[ImageInput], labels_per_image: Sequence[Sequence[str]],
                  labels: Sequence[str] | None = None, per_label: bool = True) -> dict[str, float]:
        """Fit the cosine threshold with the best F1 on these examples, per label (and their median as the default
        for labels never seen), or, with `per_label=False`, one default threshold over all (image, label) pairs,
        for a model's own labels-to-come. Kept and saved with the tagger."""
        items, _ = as_list(images)
        if len(items) != len(labels_per_image):
            raise UsageError(f"{len(items)} images but {len(labels_per_image)} label lists")
        labels = check_labels(labels or sorted({x for row in labels_per_image for x in row}))
        feats, _, _ = self.encode_images(items)
        cosine = feats @ self.label_embeddings(labels).T  # [M, N]
        truth = torch.tensor([[label in set(row) for label in labels] for row in labels_per_image])
        if not per_label:
            self.default_threshold = best_f1_threshold(cosine.flatten(), truth.flatten())
            return {}
        for j, label in enumerate(labels):
            self.thresholds[label] = best_f1_threshold(cosine[:, j], truth[:, j])
        self.default_threshold = float(torch.tensor(list(self.thresholds.values())).median())
        return {label: self.thresholds[label] for label in labels}

    # --- ONNX ---------------------------------------------------------------------------------------------
    @staticmethod
    def _onnx_session(model, onnx_dir):
        from multimodal.export.onnx import export_onnx, session

        if onnx_dir is None or not (Path(onnx_dir) / "image_encoder.onnx").is_file():
            import tempfile

            onnx_dir = export_onnx(model, onnx_dir or tempfile.mkdtemp(prefix="multimodal-onnx-"), text=False)
        return session(Path(onnx_dir) / "image_encoder.onnx")


def best_f1_threshold(cosine: torch.Tensor, truth: torch.Tensor) -> float:
    """The midpoint threshold between sorted scores that maximizes F1 (ties go to the higher threshold)."""
    if not truth.any():
        return float(cosine.max()) + 1e-3  # never seen: only scores above every example count
    order = cosine.argsort(descending=True)
    s, t = cosine[order], truth[order].float()
    tp = t.cumsum(0)
    precision = tp / torch.arange(1, len(t) + 1)
    recall = tp / t.sum()
    f1 = 2 * precision * recall / (precision + recall).clamp_min(1e-12)
    k = int(f1.argmax())
    below = s[k + 1] if k + 1 < len(s) else s[k] - 1e-3
    return float((s[k] + below) / 2)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="img", disable=not enabled or total < 64, desc="tag")
