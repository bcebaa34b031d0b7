"""The multimodal web demo: Tag, Generate, Variations, Search, About.

    multimodal demo [--model builtin] [--host 127.0.0.1] [--port 7860]

Thin by design: every tab calls the library's public API (ZeroShotTagger, TextToImagePipeline,
multimodal.tagging.index) and adds only input limits and readable errors. Models load once, at start,
and are shared by all requests; Gradio's queue bounds the concurrency and the waiting line.
"""

from __future__ import annotations

import collections
import contextlib
import shutil
import tempfile
import time
import uuid
import warnings
import weakref
from pathlib import Path

import gradio as gr
import torch

from multimodal.data.images import open_image
from multimodal.errors import MissingError, UsageError
from multimodal_demo.errors import gradio_cache_dir, readable_errors
from multimodal_demo.inputs import Limits, number, sampling_settings

LIMITS = Limits()


def session_of(request: gr.Request | None) -> str | None:
    """The browser session a request comes from (None for a direct call without one)."""
    return getattr(request, "session_hash", None)


class Demo:
    """The models and data behind the page, loaded once."""

    def __init__(self, model: str = "builtin", pipeline: str | None = "builtin", indexes: dict | None = None,
                 label_sets: dict[str, list[str]] | None = None, examples: list[str] | None = None,
                 model_card: str | None = None, limits: Limits = LIMITS, bf16: bool = False):
        from multimodal.generation import TextToImagePipeline
        from multimodal.tagging import ZeroShotTagger

        self.limits = limits
        self.model_name = model
        self.tagger = ZeroShotTagger.from_pretrained(model, max_pixels=limits.max_pixels, bf16=bf16)
        self.pipe = None
        if pipeline:
            self.use_pipeline(TextToImagePipeline.from_pretrained(pipeline), bf16)
        self.indexes = {name: Path(path) for name, path in (indexes or {}).items()}
        self.label_sets = label_sets or {}
        self.examples = examples or []
        self.model_card = model_card or "No model card was found for this model."
        self.outputs_dir = Path(tempfile.mkdtemp(prefix="multimodal-demo-"))
        self._remove_outputs = weakref.finalize(self, shutil.rmtree, self.outputs_dir, True)  # also at exit
        self._outputs: collections.deque[tuple[float, Path]] = collections.deque()
        self._examples: collections.OrderedDict[str | None, object] = collections.OrderedDict()  # session -> cache

    def use_pipeline(self, pipe, bf16: bool = False) -> None:
        """Generate with `pipe`; `bf16` samples under bfloat16 autocast where the CPU has bf16 kernels (else fp32)."""
        pipe.set_progress_bar_config(disable=True)
        pipe.enable_bf16(bf16)
        self.pipe = pipe

    def close(self) -> None:
        """Delete the demo's temporary outputs. The server does it when it stops; so does the interpreter's exit."""
        self._remove_outputs()

    def private_dirs(self) -> list[Path | str]:
        """Server folders that error messages must not show (an uploaded file keeps its name)."""
        return [gradio_cache_dir(), tempfile.gettempdir(), self.outputs_dir, *(p.parent for p in self.indexes.values()),
                *(Path(p).parent for p in self.examples)]

    def _open_upload(self, image_path: str):
        path, kept = Path(image_path), self.limits.cache_seconds
        if not path.is_file():  # deleted by Gradio's cache cleaning (Limits.cache_seconds)
            kept_for = f"{kept // 60} minutes" if kept >= 120 else f"{kept} seconds"
            raise MissingError(f"{path.name}: the upload is no longer on the server (uploads are kept {kept_for}); "
                               "upload it again")
        return open_image(path, max_pixels=self.limits.max_pixels, name=path.name)

    def _publish(self, items) -> list[str]:
        """Copy images (PIL or files) under fresh unique names and return the paths. Gradio caches each output
        under its content hash and rewrites or copies it there while another request may be downloading it, so
        two users receiving the same bytes (same prompt and seed, same search hit) could get a truncated file;
        unique names never collide."""
        if not self._remove_outputs.alive:  # served again after close()
            self._remove_outputs = weakref.finalize(self, shutil.rmtree, self.outputs_dir, True)
        paths = []
        for item in items:
            folder = self.outputs_dir / uuid.uuid4().hex
            folder.mkdir(parents=True)
            if isinstance(item, (str, Path)):  # a file keeps its name, for the page
                path = Path(shutil.copyfile(item, folder / Path(item).name))
            else:
                path = folder / "image.png"
                item.save(path)
            self._outputs.append((time.monotonic(), folder))
            paths.append(str(path))
        too_old = time.monotonic() - self.limits.cache_seconds  # Gradio has its own copy by now
        while self._outputs and (len(self._outputs) > 8 * self.limits.max_images * self.limits.queue_size
                                 or self._outputs[0][0] < too_old):  # bounded disk use
            shutil.rmtree(self._outputs.popleft()[1], ignore_errors=True)
        return paths

    # --- Tag ------------------------------------------------------------------------------------------
    @readable_errors
    def add_examples(self, files: list[str] | None, label: str, request: gr.Request = None) -> str:
        """Few-shot examples for this browser session only (kept here by session, never in the page)."""
        label, session = (label or "").strip(), session_of(request)
        if not files:
            raise UsageError("choose one or more example images first")
        if not label or "," in label:
            raise UsageError("type the one label these examples show (no commas), e.g. 'my mug'")
        examples = self._examples.get(session)
        total = len(files) + (len(examples) if examples is not None else 0)
        if total > self.limits.max_examples:
            raise UsageError(f"{total} example images; at most {self.limits.max_examples} per session")
        tagger = self.tagger.with_examples(examples)
        with warnings.catch_warnings():  # the skipped files are listed on the page instead
            warnings.simplefilter("ignore")
            report = tagger.add_examples({label: [Path(f) for f in files]})
        self._examples[session] = tagger.examples
        self._examples.move_to_end(session)
        while len(self._examples) > self.limits.max_sessions:  # bounded memory: the oldest sessions go first
            self._examples.popitem(last=False)
        text = "examples: " + ", ".join(f"{name} ({len(feats)})" for name, feats in tagger.examples.features.items())
        if report.skipped:
            text += f"\nskipped {len(report.skipped)}: " + "; ".join(msg for _, msg in report.skipped[:3])
        return text + "\nTheir labels must be among the labels you tag with."

    def clear_examples(self, request: gr.Request = None) -> str:
        self._examples.pop(session_of(request), None)
        return "none"

    @readable_errors
    def tag(self, image_path: str | None, labels_text: str, label_set: str | None, mode: str,
            request: gr.Request = None) -> dict[str, float]:
        if not image_path:
            raise UsageError("upload an image (or pick an example) first")
        labels = [x.strip() for x in (labels_text or "").split(",") if x.strip()]
        if not labels and label_set:
            labels = self.label_sets.get(label_set, [])
        if not labels:
            raise UsageError("the label list is empty: type labels separated by commas, or pick a label set")
        if len(labels) > self.limits.max_labels:
            raise UsageError(f"{len(labels)} labels; at most {self.limits.max_labels} per request")
        image = self._open_upload(image_path)
        multi = mode.startswith("multi")
        examples = self._examples.get(session_of(request))
        tagger = self.tagger.with_examples(examples) if examples is not None else self.tagger
        tags = tagger.tag(image, labels, mode="multi" if multi else "single", threshold=0.0 if multi else None)
        return {label: float(score) for label, score in tags}

    @readable_errors
    def preview(self, image_path: str | None):
        """A small copy of an upload for the page, made after the pixel limit was checked from the header."""
        if not image_path:
            return None
        image = self._open_upload(image_path)
        image.thumbnail((256, 256))
        return self._publish([image])[0]

    # --- Generate -------------------------------------------------------------------------------------
    def _need_pipeline(self):
        if self.pipe is None:
            raise UsageError("this demo was started without a text-to-image pipeline")
        return self.pipe

    @staticmethod
    def _steps_callback(progress, steps: int):
        def callback(pipe, i, t, kwargs):
            total = pipe.total_steps(steps)  # an upsampler stage doubles them
            progress((i + 1) / total, desc=f"denoising step {i + 1}/{total}")

        return callback

    @readable_errors
    def generate(self, prompt: str, negative: str, n, steps, guidance, seed,
                 progress=gr.Progress()):  # noqa: B008 - Gradio passes its progress tracker through this default
        pipe = self._need_pipeline()
        prompt = (prompt or "").strip()
        if not prompt:
            raise UsageError("the prompt is empty: describe the image you want, e.g. 'a red apple'")
        n, steps, guidance, seed = sampling_settings(self.limits, n, steps, guidance, seed)
        notes = []
        if len(prompt) > self.limits.max_prompt_chars:
            notes.append(f"prompt cut to {self.limits.max_prompt_chars} characters")
            prompt = prompt[: self.limits.max_prompt_chars]
        images = pipe(prompt, negative_prompt=(negative or "").strip() or None, num_inference_steps=steps,
                      guidance_scale=guidance, num_images_per_prompt=n, generator=torch.Generator().manual_seed(seed),
                      callback_on_step_end=self._steps_callback(progress, steps)).images
        return self._publish(images), self._info(seed, steps, guidance, notes)

    @readable_errors
    def variations(self, image_path: str | None, n, steps, guidance, seed, strength,
                   progress=gr.Progress()):  # noqa: B008 - Gradio passes its progress tracker through this default
        pipe = self._need_pipeline()
        if not image_path:
            raise UsageError("upload an image first")
        n, steps, guidance, seed = sampling_settings(self.limits, n, steps, guidance, seed)
        strength = number(strength, "strength", self.limits.min_strength, 1)
        image = self._open_upload(image_path)
        images = pipe.image_variations(image, num_images_per_prompt=n, num_inference_steps=steps,
                                       guidance_scale=guidance, generator=torch.Generator().manual_seed(seed),
                                       strength=strength,
                                       callback_on_step_end=self._steps_callback(progress, steps)).images
        return self._publish(images), f"{self._info(seed, steps, guidance, [])} · strength {strength:g}"

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
        k = number(k, "number of results", 1, self.limits.max_results, whole=True)
        hits = search(self.tagger, self.indexes[index_name], (query or "").strip(), top_k=k)
        return list(zip(self._publish([path for path, _ in hits]), [f"{score:.3f}" for _, score in hits]))


