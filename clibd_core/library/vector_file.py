"""The float16 vectors a compressed library keeps beside its index, read row by row from disk.

Re-ranking a shortlist needs a couple of hundred scattered rows per query. Reading them with
``pread`` leaves the file in the kernel's page cache, where it is shared and reclaimable, and never in
the searching process: a memory-mapped 7.7 GB file (5M vectors at 768-d) is soon counted whole in
the process's resident memory, because every page fault maps its neighbours too. ``pread`` keeps no
file position, so threads of a served app may read at once.
"""

from __future__ import annotations

import os
import weakref
from pathlib import Path

import numpy as np

BULK_ROWS = 65_536  # rows converted to float32 at a time when every vector is read


def write_vector_file(file: Path, vectors: np.ndarray) -> VectorFile:
    """``vectors`` (any float array, a memory-mapped one too) saved as float16, ``BULK_ROWS`` at a time."""
    out = np.lib.format.open_memmap(file, mode="w+", dtype=np.float16, shape=vectors.shape)
    for start in range(0, len(vectors), BULK_ROWS):
        out[start : start + BULK_ROWS] = vectors[start : start + BULK_ROWS]
    out.flush()
    del out
    return VectorFile(file)


class VectorFile:
    """An ``(n, dim)`` float16 ``.npy`` file whose rows are read on demand."""

    def __init__(self, file: Path):
        self.file = Path(file)
        with open(self.file, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            header = np.lib.format
            read = header.read_array_header_1_0 if version == (1, 0) else header.read_array_header_2_0
            shape, fortran, dtype = read(handle)
            self.offset = handle.tell()
        if fortran or len(shape) != 2 or dtype != np.float16:
            raise ValueError(f"{self.file}: expected a C-ordered 2-d float16 array, found {dtype} {shape}")
        self.shape = shape
        self.row_bytes = shape[1] * 2
        expected = self.offset + shape[0] * self.row_bytes
        if os.path.getsize(self.file) < expected:
            raise ValueError(f"{self.file}: truncated ({os.path.getsize(self.file):,} of {expected:,} bytes)")
        self._fd = os.open(self.file, os.O_RDONLY)
        weakref.finalize(self, os.close, self._fd)  # closed when collected, or at exit

    def __len__(self) -> int:
        return self.shape[0]

    def take(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions`` (in that order) as float32."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= len(self)):
            raise IndexError(f"row out of range 0..{len(self) - 1}")
        buffer = bytearray(len(positions) * self.row_bytes)
        view = memoryview(buffer)
        for i, position in enumerate(positions.tolist()):
            start = i * self.row_bytes
            read = os.preadv(self._fd, [view[start : start + self.row_bytes]], self.offset + position * self.row_bytes)
            if read != self.row_bytes:
                raise OSError(f"{self.file}: short read at row {position}")
        return np.frombuffer(buffer, dtype=np.float16).reshape(len(positions), self.shape[1]).astype(np.float32)

    def all(self) -> np.ndarray:
        """Every row as float32 (for calibration, maps and rebuilding an index: not for searching)."""
        mapped = np.load(self.file, mmap_mode="r")
        out = np.empty(self.shape, dtype=np.float32)
        for start in range(0, len(self), BULK_ROWS):
            out[start : start + BULK_ROWS] = mapped[start : start + BULK_ROWS]
        return out
