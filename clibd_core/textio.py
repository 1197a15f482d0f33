"""Text from users' files, whatever wrote it: gzip or not, UTF-8 (with or without BOM), UTF-16/32 (what
Windows Notepad saves as "Unicode"), Windows-1252 / Latin-1 (BOLD mixes them within one file), any line
ending, and never a control character in what reaches an output file.
"""

from __future__ import annotations

import codecs
import gzip
import re
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

MAX_TEXT_BYTES = 8 << 30  # a gzip expanding beyond this is refused (BIOSCAN-5M's metadata is ~2 GB)
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


class TextError(ValueError):
    """A file that cannot be read as text (a gzip bomb, a damaged gzip)."""


def read_bytes(path: str | Path) -> bytes:
    """A file's bytes, gunzipped when it is gzip (by content, whatever its name), as UTF-8 where it was
    UTF-16/32, so line-by-line readers can split on ``\\n``."""
    data = Path(path).read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = _gunzip(data, Path(path).name)
    return as_utf8(data)


def read_head(path: str | Path, size: int = 65536) -> bytes:
    """The first ``size`` bytes of a file's text (gunzipped, as UTF-8), without reading the rest."""
    with _open_inflated(path) as handle:
        return as_utf8(handle.read(size))


@contextmanager
def _open_inflated(path: str | Path) -> Iterator[BinaryIO]:
    """A file opened for reading its bytes, inflated as they are read when it is gzip (by content,
    whatever its name); a damaged gzip, found while reading, is a TextError."""
    with open(path, "rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    try:
        with gzip.open(path, "rb") if gzipped else open(path, "rb") as handle:
            yield handle
    except (gzip.BadGzipFile, EOFError, zlib.error) as error:
        raise TextError(f"{Path(path).name}: a damaged gzip file ({error})") from error


def _gunzip(data: bytes, name: str) -> bytes:
    declared = int.from_bytes(data[-4:], "little")  # the size gzip records (modulo 4 GiB)
    if declared > MAX_TEXT_BYTES:
        raise TextError(f"{name}: declares {declared:,} bytes uncompressed, more than this app reads")
    inflater = zlib.decompressobj(wbits=31)
    chunks, total = [], 0
    try:
        for start in range(0, len(data), 1 << 20):
            chunk = inflater.decompress(data[start : start + (1 << 20)], MAX_TEXT_BYTES + 1 - total)
            while chunk:
                chunks.append(chunk)
                total += len(chunk)
                if total > MAX_TEXT_BYTES:
                    raise TextError(f"{name}: expands beyond {MAX_TEXT_BYTES >> 30} GiB, more than this app reads")
                chunk = inflater.decompress(inflater.unconsumed_tail, MAX_TEXT_BYTES + 1 - total)
    except zlib.error as error:
        raise TextError(f"{name}: a damaged gzip file ({error})") from error
    return b"".join(chunks)


def as_utf8(data: bytes) -> bytes:
    """UTF-16/32 text (by its BOM, or UTF-16 without one: NUL in every other byte) re-encoded as UTF-8;
    a UTF-8 BOM dropped; anything else unchanged."""
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace").encode("utf-8")
    if data.startswith(codecs.BOM_UTF8):
        return data[len(codecs.BOM_UTF8) :]
    sample = data[:4096]
    if len(sample) >= 8 and sample[1::2].count(0) > 0.9 * len(sample[1::2]):
        return data.decode("utf-16-le", errors="replace").encode("utf-8")
    if len(sample) >= 8 and sample[0::2].count(0) > 0.9 * len(sample[0::2]):
        return data.decode("utf-16-be", errors="replace").encode("utf-8")
    return data


def decode_line(raw: bytes) -> str:
    """UTF-8 where valid, else Windows-1252 (BOLD's other encoding), else Latin-1 (never fails); control
    characters other than tab and line ends removed."""
    for encoding in ("utf-8", "cp1252"):
        try:
            return _CONTROL.sub("", raw.decode(encoding))
        except UnicodeDecodeError:
            continue
    return _CONTROL.sub("", raw.decode("latin-1"))


def iter_lines(path: str | Path) -> Iterator[str]:
    """A text file's lines, each decoded as :func:`decode_line` does and ending in ``\\n`` (see
    :func:`iter_byte_lines`)."""
    for raw in iter_byte_lines(path):
        line = decode_line(raw)
        yield line[:-2] + "\n" if line.endswith("\r\n") else line


def iter_byte_lines(path: str | Path) -> Iterator[bytes]:
    """A text file's lines as UTF-8 bytes (BOM dropped), read as they are needed: a table of millions of
    rows is never held whole. Gzip is inflated as it is read (and refused beyond ``MAX_TEXT_BYTES``);
    UTF-16/32 files (Notepad's "Unicode", small by nature) are read whole."""
    path = Path(path)
    with _open_inflated(path) as handle:
        head = handle.peek(4096)[:4096]
        if as_utf8(head) != head and not head.startswith(codecs.BOM_UTF8):
            lines = read_bytes(path).splitlines(keepends=True)  # wide text, re-encoded as UTF-8
        else:
            lines = handle
        total = 0
        for number, raw in enumerate(lines):
            total += len(raw)
            if total > MAX_TEXT_BYTES:
                raise TextError(f"{path.name}: longer than {MAX_TEXT_BYTES >> 30} GiB, more than this app reads")
            yield raw[3:] if number == 0 and raw.startswith(codecs.BOM_UTF8) else raw


def read_text(path: str | Path) -> str:
    """A whole text file (FASTA, raw sequences) with ``\\n`` line ends, in any of the encodings above."""
    return normalise_newlines(decode_line(read_bytes(path)))


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def parse_float(text: str) -> float | None:
    """A number from a table cell, or None for an empty or unreadable one (real exports have both)."""
    try:
        return float(text)
    except ValueError:
        return None
