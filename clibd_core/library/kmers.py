"""5-mer profiles of barcodes: a second, model-free way to find alignment candidates.

The embedding finds candidates by what the DNA tower learned; a k-mer profile finds them by shared
words, the prefilter blastn and VSEARCH rely on. For DNA towers that do not embed the profile
themselves (``paper``, older lite models), aligning the union of both candidate sets lifts
identification to the aligners' accuracy (docs/LIBRARIES.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

K = 5
DIM = 4**K
_CODES = np.full(256, 4, dtype=np.int64)
for _code, _base in enumerate(b"ACGT"):
    _CODES[_base] = _code
_PLACES = 4 ** np.arange(K - 1, -1, -1)


def kmer_profiles(sequences: Sequence[str]) -> np.ndarray:
    """L2-normalised 5-mer count vectors (n, 1024); k-mers with a non-ACGT base are not counted."""
    profiles = np.zeros((len(sequences), DIM), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        codes = _CODES[np.frombuffer(sequence.upper().encode("ascii", "replace"), dtype=np.uint8)]
        if len(codes) < K:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(codes, K)
        windows = windows[(windows < 4).all(axis=1)]
        profiles[row] = np.bincount(windows @ _PLACES, minlength=DIM)
    return profiles / np.maximum(np.linalg.norm(profiles, axis=1, keepdims=True), 1e-9)
