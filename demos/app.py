"""The multimodal web demo: Tag, Generate, Variations, Search, About.

    multimodal demo [--model builtin] [--host 127.0.0.1] [--port 7860]

Thin by design: every tab calls the library's public API (ZeroShotTagger, TextToImagePipeline,
multimodal.tagging.index) and adds only input limits and readable errors. Models load once, at start,
and are shared by all requests; Gradio's queue bounds the concurrency and the waiting line.
"""

from __future__ import annotations

import collections
import functools
import logging
import random
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import torch

from multimodal.data.images import ImageError, open_image
from multimodal.errors import UsageError

log = logging.getLogger("multimodal.demo")


@dataclass(frozen=True)
class Limits:
    max_steps: int = 50
    max_images: int = 8
    max_prompt_chars: int = 300
    max_labels: int = 200
    max_pixels: int = 24_000_000  # refused from the header, before any decoding
    max_upload: str = "10mb"
    concurrency: int = 2  # requests computed at once; the rest wait in the queue
    queue_size: int = 16  # beyond this, new requests are turned away with a message


LIMITS = Limits()


def readable_errors(fn):
    """Every failure reaches the page as one readable sentence; the app keeps serving."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except (ValueError, ImageError, FileNotFoundError) as e:
            raise gr.Error(str(e)) from None
        except Exception as e:  # noqa: BLE001 - logged with its traceback, shown as a message
            log.exception("request failed")
            raise gr.Error(f"Something went wrong ({type(e).__name__}): {e}") from None

    return wrapper


def clamp(value, low, high, name: str, notes: list[str]):
    clamped = min(max(value, low), high)
    if clamped != value:
        notes.append(f"{name} clamped from {value} to {clamped} (allowed: {low} to {high})")
    return clamped


class Demo:
    """The models and data behind the page, loaded once."""

    def __init__(self, model: str = "builtin", pipeline: str | None = "builtin", indexes: dict | None = None,
                 label_sets: dict[str, list[str]] | None = None, examples: list[str] | None = None,
                 model_card: str | None = None, limits: Limits = LIMITS):
        from multimodal.generation import TextToImagePipeline
        from multimodal.tagging import ZeroShotTagger

        self.limits = limits
        self.model_name = model
        self.tagger = ZeroShotTagger.from_pretrained(model, max_pixels=limits.max_pixels)
        self.pipe = TextToImagePipeline.from_pretrained(pipeline) if pipeline else None
        if self.pipe is not None:
            self.pipe.set_progress_bar_config(disable=True)
        self.indexes = {name: Path(path) for name, path in (indexes or {}).items()}
        self.label_sets = label_sets or {}
        self.examples = examples or []
        self.model_card = model_card or "No model card was found for this model."
        self.outputs_dir = Path(tempfile.mkdtemp(prefix="multimodal-demo-"))
        self._outputs: collections.deque[Path] = collections.deque()

    def _publish(self, items) -> list[str]:
        """Copy images (PIL or files) under fresh unique names and return the paths. Gradio caches each output
        under its content hash and rewrites or copies it there while another request may be downloading it, so
        two users receiving the same bytes (same prompt and seed, same search hit) could get a truncated file;
        unique names never collide."""
        paths = []
        for item in items:
            folder = self.outputs_dir / uuid.uuid4().hex
            folder.mkdir()
            if isinstance(item, (str, Path)):  # a file keeps its name, for the page
                path = Path(shutil.copyfile(item, folder / Path(item).name))
            else:
                path = folder / "image.png"
                item.save(path)
            self._outputs.append(folder)
            paths.append(str(path))
        while len(self._outputs) > 8 * self.limits.max_images * self.limits.queue_size:  # bounded disk use
            shutil.rmtree(self._outputs.popleft(), ignore_errors=True)
        return paths

    # --- Tag ------------------------------------------------------------------------------------------
    @readable_errors
    def tag(self, image_path: str | None, labels_text: str, label_set: str | None, mode: str) -> dict[str, float]:
        if not image_path:
            raise UsageError("upload an image (or pick an example) first")
        labels = [x.strip() for x in (labels_text or "").split(",") if x.strip()]
        if not labels and label_set:
            labels = self.label_sets.get(label_set, [])
        if not labels:
            raise UsageError("the label list is empty: type labels separated by commas, or pick a label set")
        if len(labels) > self.limits.max_labels:
            raise UsageError(f"{len(labels)} labels; at most {self.limits.max_labels} per request")
        image = open_image(image_path, max_pixels=self.limits.max_pixels)
        multi = mode.startswith("multi")
        tags = self.tagger.tag(image, labels, mode="multi" if multi else "single", threshold=0.0 if multi else None)
        return {label: float(score) for label, score in tags}

    @readable_errors
    def preview(self, image_path: str | None):
        """A small copy of an upload for the page, made after the pixel limit was checked from the header."""
        if not image_path:
            return None
        image = open_image(image_path, max_pixels=self.limits.max_pixels)
        image.thumbnail((256, 256))
        return self._publish([image])[0]

    # --- Generate -------------------------------------------------------------------------------------
    def _settings(self, n, steps, guidance, seed) -> tuple[int, int, float, int, list[str]]:
        notes: list[str] = []
        n = clamp(int(n), 1, self.limits.max_images, "number of images", notes)
        steps = clamp(int(steps), 1, self.limits.max_steps, "steps", notes)
        guidance = clamp(float(guidance), 0.0, 20.0, "guidance", notes)
        seed = int(seed) if seed is not None and int(seed) >= 0 else random.randrange(2**31)
        return n, steps, guidance, seed, notes

    def _need_pipeline(self):
        if self.pipe is None:
            raise UsageError("this demo was started without a text-to-image pipeline")
        return self.pipe

    @staticmethod
    def _steps_callback(progress, steps: int):
        def callback(pipe, i, t, kwargs):
            progress((i + 1) / steps, desc=f"denoising step {i + 1}/{steps}")

        return callback

    @readable_errors
    def generate(self, prompt: str, negative: str, n, steps, guidance, seed,
                 progress=gr.Progress()):  # noqa: B008 - Gradio passes its progress tracker through this default
        pipe = self._need_pipeline()
        prompt = (prompt or "").strip()
        if not prompt:
            raise UsageError("the prompt is empty: describe the image you want, e.g. 'a red apple'")
        n, steps, guidance, seed, notes = self._settings(n, steps, guidance, seed)
        if len(prompt) > self.limits.max_prompt_chars:
            notes.append(f"prompt cut to {self.limits.max_prompt_chars} characters")
            prompt = prompt[: self.limits.max_prompt_chars]
        images = pipe(prompt, negative_prompt=(negative or "").strip() or None, num_inference_steps=steps,
                      guidance_scale=guidance, num_images_per_prompt=n, generator=torch.Generator().manual_seed(seed),
                      callback_on_step_end=self._steps_callback(progress, steps)).images
        return self._publish(images), self._info(seed, steps, guidance, notes)

    @readable_errors
    def variations(self, image_path: str | None, n, steps, guidance, seed,
                 progress=gr.Progress()):  # noqa: B008 - Gradio passes its progress tracker through this default
        pipe = self._need_pipeline()
        if not image_path:
            raise UsageError("upload an image first")
        n, steps, guidance, seed, notes = self._settings(n, steps, guidance, seed)
        image = open_image(image_path, max_pixels=self.limits.max_pixels)
        images = pipe.image_variations(image, num_images_per_prompt=n, num_inference_steps=steps,
                                       guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
                                       callback_on_step_end=self._steps_callback(progress, steps)).images
        return self._publish(images), self._info(seed, steps, guidance, notes)

    @staticmethod
    def _info(seed: int, steps: int, guidance: float, notes: list[str]) -> str:
        text = f"seed {seed} · {steps} steps · guidance {guidance:g}"
        if notes:
            gr.Warning("; ".join(notes))
            text += "\n" + "\n".join(notes)
        return text

    # --- Search ---------------------------------------------------------------------------------------
    @readable_errors
    def search(self, index_name: str | None, query: str, k) -> list[tuple[str, str]]:
        from multimodal.tagging.index import search

        if not self.indexes:
            raise UsageError("this demo was started without a search index (build one with `multimodal index`)")
        if index_name not in self.indexes:
            raise UsageError(f"pick an index: {', '.join(self.indexes)}")
        k = clamp(int(k), 1, 24, "number of results", [])
        hits = search(self.tagger, self.indexes[index_name], (query or "").strip(), top_k=k)
        return list(zip(self._publish([path for path, _ in hits]), [f"{score:.3f}" for _, score in hits]))


def image_input(label: str):
    """An upload field plus a preview drawn by `Demo.preview`. Not `gr.Image`: it opens every upload with
    Pillow before our code runs, so a bad file would fail inside Gradio with an unreadable message."""
    upload = gr.File(label=label, file_types=["image"], type="filepath")
    preview = gr.Image(label="preview", type="filepath", interactive=False, height=220)
    return upload, preview


def sampling_controls(limits: Limits):
    """Images, steps, guidance and seed inputs; the sliders stop at the limits, so the page cannot ask for more."""
    return (gr.Slider(1, limits.max_images, value=min(4, limits.max_images), step=1, label="images"),
            gr.Slider(1, limits.max_steps, value=min(20, limits.max_steps), step=1, label="steps"),
            gr.Slider(0, 10, value=3, step=0.5, label="guidance scale"),
            gr.Number(value=-1, precision=0, label="seed (-1 = random)"))


def build_app(demo: Demo) -> gr.Blocks:
    limits = demo.limits
    with gr.Blocks(title="multimodal") as app:
        gr.Markdown("# multimodal\nZero-shot tagging, text-to-image and search with one small CLIP, on a CPU.")
        with gr.Tab("Tag"):
            with gr.Row():
                with gr.Column():
                    tag_image, tag_preview = image_input("image")
                    if demo.examples:
                        gr.Examples(demo.examples, inputs=tag_image, label="examples")
                with gr.Column():
                    labels = gr.Textbox(label="labels (comma-separated)", placeholder="cat, dog, car")
                    label_set = gr.Dropdown(list(demo.label_sets), value=None, label="or a label set")
                    mode = gr.Radio(["single-label (softmax)", "multi-label (calibrated)"],
                                    value="single-label (softmax)", label="mode")
                    tag_button = gr.Button("Tag", variant="primary")
                    tags = gr.Label(label="tags", num_top_classes=10, elem_id="tags")
            tag_image.change(demo.preview, tag_image, tag_preview, api_name=False)
            tag_button.click(demo.tag, [tag_image, labels, label_set, mode], tags, api_name="tag")
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="prompt", placeholder="a red apple", max_length=limits.max_prompt_chars)
                    negative = gr.Textbox(label="negative prompt")
                    n_images, steps, guidance, seed = sampling_controls(limits)
                    generate_button = gr.Button("Generate", variant="primary")
                with gr.Column():
                    gallery = gr.Gallery(label="images", columns=4, elem_id="gallery")
                    info = gr.Textbox(label="settings used", interactive=False, elem_id="seed-info")
            generate_button.click(demo.generate, [prompt, negative, n_images, steps, guidance, seed], [gallery, info],
                                  api_name="generate")
        with gr.Tab("Variations"):
            with gr.Row():
                with gr.Column():
                    var_image, var_preview = image_input("image")
                    var_n, var_steps, var_guidance, var_seed = sampling_controls(limits)
                    var_button = gr.Button("Make variations", variant="primary")
                with gr.Column():
                    var_gallery = gr.Gallery(label="variations", columns=4)
                    var_info = gr.Textbox(label="settings used", interactive=False)
            var_image.change(demo.preview, var_image, var_preview, api_name=False)
            var_button.click(demo.variations, [var_image, var_n, var_steps, var_guidance, var_seed],
                             [var_gallery, var_info], api_name="variations")
        with gr.Tab("Search"):
            with gr.Row():
                index_name = gr.Dropdown(list(demo.indexes), value=next(iter(demo.indexes), None), label="index",
                                         scale=2)
                query = gr.Textbox(label="text query", placeholder="an animal", scale=4)
                k = gr.Slider(1, 24, value=8, step=1, label="results", scale=1)
            search_button = gr.Button("Search", variant="primary")
            results = gr.Gallery(label="best matches", columns=6)
            search_button.click(demo.search, [index_name, query, k], results, api_name="search")
        with gr.Tab("About"):
            gr.Markdown(demo.model_card)
    app.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return app


def default_demo(model: str = "builtin") -> Demo:
    """The shipped model, pipeline, example images, label sets, search index and model card."""
    from multimodal.tagging.labels import read_labels_file
    from multimodal_assets import ASSETS_DIR

    label_sets = {p.stem.replace("-", " "): read_labels_file(p) for p in sorted((ASSETS_DIR / "labels").glob("*.txt"))}
    examples = [str(p) for p in sorted((ASSETS_DIR / "examples").glob("*")) if p.suffix in (".png", ".jpg")]
    card = ASSETS_DIR / "MODEL_CARD.md"
    index = ASSETS_DIR / "index"
    indexes = {"shipped examples": index} if index.is_dir() and model == "builtin" else {}
    return Demo(model=model, pipeline="builtin" if model == "builtin" else None, indexes=indexes,
                label_sets=label_sets, examples=examples, model_card=card.read_text() if card.is_file() else None)


def launch(demo: Demo, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve `demo`; only the app's own assets and its temporary outputs are ever served as files."""
    from multimodal.tagging.index import index_root
    from multimodal_assets import ASSETS_DIR

    app = build_app(demo)
    allowed = [str(ASSETS_DIR / "examples"), str(demo.outputs_dir),
               *(str(index_root(path)) for path in demo.indexes.values())]
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
               max_file_size=demo.limits.max_upload, allowed_paths=allowed, quiet=not block, footer_links=["api"])
    return app
