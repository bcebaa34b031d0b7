"""`TextToImagePipeline`: text -> CLIP text embedding -> prior -> CLIP image embedding -> denoiser -> image.

    pipe = TextToImagePipeline.from_pretrained("builtin")
    images = pipe("a red apple", num_inference_steps=20, generator=torch.Generator().manual_seed(0)).images
    more = pipe.image_variations("photo.png", num_images_per_prompt=4).images

A standard diffusers pipeline: `save_pretrained` writes model_index.json and one folder per component,
and any diffusers scheduler can be swapped in (`pipe.scheduler = UniPCMultistepScheduler.from_config(...)`).
Saved folders also load with plain diffusers, `DiffusionPipeline.from_pretrained(folder, trust_remote_code=True)`
(see folder_code.py).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DiffusionPipeline, UNet2DConditionModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.schedulers import SchedulerMixin
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from multimodal.errors import MissingError, UsageError
from multimodal.generation import folder_code
from multimodal.generation.checks import check_sampling, prompt_list
from multimodal.generation.components import (
    EmbeddingPrior,
    decoder_condition,
    denoise,
    guided_steps,
    strength_steps,
    upsampler_input,
    with_beside,
)
from multimodal.generation.retrieval import NeighbourBank, check_bank_size
from multimodal.models import CLIPModel
from multimodal.precision import bf16_is_fast

PRETRAINED = {"builtin": "builtin/pipeline"}
# Default classifier-free guidance for text: best of 1, 3, 5, 8, 12 on 64 *training* captions by CLIP-score, re-tag and
# Frechet distance alike (training/recipes/README.md, "Guidance"); the held-out split was not used to choose it.
DEFAULT_GUIDANCE = 8.0
# Variations condition on a true image embedding, not the prior's guess, and at 8 break into high-frequency noise.
DEFAULT_VARIATION_GUIDANCE = 3.0
# Variations from the embedding alone (1), or from the picture noised to this share of the schedule (SDEdit).
DEFAULT_VARIATION_STRENGTH = 1.0
# The share of the steps that are guided; the rest run the conditional half alone, at half the cost (guidance matters
# least at low noise: Kynkaenniemi et al. 2024; diffusers' SDCFGCutoffCallback). 1 = every step.
DEFAULT_GUIDANCE_CUTOFF = 1.0


class TextToImagePipeline(DiffusionPipeline):
    """The optional `upsampler` (a decoder with `low_res_size`, and its `upsampler_scheduler`) doubles the decoder's
    images, conditioned on the same embedding (unCLIP's upsampler stage, here a CLIP-conditioned SR3). A decoder with
    `retrieval_top_k` in its config needs the `bank` of training images it retrieves from (retrieval.py)."""

    model_cpu_offload_seq = "clip->prior->decoder->upsampler"
    _optional_components = ["upsampler", "upsampler_scheduler", "bank"]

    def __init__(self, clip: CLIPModel, prior: EmbeddingPrior, decoder: UNet2DConditionModel,
                 scheduler: SchedulerMixin, upsampler: UNet2DConditionModel | None = None,
                 upsampler_scheduler: SchedulerMixin | None = None, bank: NeighbourBank | None = None):
        super().__init__()
        self._check_bank(decoder, bank, clip)
        if (upsampler is None) != (upsampler_scheduler is None):
            raise UsageError("an upsampler needs its scheduler (upsampler_scheduler), and the other way round: to "
                             "drop the upsampler, pass upsampler=None and upsampler_scheduler=None")
        if upsampler is not None and upsampler.config.get("low_res_size") != decoder.config.sample_size:
            takes, makes = upsampler.config.get("low_res_size"), decoder.config.sample_size
            raise UsageError(f"the upsampler takes {takes} px images, the decoder makes {makes} px ones" if takes
                             else "the upsampler is not an upsampler (no low_res_size in its config)")
        self.register_modules(clip=clip, prior=prior, decoder=decoder, scheduler=scheduler, upsampler=upsampler,
                              upsampler_scheduler=upsampler_scheduler, bank=bank)
        self.image_processor = VaeImageProcessor(do_resize=False, do_normalize=True)
        self.bf16 = False  # enable_bf16()
        self.guidance_cutoff = DEFAULT_GUIDANCE_CUTOFF  # checked where it is used: guided_steps()

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path = "builtin", **kwargs):
        """`builtin` (the shipped pipeline, offline) or a folder written by `save_pretrained`."""
        name = str(pretrained_model_name_or_path)
        if name in PRETRAINED:
            from multimodal_assets import ASSETS_DIR

            folder = ASSETS_DIR / PRETRAINED[name]
            if not folder.is_dir():
                raise MissingError(f"the shipped pipeline {name!r} is not in this install ({folder} is missing)")
            pretrained_model_name_or_path = folder
        elif not Path(name).is_dir():
            raise MissingError(f"{name!r} is neither a shipped pipeline ({list(PRETRAINED)}) nor a pipeline folder")
        from multimodal.generation.legacy import check_not_legacy

        check_not_legacy(Path(pretrained_model_name_or_path))
        kwargs.setdefault("dtype", torch.float32)  # weights may be stored as float16 to halve the download
        link = Path(pretrained_model_name_or_path) / "clip"
        if link.is_file() and "clip" not in kwargs:  # the clip/ symlink as git checks it out without symlinks (Windows)
            kwargs["clip"] = CLIPModel.from_pretrained(link.parent / link.read_text().strip())
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @classmethod
    def load_config(cls, *args, **kwargs):
        """diffusers' reader of model_index.json; the folder's own code file is not needed to build this class."""
        out = super().load_config(*args, **kwargs)
        folder_code.own_class_name(out[0] if isinstance(out, tuple) else out)
        return out

    def save_pretrained(self, save_directory: str | Path, **kwargs) -> None:
        """diffusers' folder (model_index.json, one folder per component) plus the file that lets plain diffusers
        load it: `DiffusionPipeline.from_pretrained(save_directory, trust_remote_code=True)`."""
        super().save_pretrained(save_directory, **kwargs)
        folder_code.make_loadable_by_diffusers(save_directory)

    # --- conditioning ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def embed_prompts(self, prompts: list[str]) -> torch.Tensor:
        """Prompts -> [N, D] image embeddings predicted by the prior."""
        self.eval_mode()
        return self.prior(self.clip.embed_texts(prompts).to(self.device, self.prior.dtype))

    @staticmethod
    def _check_bank(decoder, bank: NeighbourBank | None, clip: CLIPModel) -> None:
        if not decoder.config.get("retrieval_top_k"):
            if bank is not None:
                raise UsageError("a bank of training images is for a retrieval decoder (retrieval_top_k in its "
                                 "config), and this decoder has none: pass bank=None")
            return
        if bank is None:
            raise UsageError("this decoder retrieves training images (retrieval_top_k in its config): pass the bank "
                             "it was trained with (bank=NeighbourBank...), as its pipeline folder holds it")
        check_bank_size(decoder.config.sample_size, bank.config.image_size)
        if bank.config.embed_dim != clip.embed_dim:
            raise UsageError(f"the bank holds {bank.config.embed_dim}-d embeddings and the CLIP embeds in "
                             f"{clip.embed_dim}-d: rebuild the bank with this CLIP")
        if bank.config.clip_fingerprint and bank.config.clip_fingerprint != clip.fingerprint():
            raise UsageError("the bank's embeddings were made by another CLIP than this pipeline's: rebuild the "
                             "bank with this CLIP, or use the CLIP it was built with")

    def predictor(self, neighbour: bool = True) -> Callable:
        """(x_t [B, 3, H, W], t [B], cond [B, D]) -> the decoder's output, a retrieval decoder seeing the nearest
        bank image of each condition (with `neighbour=False`, the zero image instead): what `condition_sensitivity`
        measures."""
        def predict(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
            beside = self.bank.lookup(cond, 1) if self.decoder.config.get("retrieval_top_k") else None
            if beside is not None and not neighbour:
                beside = torch.zeros_like(beside)
            return denoise(self.decoder, x, t, cond, beside)

        return predict

    def enable_bf16(self, enabled: bool = True) -> bool:
        """Run the float32 denoisers under bfloat16 autocast, as they were trained, where the pipeline's device (move
        it first) has bf16 kernels: 1.4x faster on 2 CPU cores with AVX512-BF16; the same pictures to the eye, with a
        prompt or two in 64 re-tagged differently (README, "Benchmarks"). Weights, embeddings and the sampling state
        stay float32; weights loaded in another dtype keep it. `enabled=False` turns it off. Returns whether bf16 is
        on."""
        float32 = all(unet is None or unet.dtype == torch.float32 for unet in (self.decoder, self.upsampler))
        self.bf16 = enabled and float32 and bf16_is_fast(self.device)
        return self.bf16

    def eval_mode(self) -> None:
        """Dropout off and frozen statistics, whatever mode the modules were handed over in."""
        for module in (self.clip, self.prior, self.decoder, self.upsampler, self.bank):
            if module is not None:
                module.eval()

    # --- sampling -------------------------------------------------------------------------------------
    @torch.inference_mode()
    def sample(self, cond: torch.Tensor, uncond: torch.Tensor, num_inference_steps: int, guidance_scale: float,
               generator: torch.Generator | None, height: int, width: int,
               callback_on_step_end: Callable | None = None, init: torch.Tensor | None = None,
               strength: float = 1.0) -> torch.Tensor:
        """cond/uncond [B, D] -> images [B, 3, H, W] in [0, 1], or [B, 3, 2H, 2W] through the upsampler.
        Guidance scale 1 is plain conditional sampling; the upsampler runs unguided (guidance 1). The callback sees
        the upsampler's steps after the decoder's, numbered on (see `total_steps`). With `init` [B, 3, H, W] in
        [-1, 1] and `strength` < 1 the decoder starts from `init` noised to that share of the schedule and runs only
        the last `strength` of its steps (SDEdit; diffusers' img2img `strength`)."""
        self.eval_mode()
        x = self._denoise(self.decoder, self.scheduler, cond, uncond, num_inference_steps, guidance_scale,
                          generator, (height, width), callback_on_step_end, init=init, strength=strength)
        if self.upsampler is not None:
            low = upsampler_input(x, 2 * height, 2 * width)
            x = self._denoise(self.upsampler, self.upsampler_scheduler, cond, uncond, num_inference_steps, 1.0,
                              generator, (2 * height, 2 * width), callback_on_step_end, low_res=low,
                              first_step=num_inference_steps)
        return (x / 2 + 0.5).clamp(0, 1)

    def total_steps(self, num_inference_steps: int) -> int:
        """How many denoising steps (callback calls) one call makes: both stages' with an upsampler."""
        return num_inference_steps * (2 if self.upsampler is not None else 1)

    def _denoise(self, unet, scheduler, cond: torch.Tensor, uncond: torch.Tensor, steps: int, guidance_scale: float,
                 generator: torch.Generator | None, size: tuple[int, int], callback_on_step_end: Callable | None = None,
                 low_res: torch.Tensor | None = None, first_step: int = 0, init: torch.Tensor | None = None,
                 strength: float = 1.0) -> torch.Tensor:
        """One sampling loop of `unet` from noise, or from `init` noised to `strength`: [B, 3, *size] in [-1, 1]."""
        device, dtype = self.device, unet.dtype
        # a scheduler of this call's own: schedulers keep per-run state, and a shared one would be corrupted
        # by concurrent calls (a web demo serving two requests at once)
        scheduler = type(scheduler).from_config(scheduler.config)
        scheduler.set_timesteps(steps, device=device)
        x = randn_tensor((len(cond), unet.config.out_channels, *size), generator=generator, device=device,
                         dtype=dtype)
        timesteps, skipped = scheduler.timesteps, steps - strength_steps(steps, strength) if init is not None else 0
        if skipped:  # start part-way down the schedule, as diffusers' img2img pipelines do
            timesteps = timesteps[skipped * scheduler.order:]
            if hasattr(scheduler, "set_begin_index"):
                scheduler.set_begin_index(skipped * scheduler.order)
            x = scheduler.add_noise(init.to(device, dtype), x, timesteps[:1].repeat(len(x)))
        else:
            x = x * scheduler.init_noise_sigma
        # schedulers differ in what step() takes; stochastic ones want the generator (as diffusers' pipelines do)
        extra = {"generator": generator} if "generator" in inspect.signature(scheduler.step).parameters else {}
        guided_until = guided_steps(steps, self.guidance_cutoff) if guidance_scale != 1.0 else 0
        guided = guided_until > 0
        labels = torch.cat([uncond, cond]) if guided else cond
        beside = low_res
        if beside is not None:
            beside = torch.cat([beside, beside]) if guided else beside
        elif unet.config.get("retrieval_top_k"):  # one of the top-k bank images of each condition (null: zeros)
            beside = self.bank.lookup(labels, unet.config.retrieval_top_k, generator)
            if skipped:  # a picture is its own nearest image: beside the conditional half, as training's self-copies
                beside[len(beside) - len(x):] = F.interpolate(init.to(beside), size=beside.shape[-2:], mode="area")
        beside = beside.to(device, dtype) if beside is not None else None
        condition = decoder_condition(unet, labels)  # the same at every step while guided
        for i, t in enumerate(self.progress_bar(timesteps), start=skipped):
            if guided and i == guided_until:  # from here on the conditional half alone
                guided, condition = False, decoder_condition(unet, cond)
                beside = beside[len(cond):] if beside is not None else None
            inp = scheduler.scale_model_input(torch.cat([x, x]) if guided else x, t)
            if beside is not None:
                inp = with_beside(unet, inp, beside)  # [B, 6, H, W]
            with torch.autocast(device.type, torch.bfloat16, enabled=self.bf16):
                eps = unet(inp, t, **condition).sample.to(dtype)
            if guided:
                eps_uncond, eps_cond = eps.chunk(2)
                eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)
            x = scheduler.step(eps, t, x, **extra).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, first_step + i, t, {"latents": x})
        return x

    def _output(self, images: torch.Tensor, output_type: str, return_dict: bool):
        if output_type not in ("pil", "np", "pt"):
            raise UsageError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")
        images = self.image_processor.postprocess(images * 2 - 1, output_type=output_type)
        return ImagePipelineOutput(images=images) if return_dict else (images,)

    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                 num_inference_steps: int = 20, guidance_scale: float = DEFAULT_GUIDANCE,
                 num_images_per_prompt: int = 1, generator: torch.Generator | None = None, output_type: str = "pil",
                 height: int | None = None, width: int | None = None, callback_on_step_end: Callable | None = None,
                 return_dict: bool = True):
        height = height or self.decoder.config.sample_size
        width = width or self.decoder.config.sample_size
        check_sampling(num_inference_steps, guidance_scale, num_images_per_prompt, height, width, self.decoder)
        prompts = prompt_list(prompt)
        cond = self.embed_prompts(prompts).repeat_interleave(num_images_per_prompt, dim=0)
        uncond = self._negative(negative_prompt, len(prompts)).repeat_interleave(num_images_per_prompt, dim=0)
        images = self.sample(cond, uncond, num_inference_steps, guidance_scale, generator, height, width,
                             callback_on_step_end)
        return self._output(images, output_type, return_dict)

    def _negative(self, negative_prompt, n: int) -> torch.Tensor:
        """The unconditional branch: the null (zero) embedding, or the prior's embedding of a negative prompt."""
        if negative_prompt is None:
            return torch.zeros(n, self.clip.embed_dim, device=self.device)
        negatives = prompt_list(negative_prompt, "negative_prompt")
        if len(negatives) == 1:
            negatives = negatives * n
        if len(negatives) != n:
            raise UsageError(f"{len(negatives)} negative prompts for {n} prompts")
        return self.embed_prompts(negatives)

    def image_variations(self, image: Image.Image | str | Path, num_images_per_prompt: int = 4,
                         num_inference_steps: int = 20, guidance_scale: float = DEFAULT_VARIATION_GUIDANCE,
                         generator: torch.Generator | None = None, output_type: str = "pil",
                         callback_on_step_end: Callable | None = None, return_dict: bool = True,
                         strength: float = DEFAULT_VARIATION_STRENGTH):
        """New images from the CLIP image embedding of `image` (a PIL image or a path). With `strength` < 1 each
        starts from `image` itself (centre-cropped to the decoder's square) noised to that share of the schedule, so
        it keeps the picture's layout and colours and redraws the rest; 1 draws from the embedding alone."""
        from multimodal.data.images import open_image, to_mode

        size = self.decoder.config.sample_size
        check_sampling(num_inference_steps, guidance_scale, num_images_per_prompt, size, size, self.decoder)
        strength_steps(num_inference_steps, strength)
        picture = to_mode(image, "RGB") if isinstance(image, Image.Image) else open_image(image)
        self.eval_mode()
        cond = self.clip.embed_images([picture]).repeat(num_images_per_prompt, 1)
        uncond = torch.zeros_like(cond)
        init = (VaeImageProcessor(vae_scale_factor=1).preprocess(picture, size, size, resize_mode="crop")
                .expand(len(cond), -1, -1, -1) if strength < 1 else None)  # strength 1: from noise, no pixels
        images = self.sample(cond, uncond, num_inference_steps, guidance_scale, generator, size, size,
                             callback_on_step_end, init=init, strength=strength)
        return self._output(images, output_type, return_dict)
