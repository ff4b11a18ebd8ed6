"""The World English Bible with Deuterocanon (2020 stable text), public domain, from Debian's
`sword-text-web` package: a SWORD zText module in OSIS markup.

A zText module keeps, per testament, `.bzz` (zlib blocks, mostly one per book), `.bzs` (per block
three little-endian uint32: offset, compressed size, uncompressed size) and `.bzv` (per verse: block,
offset, size). The blocks are read whole and joined in order (a chapter may run across two); footnotes
and headings are dropped (psalm superscriptions, part of the text, are kept), the markup removed and
a paragraph break kept at each paragraph marker. A chapter is one document (`web/Matt.1`); text
outside chapters (book introductions, the glossary) is left out, and so is a chapter whose 13-word
sequences are mostly in the chapters before it (the Greek Daniel's first twelve repeat Daniel's), so
no text sits on both sides of the held-out split twice.
"""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

from workbench.base.errors import WorkbenchError
from workbench.data.corpus import Document
from workbench.data.overlap import drop_near_duplicates
from workbench.data.sources.archives import Archive, PinnedSource, deb_files

MODULE = "usr/share/sword/modules/texts/ztext/engWEB2015eb/"
# footnotes and headings; a psalm's superscription (a title marked canonical) is text and stays
_DROP = re.compile(r'<note\b.*?</note>|<title\b(?![^>]*canonical="true").*?</title>', re.S)
_CHAPTER = re.compile(r'<chapter\b[^>]*\bsID="([^"]+)"[^>]*/>')
_CHAPTER_END = re.compile(r'<chapter\b[^>]*\beID=')
_PARAGRAPH = re.compile(r'<div\b[^>]*\btype="x-p"[^>]*/>|<lb\b[^>]*/>|<l\b[^>]*/>|</?lg\b[^>]*>')
_TAG = re.compile(r"<[^>]*>")


def blocks(bzs: bytes, bzz: bytes) -> list[str]:
    """The decompressed blocks of one testament, in order."""
    if len(bzs) % 12:
        raise WorkbenchError(f"a zText .bzs index is 12 bytes per block; this one has {len(bzs)} bytes")
    out = []
    for i in range(0, len(bzs), 12):
        offset, size, usize = struct.unpack("<III", bzs[i:i + 12])
        if size == 0:
            continue
        raw = zlib.decompress(bzz[offset:offset + size])
        if len(raw) != usize:
            raise WorkbenchError(f"zText block {i // 12} is {len(raw)} bytes, its index says {usize}")
        out.append(raw.decode("utf-8"))
    return out


def plain(osis: str) -> str:
    """OSIS markup as plain text: notes and headings out, paragraph markers as line breaks."""
    text = _TAG.sub("", _PARAGRAPH.sub("\n", _DROP.sub(" ", osis)))
    lines = (" ".join(line.split()) for line in text.split("\n"))
    return "\n".join(line for line in lines if line)


def chapters(osis: str) -> list[Document]:
    """One document per chapter of a testament's text: the text between a chapter's start and end markers
    (what lies outside chapters is headings, introductions and the glossary)."""
    parts = _CHAPTER.split(osis)  # [before, id1, text1, id2, text2, ...]
    return [Document(f"web/{cid}", text) for cid, osis in zip(parts[1::2], parts[2::2])
            if (text := plain(_CHAPTER_END.split(osis, 1)[0]))]


def parse(archive: Path) -> list[Document]:
    files = deb_files(archive, MODULE)
    docs = []
    for testament in ("ot", "nt"):
        bzs, bzz = files.get(f"{MODULE}{testament}.bzs"), files.get(f"{MODULE}{testament}.bzz")
        if bzs is None or bzz is None:
            raise WorkbenchError(f"{archive} lacks {MODULE}{testament}.bzs/.bzz: not the sword-text-web package")
        docs += chapters("".join(blocks(bzs, bzz)))  # a chapter may run across blocks
    return drop_near_duplicates(docs)  # the Greek Daniel's chapters 1-12 repeat Daniel's: left out


SOURCE = PinnedSource(
    name="web",
    archive=Archive(package="sword-text-web 426.0-1 (Debian bookworm)",
                    url="http://deb.debian.org/debian/pool/main/s/sword-text-web/sword-text-web_426.0-1_all.deb",
                    file="sword-text-web_426.0-1_all.deb", size="4.0 MB",
                    sha256="930b23670b352f0829a306501de4bebb5e654a2df02cde2cbe86b802177868e1"),
    parse=parse, parser_version=2,
    licence="public domain (\"World English Bible\" is a trademark of eBible.org: changed text must not use the name)",
)
