"""The project's own error types: what a user can fix (bad input, a missing file, a refused option).

The CLI prints these as one line and exits 2; any other exception is a bug or a real failure (out of
memory, a torch error) and shows with its traceback. Each also subclasses the matching built-in, so
`except ValueError` in a user's code keeps working.
"""

from __future__ import annotations


class MultimodalError(Exception):
    """Base class: an error in what the user asked for, with a message that says how to fix it."""


class UsageError(MultimodalError, ValueError):
    """A bad argument, option, config value or input file content."""


class MissingError(MultimodalError, FileNotFoundError):
    """A file, folder, model or package that was named but is not there."""


class TrainingStopped(MultimodalError, RuntimeError):
    """A training run that stopped on purpose (e.g. repeated non-finite losses); the message says why."""
