"""Prompt templates for zero-shot classification: a label becomes several sentences whose text
embeddings are averaged (CLIP's prompt ensembling)."""

from __future__ import annotations

from collections.abc import Sequence

from multimodal.errors import UsageError

# A short ensemble that suits photos, drawings, clip-art and emoji alike.
DEFAULT_TEMPLATES = (
    "{}",
    "a photo of a {}.",
    "a drawing of a {}.",
    "a picture of a {}.",
    "an illustration of a {}.",
    "a close-up photo of the {}.",
    "an icon of a {}.",
)


def check_templates(templates: Sequence[str]) -> tuple[str, ...]:
    templates = tuple(templates)
    if not templates:
        raise UsageError("at least one prompt template is needed, e.g. 'a photo of a {}'")
    bad = [t for t in templates if t.count("{}") != 1]
    if bad:
        raise UsageError(f"each template needs exactly one '{{}}' where the label goes; these do not: {bad}")
    return templates


def fill(templates: Sequence[str], label: str) -> list[str]:
    return [t.format(label) for t in templates]
