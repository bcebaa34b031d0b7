"""Text-to-image speed and sampler quality.

1. Latency: a 20-step generation of 4 images with `TextToImagePipeline` against the same UNet and
   scheduler in a plain diffusers sampling loop, same seed, in one process: in float32, and where the CPU has bf16
   kernels also the pipeline's `enable_bf16()` against the loop under the same bfloat16 autocast. Prints the
   per-image latency of each, the ratio, and the largest pixel difference. The loop's prompt encoding (text tower
   and prior) is timed apart: the first ratio leaves it out of the loop's time (a handicap for the pipeline, whose
   time has it), the second has it in both.
2. Quality against steps: DPM-Solver++ and UniPC at 10/20/50 steps, with 250-step DDPM as the reference,
   scored by `multimodal.evaluation.generation` (CLIP-score, re-tag accuracy, Frechet distance in CLIP space).

    python bench/bench_generation.py --model builtin --data data/corpus/emoji/eval
"""

from __future__ import annotations

import argparse
import time

import torch


def plain_loop(pipe, prompt: str, n: int, steps: int, guidance: float, seed: int,
               bf16: bool = False, cutoff: float = 1.0) -> tuple[torch.Tensor, float, float]:
    """The reference: diffusers' scheduler API driven by hand, as in the diffusers docs; guided for the first
    `cutoff` share of the steps, then the conditional half alone (as diffusers' SDCFGCutoffCallback does)."""
    from multimodal.generation import decoder_condition, guided_steps, upsampler_input, with_beside

    encode = time.perf_counter()
    with torch.inference_mode():
        cond = pipe.embed_prompts([prompt]).repeat(n, 1)
    encode = time.perf_counter() - encode
    uncond = torch.zeros_like(cond)
    scheduler = type(pipe.scheduler).from_config(pipe.scheduler.config)
    size = pipe.decoder.config.sample_size
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    scheduler.set_timesteps(steps)
    x = torch.randn((n, 3, size, size), generator=generator) * scheduler.init_noise_sigma
    kwargs = decoder_condition(pipe.decoder, torch.cat([uncond, cond]))  # the UNet's own condition keywords
    k = pipe.decoder.config.get("retrieval_top_k")  # a retrieval decoder: one of the k nearest bank images beside x
    beside = pipe.bank.lookup(torch.cat([uncond, cond]), k, generator) if k else None
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        guided_until = guided_steps(steps, cutoff)
        for i, t in enumerate(scheduler.timesteps):
            if i == guided_until:
                kwargs, beside = decoder_condition(pipe.decoder, cond), beside[n:] if beside is not None else None
            guided = i < guided_until
            inp = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            if beside is not None:
                inp = with_beside(pipe.decoder, inp, beside)
            eps = pipe.decoder(inp, t, **kwargs).sample.float()
            if guided:
                eps_u, eps_c = eps.chunk(2)
                eps = eps_u + guidance * (eps_c - eps_u)
            x = scheduler.step(eps, t, x).prev_sample
        if pipe.upsampler is not None:  # the 2x stage, unguided, beside the bicubic-upscaled image (SR3)
            low = upsampler_input(x, 2 * size)
            scheduler = type(pipe.upsampler_scheduler).from_config(pipe.upsampler_scheduler.config)
            scheduler.set_timesteps(steps)
            x = torch.randn(low.shape, generator=generator) * scheduler.init_noise_sigma
            kwargs = decoder_condition(pipe.upsampler, cond)
            for t in scheduler.timesteps:
                inp = torch.cat([scheduler.scale_model_input(x, t), low], dim=1)
                x = scheduler.step(pipe.upsampler(inp, t, **kwargs).sample.float(), t, x).prev_sample
    return (x / 2 + 0.5).clamp(0, 1), time.perf_counter() - start, encode


