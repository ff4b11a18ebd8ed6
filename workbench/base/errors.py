"""The workbench's exceptions: every input it cannot act on raises one of these, with a one-line
message that says what to do instead. The CLI prints that line; it never shows a traceback for them.

    raise ConfigError("train.lr must be positive, got 0")
"""


class WorkbenchError(ValueError):
    """An input the workbench cannot act on; the message says what to do instead."""

    def _render_traceback_(self) -> list[str]:
        """What IPython (a notebook cell, a papermill run) shows instead of a traceback: the one line."""
        return [f"{type(self).__name__}: {self}"]


class ConfigError(WorkbenchError):
    """A config key, type or value that is wrong."""


class FitError(WorkbenchError):
    """Data a law cannot be fitted to or judged on (too few sizes, non-positive values, ...)."""


class CorruptCheckpointError(WorkbenchError):
    """A resume checkpoint that cannot be loaded, or was written by another run; the run lifecycle
    restarts the run from scratch, with a warning."""


def one_line(text: str) -> str:
    """`text` as one plain line: terminal colour codes removed, whitespace collapsed (pip and
    notebook errors carry both)."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).split())
