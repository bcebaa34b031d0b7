"""The demo's page: one tab per task (Tag, Generate, Variations, Search, About), wired to a `Demo`'s methods."""

from __future__ import annotations

from typing import TYPE_CHECKING

import gradio as gr

from multimodal_demo.inputs import as_sent, image_input, sampling_controls

if TYPE_CHECKING:
    from multimodal_demo.app import Demo


def tag_tab(demo: Demo) -> None:
    """Image, labels and mode; the few-shot examples of this browser session in an accordion."""
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
    with gr.Accordion("few-shot: teach a label with your own example images (this session only)", open=False):
        with gr.Row():
            example_files = gr.File(label="example images", file_types=["image"], file_count="multiple",
                                    type="filepath", elem_id="example-files")
            with gr.Column():
                example_label = gr.Textbox(label="the label they show", placeholder="my mug")
                add_button = gr.Button("Add examples")
                clear_button = gr.Button("Clear examples")
                example_info = gr.Textbox(label="examples in this session", value="none",
                                          interactive=False, elem_id="example-info")
    tag_image.change(demo.preview, tag_image, tag_preview, api_name=False)
    tag_button.click(demo.tag, [tag_image, labels, label_set, mode], tags, api_name="tag")
    add_button.click(demo.add_examples, [example_files, example_label], example_info, api_name=False)
    clear_button.click(demo.clear_examples, None, example_info, api_name=False)


def build_app(demo: Demo) -> gr.Blocks:
    from multimodal.generation.pipeline import DEFAULT_GUIDANCE, DEFAULT_VARIATION_GUIDANCE, DEFAULT_VARIATION_STRENGTH

    limits = demo.limits
    # Gradio deletes uploads and its copies of outputs once older than cache_seconds, and all of them at stop
    delete_cache = (max(1, limits.cache_seconds // 4), limits.cache_seconds)
    gr.set_static_paths(demo.examples)  # served in place, never copied into that cache (nor deleted with it)
    with gr.Blocks(title="multimodal", delete_cache=delete_cache) as app:
        gr.Markdown("# multimodal\nZero-shot tagging, text-to-image and search with one small CLIP, on a CPU.")
        with gr.Tab("Tag"):
            tag_tab(demo)
        with gr.Tab("Generate"):
            with gr.Row():
                with gr.Column():
                    prompt = gr.Textbox(label="prompt", placeholder="a red apple", max_length=limits.max_prompt_chars)
                    negative = gr.Textbox(label="negative prompt")
                    n_images, steps, guidance, seed = sampling_controls(limits, DEFAULT_GUIDANCE)
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
                    var_n, var_steps, var_guidance, var_seed = sampling_controls(limits, DEFAULT_VARIATION_GUIDANCE)
                    var_strength = as_sent(gr.Slider(
                        limits.min_strength, 1, value=DEFAULT_VARIATION_STRENGTH, step=0.05,
                        label="strength (1: from the picture's embedding alone; lower keeps more of the picture)"))
                    var_button = gr.Button("Make variations", variant="primary")
                with gr.Column():
                    var_gallery = gr.Gallery(label="variations", columns=4)
                    var_info = gr.Textbox(label="settings used", interactive=False)
            var_image.change(demo.preview, var_image, var_preview, api_name=False)
            var_button.click(demo.variations, [var_image, var_n, var_steps, var_guidance, var_seed, var_strength],
                             [var_gallery, var_info], api_name="variations")
        with gr.Tab("Search"):
            with gr.Row():
                index_name = gr.Dropdown(list(demo.indexes), value=next(iter(demo.indexes), None), label="index",
                                         scale=2)
                query = gr.Textbox(label="text query", placeholder="an animal", scale=4)
                k = as_sent(gr.Slider(1, limits.max_results, value=8, step=1, label="results", scale=1))
            search_button = gr.Button("Search", variant="primary")
            results = gr.Gallery(label="best matches", columns=6)
            search_button.click(demo.search, [index_name, query, k], results, api_name="search")
        with gr.Tab("About"):
            gr.Markdown(demo.model_card)
    app.queue(default_concurrency_limit=limits.concurrency, max_size=limits.queue_size)
    return app
