"""The workbench's exceptions: every input it cannot act on raises one of these, with a one-line
message that says what to do instead. The CLI prints that line; it never shows a traceback for them.

    raise ConfigError("train.lr must be positive, got 0")
"""


class WorkbenchError(ValueError):
    """An input the workbench cannot act on; the message says what to do instead."""


class ConfigError(WorkbenchError):
    """A config key, type or value that is wrong."""


class FitError(WorkbenchError):
    """Data a law cannot be fitted to or judged on (too few sizes, non-positive values, ...)."""


class CorruptCheckpointError(WorkbenchError):
    """A resume checkpoint that cannot be loaded; the run lifecycle restarts the run from scratch."""


def one_line(text: str) -> str:
    """`text` as one plain line: terminal colour codes removed, whitespace collapsed (pip and
    notebook errors carry both)."""
    import re

    return " ".join(re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text).split())
