"""The `multimodal` console script: one entry point, one module per subcommand.

Each subcommand module has `register(subparsers)`; heavy imports happen inside the command
functions, so `multimodal --help` and every `--help` stay fast.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable

from multimodal import __version__
from multimodal.errors import MultimodalError

DESCRIPTION = """\
A CLIP-style text-image model in one package: webdataset shards, contrastive training,
zero-shot tagging, fine-tuning, a CLIP-conditioned diffusion decoder and a web demo.

Every command works offline with the shipped default model ("builtin").
Run `multimodal COMMAND --help` for the details of a command."""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; each option's default appended once, unless it is empty or its help names it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default in (None, False, [], argparse.SUPPRESS) or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def checked(parse: Callable[[str], float], ok: Callable[[float], bool], what: str) -> Callable[[str], float]:
    """An argparse type: `parse(text)` that `ok` accepts, else a message saying `what` was expected."""

    def convert(text: str):
        try:
            value = parse(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not ok(value):
            raise argparse.ArgumentTypeError(f"must be {what}, got {text}")
        return value

    return convert


positive_int = checked(int, lambda v: v >= 1, "a whole number of at least 1")
unit_interval = checked(float, lambda v: 0.0 <= v <= 1.0, "a number from 0 to 1")  # NaN fails the comparison
finite_float = checked(float, math.isfinite, "a finite number")
step_share = checked(float, lambda v: 0.0 < v <= 1.0, "a share above 0 and at most 1")


def build_parser() -> argparse.ArgumentParser:
    from multimodal.cli import demo, evaluate, export, generate, search, shards, tag, train

    parser = argparse.ArgumentParser(prog="multimodal", description=DESCRIPTION, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"multimodal {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in (tag, search, generate, shards, train, evaluate, export, demo):
        module.register(sub)
    return parser


def one_line_warning(message, category, filename, lineno, line=None) -> str:
    """A warning for a command-line user: what happened, without the library's source line."""
    return f"multimodal: warning: {message}\n"


def main(argv: list[str] | None = None) -> int:
    import warnings

    warnings.formatwarning = one_line_warning
    parser = build_parser()
    # key=value overrides may follow options (`train clip --config X steps=5`), which argparse leaves over
    args, extra = parser.parse_known_args(argv)
    if extra:
        if not hasattr(args, "overrides") or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides += extra
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except MultimodalError as e:
        # what the user can fix: one readable line, no traceback (set MULTIMODAL_DEBUG=1 to see it);
        # anything else is a bug or a real failure (out of memory, a torch error) and shows as what it is
        import os

        if os.environ.get("MULTIMODAL_DEBUG"):
            raise
        print(f"multimodal {args.command}: error: {e}", file=sys.stderr)
        return 2


def add_subcommand(sub, name: str, help_text: str, description: str | None = None) -> argparse.ArgumentParser:
    return sub.add_parser(name, help=help_text, description=description or help_text, formatter_class=HelpFormatter)
