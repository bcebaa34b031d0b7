"""Image-text retrieval: recall@K in both directions on captioned samples (one caption per image)."""

from __future__ import annotations

import torch

from multimodal.evaluation.embed import EmbeddedSet, embed_set


def recall_at_k(scores: torch.Tensor, ks=(1, 5, 10)) -> dict[str, float]:
    """scores [N, N] where the right match of row i is column i."""
    ranks = (scores > scores.diagonal()[:, None]).sum(dim=1)  # how many wrong candidates beat the right one
    return {f"R@{k}": (ranks < k).float().mean().item() for k in ks}


def retrieval_metrics(model, data=None, *, embedded: EmbeddedSet | None = None, batch_size: int = 64,
                      autocast: bool = False) -> dict:
    embedded = embedded or embed_set(model, data, batch_size=batch_size, autocast=autocast)
    text = model.embed_texts(embedded.captions, autocast=autocast).cpu()
    scores = embedded.image_features @ text.T  # [N_images, N_texts]
    i2t = recall_at_k(scores)
    t2i = recall_at_k(scores.T)
    return {"num_samples": len(embedded.captions), **{f"image_to_text_{k}": v for k, v in i2t.items()},
            **{f"text_to_image_{k}": v for k, v in t2i.items()}}
