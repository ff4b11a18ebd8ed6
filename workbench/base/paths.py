"""Where the workbench keeps data on disk: the prepared pretraining cache and the offline task files.

    default_data_dir()      # $WORKBENCH_DATA_DIR, else <data root>/cache
    task_files_dir()        # $WORKBENCH_TASKS_DIR, else <data root>/tasks

The data root is `data/` of a source checkout, else the user cache folder.
"""

from __future__ import annotations

import os
from pathlib import Path


def data_root() -> Path:
    """`data/` of a source checkout, else the user cache folder."""
    repo = Path(__file__).resolve().parents[2]
    if (repo / "pyproject.toml").exists() and (repo / "data").is_dir():
        return repo / "data"
    return Path.home() / ".cache" / "scaling-workbench"


def default_data_dir() -> Path:
    """Prepared pretraining data: `$WORKBENCH_DATA_DIR`, else `<data root>/cache`."""
    return Path(os.environ.get("WORKBENCH_DATA_DIR") or data_root() / "cache")


def task_files_dir() -> Path:
    """`$WORKBENCH_TASKS_DIR`, else `<data root>/tasks` (beside the pretraining cache)."""
    return Path(os.environ.get("WORKBENCH_TASKS_DIR") or data_root() / "tasks")