def latency(pipe, threads: int, repeats: int, bf16: bool) -> None:
    """Best of `repeats`: the pipeline against the plain loop, both in float32 or both under bf16 autocast."""
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE

    prompt, n, steps, guidance, seed = "a red apple", 4, 20, DEFAULT_GUIDANCE, 0
    pipe.enable_bf16(bf16)
    ours_times, plain_times, encode_times = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        ours = pipe(prompt, num_images_per_prompt=n, num_inference_steps=steps, guidance_scale=guidance,
                    generator=torch.Generator().manual_seed(seed), output_type="pt").images
        ours_times.append(time.perf_counter() - start)
        plain, secs, encode = plain_loop(pipe, prompt, n, steps, guidance, seed, bf16, pipe.guidance_cutoff)
        plain_times.append(secs)
        encode_times.append(encode)
    ours_t, plain_t, encode_t = min(ours_times) / n, min(plain_times) / n, min(encode_times) / n
    print(f"20 steps, 4 images, {threads} threads, {'bf16 autocast' if bf16 else 'fp32'}, guidance on "
          f"{pipe.guidance_cutoff:.0%} of the steps: pipeline "
          f"{ours_t * 1e3:.0f} ms/image, plain diffusers loop {plain_t * 1e3:.0f} ms/image "
          f"({(plain_t + encode_t) * 1e3:.0f} with its prompt encoding), ratio {ours_t / plain_t:.3f}x "
          f"({ours_t / (plain_t + encode_t):.3f}x with the encoding in both); max pixel difference "
          f"{(ours - plain).abs().max().item():.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="builtin")
    parser.add_argument("--data", default="data/corpus/emoji/eval", help="held-out caption shards for quality")
    parser.add_argument("--prompts", type=int, default=32, help="held-out prompts for quality; 0: latency only")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--guidance-cutoff", type=float, default=None,
                        help="the share of the steps that are guided (default: the pipeline's own); below 1, every "
                             "step guided is timed too, for reference")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from diffusers import DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler

    from multimodal.evaluation.generation import generation_metrics, pick_prompts
    from multimodal.generation import TextToImagePipeline
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE
    from multimodal.precision import bf16_is_fast

    pipe = TextToImagePipeline.from_pretrained(args.model)
    pipe.set_progress_bar_config(disable=True)
    if args.guidance_cutoff is not None:
        pipe.guidance_cutoff = args.guidance_cutoff
    for bf16 in (False, True) if bf16_is_fast("cpu") else (False,):
        latency(pipe, args.threads, args.repeats, bf16)
    if pipe.guidance_cutoff < 1:  # for reference: every step guided
        pipe.guidance_cutoff = 1.0
        latency(pipe, args.threads, args.repeats, False)
    pipe.enable_bf16(False)
    if args.prompts <= 0:
        return

    guidance = DEFAULT_GUIDANCE
    prompts, real = pick_prompts(args.data, args.prompts)
    judge = pipe.clip
    original = pipe.scheduler
    rows = []
    for name, cls, step_list in (("DDPM", DDPMScheduler, [250]), ("DPM-Solver++", DPMSolverMultistepScheduler,
                                                                     [10, 20, 50]),
                                 ("UniPC", UniPCMultistepScheduler, [10, 20, 50])):
        pipe.scheduler = cls.from_config(original.config)
        for s in step_list:
            start = time.perf_counter()
            metrics, _ = generation_metrics(pipe, judge, prompts, real, steps=s, guidance_scale=guidance)
            rows.append((name, s, metrics, time.perf_counter() - start))
    pipe.scheduler = original
    print(f"\nquality on {len(prompts)} held-out prompts from {args.data} (guidance {guidance}):")
    print(f"{'sampler':<14}{'steps':>6}{'CLIP-score':>12}{'re-tag':>9}{'FD (CLIP)':>11}{'seconds':>9}")
    for name, s, m, secs in rows:
        print(f"{name:<14}{s:>6}{m['clip_score']:>12.4f}{m['retag_accuracy']:>9.3f}{m['frechet_clip_distance']:>11.4f}"
              f"{secs:>9.1f}")
    m = rows[0][2]
    print(f"{'real images':<20}{m['clip_score_real']:>12.4f}{m['retag_accuracy_real']:>9.3f}")


if __name__ == "__main__":
    main()
