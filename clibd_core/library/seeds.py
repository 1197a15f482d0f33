"""A seed index of the library's barcodes: which references share exact 12-base words with a query.

The embedding finds a barcode's relatives well when they are close (same species); for a species the
library lacks, or a short read (a 313-bp Leray fragment, a 130-bp mini-barcode), the right genus is
often not among its nearest vectors (bench/absent_species_folds.py). BLAST's answer is seeds: exact
words shared with the query, then alignment. Here every fourth 12-mer (chosen by a hash, the same for
queries and references) is indexed; the references sharing the most sampled words with a query are
its seed candidates, which are then aligned (library/search.py). 12-mers with an ambiguous base are
skipped. The index is three arrays written beside the library's vectors and memory-mapped on open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WORD = 12
SAMPLE = 4  # one word in SAMPLE is indexed (by hash): a quarter of the memory, seeds still plenty
COMMON = 0.05  # a long read's words found in more than this share of the references are not counted
LONG_READ = 500  # bp: shorter reads are always aligned against their seed candidates too (search.py)
FILES = ("seeds_words.npy", "seeds_starts.npy", "seeds_rows.npy")
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
    def build(cls, barcodes: Sequence[str], rows: np.ndarray, size: int) -> SeedIndex:
        """The index of ``barcodes`` (upper-case ACGTN), which belong to metadata ``rows``."""
        per_barcode = [sampled_words(barcode) for barcode in barcodes]
        words = np.concatenate([np.zeros(0, dtype=np.int64), *per_barcode])
        owners = np.repeat(np.asarray(rows, dtype=np.int32), [len(w) for w in per_barcode])
        order = np.argsort(words, kind="stable")
        words, owners = words[order], owners[order]
        distinct, starts = np.unique(words, return_index=True)
        return cls(distinct, np.r_[starts, len(words)].astype(np.int64), owners, size)

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
