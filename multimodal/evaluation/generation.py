"""Generation metrics for held-out caption prompts (`multimodal eval generation`).

- CLIP-score: mean cosine between each generated image and its prompt, beside the same for the real
  held-out images and their captions (the ceiling).
- Re-tag accuracy: the share of generated images that the zero-shot tagger assigns to their own
  prompt's concept, among all the prompts' concepts.
- Frechet distance between generated and real held-out images in the *CLIP image-embedding space* of
  the judging model (no Inception network is available offline, so this is not FID; its values are
  not comparable with published FIDs, only with each other).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2) between two [N, D] feature sets."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * covmean))


def pick_prompts(data, limit: int, seed: int = 0) -> tuple[list[str], list]:
    """Up to `limit` held-out (caption, image) pairs with distinct captions, chosen by a fixed seed."""
    from multimodal.data.samples import iter_decoded

    seen, pairs = set(), []
    for sample in iter_decoded(data):
        if sample.caption.lower() not in seen:
            seen.add(sample.caption.lower())
            pairs.append((sample.caption, sample.image))
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(pairs), size=min(limit, len(pairs)), replace=False).tolist())
    return [pairs[i][0] for i in chosen], [pairs[i][1] for i in chosen]


@torch.inference_mode()
def generation_metrics(pipe, judge, prompts: Sequence[str], real_images: Sequence, *, steps: int,
                       guidance_scale: float, seed: int = 0, batch_size: int = 16) -> tuple[dict, list]:
    """Metrics for one (steps, guidance) setting; also returns the generated PIL images."""
    generated = []
    for i in range(0, len(prompts), batch_size):
        chunk = list(prompts[i:i + batch_size])
        generator = torch.Generator().manual_seed(seed + i)
        generated += pipe(chunk, num_inference_steps=steps, guidance_scale=guidance_scale,
                          generator=generator).images
    text = judge.embed_texts(list(prompts)).cpu()  # [P, D], prompts are distinct
    gen_feats = judge.embed_images(generated).cpu()
    real_feats = judge.embed_images([image.convert("RGB") for image in real_images]).cpu()
    targets = torch.arange(len(prompts))
    retag = ((gen_feats @ text.T).argmax(1) == targets).float().mean().item()
    metrics = {
        "steps": steps, "guidance_scale": guidance_scale, "num_prompts": len(prompts),
        "clip_score": F.cosine_similarity(gen_feats, text).mean().item(),
        "clip_score_real": F.cosine_similarity(real_feats, text).mean().item(),
        "retag_accuracy": retag,
        "retag_accuracy_real": ((real_feats @ text.T).argmax(1) == targets).float().mean().item(),
        "frechet_clip_distance": frechet_distance(gen_feats.numpy().astype(np.float64),
                                                  real_feats.numpy().astype(np.float64)),
    }
    return metrics, generated
