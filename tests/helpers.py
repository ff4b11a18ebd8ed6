"""What several test modules share: tiny configs, where the fixtures are, files written in a hub's
schema, a tampered package mirror, and a Chromium to drive."""

import json
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from workbench.config import DataConfig, ExecConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_LADDER = REPO / "data" / "example_ladder.csv"  # real runs of this workbench (data/README.md)
TINY_DATA = DataConfig(corpus="sotu", vocab_size=512, seq_len=32, max_documents=8, eval_fraction=0.25,
                       eval_blocks=32)
TINY_TRAIN = TrainConfig(batch_size=8, lr=3e-3, warmup_steps=2, max_steps=30, eval_interval=10, patience=100)
QUIET = ExecConfig(device="cpu", progress=False, workers=1)  # in this process: tests patch its functions
FIXTURES = Path(__file__).parent / "data"  # files in their sources' exact formats
TASK_FIXTURES = FIXTURES / "tasks"  # each offline source's files, cut to a few dozen rows


SQUAD_CTX = "Paris is the capital of France. It is known for the Eiffel Tower."


HUB_ROWS = {
    "squad": ({"train", "validation"}, dict(id="5733be284776f41900661182", title="Paris", context=SQUAD_CTX,
                                            question="What is the capital of France?",
                                            answers=dict(text=["Paris"], answer_start=[0]))),
    "squad_v2": ({"train", "validation"}, dict(id="56ddde6b9a695914005b9628", title="Paris", context=SQUAD_CTX,
                                               question="What is the capital of Spain?",
                                               answers=dict(text=[], answer_start=[]))),
    "mnli": ({"train", "validation_matched"}, dict(premise="A man plays.", hypothesis="A person plays.", label=0, idx=0)),
    "qnli": ({"train", "validation"}, dict(question="Who plays?", sentence="A man plays.", label=0, idx=0)),
    "sst2": ({"train", "validation"}, dict(sentence="a gorgeous film", label=1, idx=0)),
    "race": ({"train", "validation"}, dict(example_id="high1.txt", article="Tom went home early.",
                                           answer="B", question="Where did Tom go?",
                                           options=["school", "home", "work", "park"])),
    "cola": ({"train", "validation"}, dict(sentence="The book was read.", label=1, idx=0)),
    "mrpc": ({"train", "validation"}, dict(sentence1="He left.", sentence2="He went away.", label=1, idx=0)),
    "boolq": ({"train", "validation"}, dict(question="is paris in france", answer=True, passage=SQUAD_CTX)),
}


def write_hub_fixture(folder, splits, row, n=40):
    folder.mkdir()
    for split in splits:
        with open(folder / f"{split}.jsonl", "w") as f:
            for i in range(n):
                r = dict(row)
                if "idx" in r:
                    r["idx"] = i
                if "id" in r:
                    r["id"] = f"{r['id']}-{i}"
                f.write(json.dumps(r) + "\n")


def wheelhouse(tmp_path, package: str):
    """A local folder of archives (WORKBENCH_TASK_WHEELS) holding a file of the package's archive name
    whose bytes are not the pinned ones, as a tampered mirror would serve it."""
    from workbench.tasks import downloads as taskdata

    folder = tmp_path / "wheels"
    folder.mkdir(exist_ok=True)
    with zipfile.ZipFile(folder / taskdata.PACKAGES[package]["file"], "w") as z:
        z.writestr("not/the/real/package.txt", "x")
    return folder


CHROMIUM = "/usr/bin/chromium"


FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]


def ensure_chromium() -> str:
    if not Path(CHROMIUM).exists():
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            pytest.fail("Chromium is missing and cannot be installed here: apt-get install chromium")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        r = subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], env=env, capture_output=True, text=True,
                           timeout=900)
        if r.returncode:
            pytest.fail(f"apt-get install chromium failed: {r.stderr[-500:]}")
    return CHROMIUM


