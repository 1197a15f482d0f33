"""A seed index of the library's barcodes: which references share exact 12-base words with a query.

The embedding finds a barcode's relatives well when they are close (same species); for a species the
library lacks, or a short read (a 313-bp Leray fragment, a 130-bp mini-barcode), the right genus is
often not among its nearest vectors (bench/absent_species_folds.py). BLAST's answer is seeds: exact
words shared with the query, then alignment. Here every fourth 12-mer (chosen by a hash, the same for
queries and references) is indexed; the references sharing the most sampled words with a query are
its seed candidates, which are then aligned (library/evidence.py). 12-mers with an ambiguous base are
skipped. The index is three arrays written beside the library's vectors and memory-mapped on open.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORD = 12
SAMPLE = 4  # one word in SAMPLE is indexed (by hash): a quarter of the memory, seeds still plenty
COMMON = 0.05  # a long read's words found in more than this share of the references are not counted
LONG_READ = 500  # bp: shorter reads are always aligned against their seed candidates too (evidence.py)
FILES = ("seeds_words.npy", "seeds_starts.npy", "seeds_rows.npy")
BLOCK = 50_000  # barcodes whose postings are gathered at a time while building
_CODES = np.full(256, 255, dtype=np.uint8)
for _value, _base in enumerate(b"ACGT"):
    _CODES[_base] = _value
_SHIFTS = 2 * np.arange(WORD - 1, -1, -1, dtype=np.int64)


def sampled_words(sequence: str) -> np.ndarray:
    """The distinct sampled 12-mers of an upper-case ACGTN sequence, as integers (2 bits a base)."""
    codes = _CODES[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)]
    if len(codes) < WORD:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, WORD)
    clean = ~(windows == 255).any(axis=1)
    words = (windows[clean].astype(np.int64) << _SHIFTS).sum(axis=1)
    return np.unique(words[((words * 0x9E3779B1) >> 7) % SAMPLE == 0])


@dataclass
class SeedIndex:
    """Sorted distinct words, where each word's postings start, and the postings (metadata rows)."""

    words: np.ndarray
    starts: np.ndarray
    rows: np.ndarray
    size: int  # metadata rows of the library (counts are kept per row)

    @classmethod
    def build(cls, barcodes: Iterable[tuple[int, str]], size: int, report=lambda rows: None) -> SeedIndex:
        """The index of ``(metadata row, barcode)`` pairs (upper-case ACGTN, rows ascending). Each
        posting is packed with its word into one integer (word << 32 | row) and sorted in place: about
        2.5 × 8 bytes a posting at the peak (1M barcodes: 160M postings, 3.3 GB), where sorting words
        and rows apart with argsort took 8 GB. ``report(row)`` is called as blocks fill (progress)."""
        blocks, block = [], [np.zeros(0, dtype=np.int64)]
        for row, barcode in barcodes:
            block.append((sampled_words(barcode) << 32) | row)
            if len(block) == BLOCK:
                report(row)
                blocks.append(np.concatenate(block))
                block = [np.zeros(0, dtype=np.int64)]
        keys = np.concatenate([*blocks, np.concatenate(block)])
        del blocks, block
        keys.sort()
        words = keys >> 32
        starts = np.flatnonzero(np.r_[True, words[1:] != words[:-1]]) if len(words) else np.zeros(0, np.int64)
        distinct = words[starts]
        del words
        rows = (keys & 0xFFFFFFFF).astype(np.int32)
        return cls(distinct, np.r_[starts, len(keys)].astype(np.int64), rows, size)

    def save(self, folder: Path) -> None:
        for name, array in zip(FILES, (self.words, self.starts, self.rows), strict=True):
            np.save(folder / name, array)

    @classmethod
    def open(cls, folder: Path, size: int) -> SeedIndex | None:
        """The index written in ``folder``, memory-mapped; None for a library without one."""
        if not all((folder / name).exists() for name in FILES):
            return None
        return cls(*(np.load(folder / name, mmap_mode="r") for name in FILES), size)

    def candidates(self, sequence: str, n: int, excluded: np.ndarray | None = None) -> np.ndarray:
        """Metadata rows of the ``n`` references sharing the most sampled words with ``sequence`` (at
        least one), most first; ``excluded``: a boolean mask over rows that may not be returned."""
        query = sampled_words(sequence)
        found = np.searchsorted(self.words, query)
        inside = found < len(self.words)
        found = found[inside][self.words[found[inside]] == query[inside]]
        if len(sequence) >= LONG_READ:
            # Words shared by very many references (conserved stretches of COI) say little about
            # which are closest, and counting them costs most of the time: a long read has enough
            # others (as BLAST masks its most frequent words). A short read keeps them all: it may
            # have few others (the 313-bp Leray fragment's genus: 59 % without them, 74 % with).
            frequent = self.starts[found + 1] - self.starts[found] > COMMON * self.size
            found = found[~frequent] if (~frequent).any() else found
        if not len(found):
            return np.zeros(0, dtype=np.int64)
        postings = np.concatenate([self.rows[self.starts[i] : self.starts[i + 1]] for i in found])
        counts = np.bincount(postings, minlength=self.size)
        if excluded is not None:
            counts[excluded] = 0
        top = np.argpartition(-counts, min(n, self.size - 1))[:n]
        top = top[counts[top] > 0]
        return top[np.argsort(-counts[top], kind="stable")].astype(np.int64)
