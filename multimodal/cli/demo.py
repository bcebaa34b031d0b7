"""`multimodal demo`: the Gradio web app (tag, generate, variations, search, about)."""

from __future__ import annotations

from multimodal.cli import add_subcommand

DEMO_HELP = """\
Start the web demo on http://HOST:PORT: tag images, generate images from text, make variations of an
image, search a folder index with text, and read the model card. It runs offline on the shipped model.
Requests are queued (2 at a time, 16 waiting at most); uploads are limited to 10 MB and 24 M pixels;
a number outside the limits shown in the page is refused with a message, and longer prompts are cut.
Uploads and outputs are deleted after an hour, and all of them when the demo stops (Ctrl+C or SIGTERM)."""


def register(sub) -> None:
    p = add_subcommand(sub, "demo", "start the web demo (tag, generate, variations, search)", DEMO_HELP)
    p.add_argument("--model", default="builtin", help="CLIP for tagging and search: 'builtin' or a model folder")
    p.add_argument("--pipeline", default=None, help="text-to-image pipeline folder (default: the shipped one)")
    p.add_argument("--index", action="append", default=[], metavar="NAME=DIR",
                   help="an extra search index built with `multimodal index` (repeatable)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on")
    p.add_argument("--bf16", action="store_true", help="tag and generate under bfloat16 where the CPU has bf16 "
                   "kernels (AVX512-BF16/AMX): about 1.4x faster generation; elsewhere it stays float32")
    p.set_defaults(func=run)


def run(args) -> int:
    import logging
    import signal
    from pathlib import Path

    from multimodal_demo.app import default_demo, launch

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # refusals: one line each
    # Ctrl+C and SIGTERM both close the server and clean up, also where SIGINT was inherited as ignored
    # (a shell's background job), as uvicorn does
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.default_int_handler)
    demo = default_demo(args.model, bf16=args.bf16)
    if args.pipeline:
        from multimodal.generation import TextToImagePipeline

        demo.use_pipeline(TextToImagePipeline.from_pretrained(args.pipeline), args.bf16)
    for spec in args.index:
        name, sep, path = spec.partition("=")
        demo.indexes[name if sep else Path(name).name] = Path(path if sep else name)
    launch(demo, host=args.host, port=args.port, block=True)
    return 0
