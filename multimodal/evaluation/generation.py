"""Generation metrics for held-out caption prompts (`multimodal eval generation`).

- CLIP-score: mean cosine between each generated image and its prompt, beside the same for the real
  held-out images and their captions (the ceiling).
- Re-tag accuracy: the share of generated images that the zero-shot tagger assigns to their own
  prompt's concept, among all the prompts' concepts.
- Frechet distance between generated and real held-out images in the *CLIP image-embedding space* of
  the judging model (no Inception network is available offline, so this is not FID; its values are
  not comparable with published FIDs, only with each other).
- Copy distance, for a pipeline that retrieves training images (a `bank`): the median RMS pixel distance from each
  image to its nearest bank image, beside the same for the real held-out images, which are new by construction.
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
    hits = (gen_feats @ text.T).argmax(1) == targets  # [P]
    metrics = {
        "steps": steps, "guidance_scale": guidance_scale, "num_prompts": len(prompts),
        "clip_score": F.cosine_similarity(gen_feats, text).mean().item(),
        "clip_score_real": F.cosine_similarity(real_feats, text).mean().item(),
        "retag_accuracy": hits.float().mean().item(),
        "retag_hits": dict(zip(prompts, hits.int().tolist())),  # for paired comparisons of two pipelines
        "retag_accuracy_real": ((real_feats @ text.T).argmax(1) == targets).float().mean().item(),
        "frechet_clip_distance": frechet_distance(gen_feats.numpy().astype(np.float64),
                                                  real_feats.numpy().astype(np.float64)),
    }
    if getattr(pipe, "bank", None) is not None:  # how close to copies of training images the pictures are
        metrics["copy_distance"] = pipe.bank.copy_distance(generated).median().item()
        metrics["copy_distance_real"] = pipe.bank.copy_distance(real_images).median().item()
    return metrics, generated


SENSITIVITY_TIMESTEPS = (100, 300, 500, 700, 900)  # the centres of five equal timestep buckets


@torch.inference_mode()
def condition_sensitivity(predict, scheduler, images: torch.Tensor, cond: torch.Tensor,
                          timesteps: Sequence[int] = SENSITIVITY_TIMESTEPS, seed: int = 0,
                          batch_size: int = 64, ablations: dict | None = None) -> dict:
    """How much the decoder uses its condition: ||eps(x_t, c) - eps(x_t, null)|| / ||eps(x_t, c)||, the mean over
    images, per timestep (`sensitivity_t*`), and the same on the image the output implies, x0 (`sensitivity_x0_t*`).
    images [N, 3, S, S] in [-1, 1], cond [N, D]; `scheduler` is the training scheduler and `predict(x_t, t, cond)`
    the decoder's output (the pipeline's `predictor()`: for a retrieval decoder the null condition also takes away
    the retrieved image). Outputs are turned into noise and image predictions first, so objectives compare on one
    scale. Noise space caps the high-noise buckets: eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab), so a change of the
    implied image moves eps by only sqrt(ab / (1 - ab)) of it (0.16 at t = 900 on the cosine schedule).
    `ablations` adds metrics beside "sensitivity": each name maps to an output `(x_t, t, cond) -> ...` to compare
    against instead of the null condition's; the full prediction is made once."""
    ablations = {"sensitivity": lambda xt, tt, c: predict(xt, tt, torch.zeros_like(c)), **(ablations or {})}
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(seed))
    alpha_bar = scheduler.alphas_cumprod
    ratios = {(name, space, t): [] for name in ablations for space in ("", "_x0") for t in timesteps}

    def as_noise_and_image(pred: torch.Tensor, xt: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        a, s = alpha_bar[t].sqrt(), (1 - alpha_bar[t]).sqrt()
        pred = pred.float()
        eps = a * pred + s * xt if scheduler.config.prediction_type == "v_prediction" else pred
        return eps.flatten(1), ((xt - s * eps) / a).flatten(1)  # [B, 3 * S * S] each

    def ratio(full: torch.Tensor, other: torch.Tensor) -> torch.Tensor:
        return (full - other).norm(dim=1) / full.norm(dim=1)

    for t in timesteps:
        for i in range(0, len(images), batch_size):
            x0, c, n = images[i:i + batch_size], cond[i:i + batch_size], noise[i:i + batch_size]
            tt = torch.full((len(x0),), int(t), dtype=torch.long)
            xt = scheduler.add_noise(x0, n, tt)
            full = as_noise_and_image(predict(xt, tt, c), xt, t)
            for name, ablated in ablations.items():
                other = as_noise_and_image(ablated(xt, tt, c), xt, t)
                ratios[name, "", t].append(ratio(full[0], other[0]))
                ratios[name, "_x0", t].append(ratio(full[1], other[1]))
    return {f"{name}{space}_t{t}": torch.cat(ratios[name, space, t]).mean().item() for name, space, t in ratios}


def decoder_sensitivities(pipe, scheduler, images: torch.Tensor, cond: torch.Tensor) -> dict:
    """`sensitivity_t*` to the condition, and for a retrieval decoder `neighbour_use_t*`: how much its output changes
    when the retrieved image beside its input is taken away and the condition kept."""
    retrieval = pipe.decoder.config.get("retrieval_top_k")
    return condition_sensitivity(pipe.predictor(), scheduler, images, cond,
                                 ablations={"neighbour_use": pipe.predictor(neighbour=False)} if retrieval else None)


def caption_targets(captions: Sequence[str], candidates: Sequence[str] = ()) -> tuple[list[str], torch.Tensor]:
    """Every distinct caption (the candidates first) and, per image, the index of its own caption among them [N]."""
    labels = list(dict.fromkeys([*candidates, *captions]))
    return labels, torch.tensor([labels.index(c) for c in captions])


@torch.inference_mode()
def reconstruction_metrics(pipe, judge, images: Sequence, captions: Sequence[str], candidates: Sequence[str] = (),
                           cond: torch.Tensor | None = None, *, steps: int = 20, guidance_scale: float = 3.0,
                           seed: int = 0, batch_size: int = 16) -> tuple[dict, list]:
    """Reconstruction re-tag, which isolates the decoder from the prior: held-out images -> their CLIP image
    embedding (`cond` [N, D], or computed here by the pipeline's CLIP) -> the decoder -> the judge picks each
    image's own caption (`captions`, one per image) among all distinct `candidates` (every caption of the split;
    default: `captions`). Reported beside the same for the real images, as they are and fitted to the size the
    pipeline makes (`_real_at_size`: the ceiling of a perfect reconstruction at that resolution). `recon_retag_hits`
    maps each image ('index caption') to 1 or 0, for paired comparisons of two pipelines."""
    labels, targets = caption_targets(captions, candidates)
    cond = pipe.clip.embed_images(list(images)) if cond is None else cond
    size = pipe.decoder.config.sample_size
    generated = []
    for i in range(0, len(images), batch_size):
        c = cond[i:i + batch_size].to(pipe.device)
        x = pipe.sample(c, torch.zeros_like(c), steps, guidance_scale, torch.Generator().manual_seed(seed + i),
                        size, size)
        generated += pipe.image_processor.postprocess(x * 2 - 1, output_type="pil")
    text = judge.embed_texts(labels).cpu()  # [L, D]
    gen_feats, real_feats = judge.embed_images(generated).cpu(), judge.embed_images(list(images)).cpu()
    small_feats = judge.embed_images(fit_images(images, generated[0].width)).cpu()
    hits = (gen_feats @ text.T).argmax(1) == targets  # [N]
    metrics = {
        "recon_retag_accuracy": hits.float().mean().item(),
        "recon_retag_hits": {f"{i:04d} {c}": h for i, (c, h) in enumerate(zip(captions, hits.int().tolist()))},
        "recon_retag_accuracy_real": ((real_feats @ text.T).argmax(1) == targets).float().mean().item(),
        "recon_retag_accuracy_real_at_size": ((small_feats @ text.T).argmax(1) == targets).float().mean().item(),
        "recon_clip_image_cosine": F.cosine_similarity(gen_feats, real_feats).mean().item(),
        "num_images": len(images), "num_captions": len(labels),
    }
    return metrics, generated


def heldout_images(data, limit: int, seed: int = 0) -> tuple[list[str], list, list[str]]:
    """(captions, images) of up to `limit` held-out samples chosen by a fixed seed, and every caption of the set."""
    from multimodal.data.samples import iter_decoded

    samples = [(s.caption, s.image) for s in iter_decoded(data)]
    pick = np.sort(np.random.default_rng(seed).choice(len(samples), min(limit, len(samples)), replace=False))
    return [samples[i][0] for i in pick], [samples[i][1] for i in pick], [c for c, _ in samples]


def fit_images(images: Sequence, size: int) -> list:
    """PIL images fitted on white into size x size RGB squares, as the decoder's training images are."""
    from PIL import ImageOps

    return [ImageOps.pad(im.convert("RGB"), (size, size), color="white") for im in images]


def fit_pixels(images: Sequence, size: int) -> torch.Tensor:
    """PIL images -> [N, 3, size, size] in [-1, 1], fitted on white as the decoder's training images are."""
    arrays = [np.asarray(im) for im in fit_images(images, size)]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float().div(127.5).sub(1)


def decoder_diagnostics(pipe, judge, data, *, num_images: int, settings: Sequence[tuple[int, float]],
                        sensitivity: bool = True, reconstruction: bool = True) -> list[dict]:
    """Condition sensitivity per timestep, and reconstruction re-tag for each (steps, guidance), on held-out data."""
    from diffusers import DDPMScheduler

    captions, images, every_caption = heldout_images(data, num_images)
    cond = pipe.clip.embed_images(images)
    rows = []
    if sensitivity:
        train_scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        pixels = fit_pixels(images, pipe.decoder.config.sample_size)
        pipe.eval_mode()
        rows.append(decoder_sensitivities(pipe, train_scheduler, pixels, cond.cpu()))
    for steps, guidance in settings if reconstruction else ():
        metrics, _ = reconstruction_metrics(pipe, judge, images, captions, every_caption, cond, steps=steps,
                                            guidance_scale=guidance)
        rows.append({"steps": steps, "guidance_scale": guidance, **metrics})
    return rows
