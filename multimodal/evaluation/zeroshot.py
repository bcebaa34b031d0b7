"""Zero-shot classification: top-1/top-5 accuracy and per-class recall against all class names of a set."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from multimodal.errors import UsageError
from multimodal.evaluation.embed import EmbeddedSet, embed_set
from multimodal.prompts import DEFAULT_TEMPLATES


def accuracy_from_scores(scores: torch.Tensor, targets: torch.Tensor, classnames: Sequence[str],
                         keys: Sequence[str] | None = None) -> dict:
    """scores [N, C], targets [N] -> top-1, top-5 and per-class recall; with the samples' keys also `top1_hits`,
    each key's 1 or 0 (for paired comparisons of two models)."""
    k = min(5, scores.shape[1])
    topk = scores.topk(k, dim=1).indices
    hit1 = topk[:, 0] == targets
    hit5 = (topk == targets[:, None]).any(dim=1)
    recall = {}
    for c, name in enumerate(classnames):
        mask = targets == c
        if mask.any():
            recall[name] = hit1[mask].float().mean().item()
    metrics = {"top1": hit1.float().mean().item(), "top5": hit5.float().mean().item(), "num_samples": len(targets),
               "num_classes": len(classnames), "per_class_recall": recall}
    if keys is not None:
        metrics["top1_hits"] = dict(zip(keys, hit1.int().tolist()))
    return metrics


def zeroshot_metrics(model, data=None, *, embedded: EmbeddedSet | None = None,
                     templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 64,
                     autocast: bool = False, max_samples: int | None = None) -> dict:
    """Classify every labelled sample of `data` (shards or ImageFolder) among all labels that occur in it.

    Besides the accuracies, `top1_hits` maps each sample's key to 1 if its top-1 label is right, else 0.
    """
    embedded = embedded or embed_set(model, data, batch_size=batch_size, autocast=autocast, max_samples=max_samples)
    labelled = [i for i, label in enumerate(embedded.labels) if label]
    if not labelled:
        raise UsageError("zero-shot evaluation needs labels (the 'labels' of each sample's metadata)")
    classnames = sorted({embedded.labels[i] for i in labelled})
    index = {name: c for c, name in enumerate(classnames)}
    targets = torch.tensor([index[embedded.labels[i]] for i in labelled])
    classifier = model.zero_shot_classifier(classnames, templates, autocast=autocast).cpu()
    scores = embedded.image_features[labelled] @ classifier.T
    return accuracy_from_scores(scores, targets, classnames, keys=[embedded.keys[i] for i in labelled])
