"""Zero-shot classification: top-1/top-5 accuracy and per-class recall against all class names of a set."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn import functional as F

from multimodal.evaluation.embed import EmbeddedSet, embed_set, embed_texts
from multimodal.prompts import DEFAULT_TEMPLATES, check_templates, fill


@torch.inference_mode()
def text_classifier(model, classnames: Sequence[str], templates: Sequence[str] = DEFAULT_TEMPLATES,
                    autocast: bool = False) -> torch.Tensor:
    """[C, D]: for each class, the normalized mean of its templates' normalized text embeddings."""
    templates = check_templates(templates)
    texts = [text for name in classnames for text in fill(templates, name)]
    emb = embed_texts(model, texts, autocast=autocast).view(len(classnames), len(templates), -1)
    return F.normalize(emb.mean(dim=1), dim=-1)


def accuracy_from_scores(scores: torch.Tensor, targets: torch.Tensor, classnames: Sequence[str]) -> dict:
    """scores [N, C], targets [N] -> top-1, top-5 and per-class recall."""
    k = min(5, scores.shape[1])
    topk = scores.topk(k, dim=1).indices
    hit1 = topk[:, 0] == targets
    hit5 = (topk == targets[:, None]).any(dim=1)
    recall = {}
    for c, name in enumerate(classnames):
        mask = targets == c
        if mask.any():
            recall[name] = hit1[mask].float().mean().item()
    return {"top1": hit1.float().mean().item(), "top5": hit5.float().mean().item(), "num_samples": len(targets),
            "num_classes": len(classnames), "per_class_recall": recall}


def zeroshot_metrics(model, data=None, *, embedded: EmbeddedSet | None = None,
                     templates: Sequence[str] = DEFAULT_TEMPLATES, batch_size: int = 64,
                     autocast: bool = False, max_samples: int | None = None) -> dict:
    """Classify every labelled sample of `data` (shards or ImageFolder) among all labels that occur in it."""
    embedded = embedded or embed_set(model, data, batch_size=batch_size, autocast=autocast, max_samples=max_samples)
    labelled = [i for i, label in enumerate(embedded.labels) if label]
    if not labelled:
        raise ValueError("zero-shot evaluation needs labels (the 'labels' of each sample's metadata)")
    classnames = sorted({embedded.labels[i] for i in labelled})
    index = {name: c for c, name in enumerate(classnames)}
    targets = torch.tensor([index[embedded.labels[i]] for i in labelled])
    classifier = text_classifier(model, classnames, templates, autocast=autocast)
    scores = embedded.image_features[labelled] @ classifier.T
    return accuracy_from_scores(scores, targets, classnames)