def default_demo(model: str = "builtin", bf16: bool = False) -> Demo:
    """The shipped model, pipeline, example images, label sets, search index and model card; `bf16`: tag and sample
    under bfloat16 where the CPU has bf16 kernels."""
    from multimodal.tagging.labels import read_labels_file
    from multimodal_assets import ASSETS_DIR

    label_sets = {p.stem.replace("-", " "): read_labels_file(p) for p in sorted((ASSETS_DIR / "labels").glob("*.txt"))}
    examples = [str(p) for p in sorted((ASSETS_DIR / "examples").glob("*")) if p.suffix in (".png", ".jpg")]
    card = ASSETS_DIR / "MODEL_CARD.md"
    index = ASSETS_DIR / "index"
    indexes = {"shipped examples": index} if index.is_dir() and model == "builtin" else {}
    return Demo(model=model, pipeline="builtin" if model == "builtin" else None, indexes=indexes,
                label_sets=label_sets, examples=examples, model_card=card.read_text() if card.is_file() else None,
                bf16=bf16)


def launch(demo: Demo, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Serve `demo`; only the app's own assets and its temporary outputs are ever served as files. Stopping the
    server (`app.close()`, or Ctrl+C when blocking) deletes the uploads and every output, Gradio's and ours."""
    from multimodal.tagging.index import index_root
    from multimodal_assets import ASSETS_DIR
    from multimodal_demo.layout import build_app

    app = build_app(demo)

    @contextlib.asynccontextmanager
    async def close_demo_on_stop(_server):
        yield
        demo.close()

    allowed = [str(ASSETS_DIR / "examples"), str(demo.outputs_dir),
               *(str(index_root(path)) for path in demo.indexes.values())]
    app.launch(server_name=host, server_port=port, prevent_thread_lock=not block, show_error=True,
               max_file_size=demo.limits.max_upload, allowed_paths=allowed, quiet=not block, footer_links=["api"],
               app_kwargs={"lifespan": close_demo_on_stop})
    return app
