"""A library's barcodes, kept beside its metadata and read a few rows at a time.

At millions of records the barcodes are most of the metadata (about 660 bytes each: 3.3 GB at 5M),
and a library opens its metadata in memory; identification needs only the barcodes of a query's
candidates. So they live in two files of the version folder::

    barcodes.txt          every record's barcode (as cleaned: upper case, IUPAC codes kept), end to end
    barcodes_offsets.npy  n + 1 int64 offsets: row i is bytes [offsets[i], offsets[i+1]); empty = none

Rows are read with ``pread`` (no shared file position, so a served app's threads may read at once).
Libraries of the first format keep their barcodes in the metadata table: :class:`BarcodeColumn`
answers for them alike.
"""

from __future__ import annotations

import os
import weakref
from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

BARCODES = "barcodes.txt"
OFFSETS = "barcodes_offsets.npy"
FILES = (BARCODES, OFFSETS)
CHUNK_ROWS = 100_000  # rows read at a time by a pass over every barcode


def write_barcodes(folder: Path, barcodes: Iterable[str | None]) -> int:
    """Write every row's barcode (None or "" for none) into ``folder``; returns the number of rows."""
    offsets = array("q", [0])
    with open(folder / BARCODES, "wb") as out:
        for barcode in barcodes:
            data = (barcode or "").encode("ascii")
            out.write(data)
            offsets.append(offsets[-1] + len(data))
    np.save(folder / OFFSETS, np.frombuffer(offsets, dtype=np.int64))
    return len(offsets) - 1


class BarcodeFile:
    """The barcodes of a library version, by metadata row, read from disk when asked for."""

    def __init__(self, folder: Path):
        self.file = Path(folder) / BARCODES
        self.offsets = np.load(Path(folder) / OFFSETS)
        size = os.path.getsize(self.file)
        if size != self.offsets[-1]:
            raise ValueError(f"{self.file}: {size:,} bytes where its offsets say {self.offsets[-1]:,}: damaged")
        self._fd = os.open(self.file, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)  # closed when collected, or at exit

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def take(self, rows: Iterable[int]) -> list[str | None]:
        """The barcodes of ``rows`` (None where a record has none)."""
        barcodes = []
        for row in np.asarray(rows, dtype=np.int64).tolist():
            start, stop = self.offsets[row], self.offsets[row + 1]
            barcodes.append(os.pread(self._fd, int(stop - start), int(start)).decode("ascii") if stop > start else None)
        return barcodes

    def chunks(self) -> Iterator[list[str | None]]:
        """Every barcode in row order, ``CHUNK_ROWS`` at a time (one sequential read each)."""
        for first in range(0, len(self), CHUNK_ROWS):
            last = min(first + CHUNK_ROWS, len(self))
            start = int(self.offsets[first])
            data = os.pread(self._fd, int(self.offsets[last]) - start, start)
            bounds = (self.offsets[first : last + 1] - start).tolist()
            yield [data[a:b].decode("ascii") or None for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


class BarcodeColumn:
    """The barcodes of a first-format library, from its metadata column (held in memory)."""

    def __init__(self, column: np.ndarray):
        self.values = [value if isinstance(value, str) and value else None for value in column]

    def __len__(self) -> int:
        return len(self.values)

    def take(self, rows: Iterable[int]) -> list[str | None]:
        return [self.values[row] for row in np.asarray(rows, dtype=np.int64).tolist()]

    def chunks(self) -> Iterator[list[str | None]]:
        for first in range(0, len(self.values), CHUNK_ROWS):
            yield self.values[first : first + CHUNK_ROWS]
