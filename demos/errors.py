"""Error reporting for the web demo.

Errors reach the page as one sentence that names the uploaded file, never a path on the server. A user's mistake
(a `MultimodalError`, `ImageError` included) is one line in the server log; anything else is a bug and is logged
with its traceback. Gradio itself prints neither.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path

import gradio as gr

from multimodal.errors import MultimodalError

log = logging.getLogger("multimodal.demo")


def gradio_cache_dir() -> str:
    """Where Gradio keeps uploads and its copies of outputs (decided as Gradio decides it)."""
    return os.environ.get("GRADIO_TEMP_DIR") or str(Path(tempfile.gettempdir()) / "gradio")


def public_message(text: str, private_dirs: Iterable[str | os.PathLike]) -> str:
    """`text` with the folders of any path under `private_dirs` taken out, so that a file keeps only its name."""
    for folder in sorted({str(d).rstrip("/\\") for d in private_dirs if str(d)}, key=len, reverse=True):
        text = re.sub(re.escape(folder) + r"(?:[/\\][^\s/\\'\"]*)*[/\\]", "", text)
    return text


def readable_errors(method):
    """Wrap a `Demo` method: every failure reaches the page as a `gr.Error` with one readable sentence, and the
    app keeps serving. The log gets one line for a user's mistake, the traceback for anything else."""

    @functools.wraps(method)
    def wrapper(demo, *args, **kwargs):
        try:
            return method(demo, *args, **kwargs)
        except MultimodalError as e:
            log.warning("%s refused: %s", method.__name__, e)
            message = str(e)
        except Exception as e:  # noqa: BLE001 - a bug: logged with its traceback, shown as a message
            log.exception("%s failed", method.__name__)
            message = f"Something went wrong ({type(e).__name__}): {e}"
        raise gr.Error(public_message(message, demo.private_dirs()), print_exception=False)

    return wrapper
