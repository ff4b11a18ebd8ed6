"""WordNet 3.0's glosses and example sentences, from Debian's `wordnet-base` package.

Each synset of `data.noun`, `data.verb`, `data.adj` and `data.adv` becomes one line: its words, a
colon and its gloss, e.g. "physical entity: an entity that has physical existence". A document is
a run of up to 200 consecutive synsets of one lexicographer file (`wordnet/noun.animal/003`), so the
held-out split takes whole runs of one topic, never half a line.

Format (wndb(5WN)): a licence header of lines that start with two spaces, then one synset per line:
`offset lex_filenum ss_type w_cnt(hex) [word lex_id]... p_cnt [pointer]... [frames] | gloss`.
"""

from __future__ import annotations

import re
from pathlib import Path

from workbench.base.errors import WorkbenchError
from workbench.data.corpus import Document
from workbench.data.sources.archives import Archive, PinnedSource, deb_files

PER_DOCUMENT = 200  # synsets per document
# lexicographer file numbers -> names (lexnames(5WN), WordNet 3.0)
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location noun.motive "
    "noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process noun.quantity "
    "noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change verb.cognition "
    "verb.communication verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl").split()
_MARKER = re.compile(r"\((?:a|p|ip)\)$")  # adjective position markers: word(a), word(p), word(ip)


def synset_line(line: str) -> tuple[str, str]:
    """(lexicographer file name, "words: gloss") of one line of a `data.*` file."""
    head, bar, gloss = line.partition(" | ")
    fields = head.split()
    if not bar or len(fields) < 6:
        raise WorkbenchError(f"not a WordNet data line: {line[:80]!r}")
    lexfile = int(fields[1])
    n_words = int(fields[3], 16)
    words = [_MARKER.sub("", w).replace("_", " ") for w in fields[4:4 + 2 * n_words:2]]
    name = LEXNAMES[lexfile] if lexfile < len(LEXNAMES) else f"lexfile{lexfile:02d}"
    return name, f"{', '.join(words)}: {gloss.strip()}"


def parse(archive: Path) -> list[Document]:
    files = deb_files(archive, "usr/share/wordnet/data.")
    runs: dict[str, list[str]] = {}
    for pos in ("noun", "verb", "adj", "adv"):
        body = files.get(f"usr/share/wordnet/data.{pos}")
        if body is None:
            raise WorkbenchError(f"{archive} lacks usr/share/wordnet/data.{pos}: not the wordnet-base package")
        for line in body.decode("utf-8").splitlines():
            if line.startswith("  ") or not line.strip():  # the licence header
                continue
            name, text = synset_line(line)
            runs.setdefault(name, []).append(text)
    return [Document(f"wordnet/{name}/{i // PER_DOCUMENT:03d}", "\n".join(lines[i:i + PER_DOCUMENT]))
            for name, lines in runs.items() for i in range(0, len(lines), PER_DOCUMENT)]


SOURCE = PinnedSource(
    name="wordnet",
    archive=Archive(package="wordnet-base 1:3.0-37 (Debian bookworm)",
                    url="http://deb.debian.org/debian/pool/main/w/wordnet/wordnet-base_3.0-37_all.deb",
                    file="wordnet-base_3.0-37_all.deb", size="6.5 MB",
                    sha256="61060d960f9ada8fa120872312eccd3ecebfbab8c4579e4f5a74e1cf67620752"),
    parse=parse, parser_version=1,
    licence="WordNet 3.0 licence (use, copy, modify and distribute for any purpose, with its notice)",
)
