"""Percent identity of two barcodes by pairwise alignment, as BOLD reports it.

The aligner is edlib (Myers' bit-vector algorithm, MIT, C++ with Python wheels): an exact
edit-distance alignment of two 658 bp barcodes takes ~0.2 ms, fifty times faster than a traced
Smith-Waterman/Gotoh alignment in Biopython (~10 ms), so the top candidates of every query can be
aligned inside the query's time budget. COI is protein coding and almost free of indels, so unit-cost
edit alignment gives the same identity as an affine-gap alignment up to rare ties.

Identity is counted over the overlap: the shorter sequence is aligned in full ("infix" mode, end gaps
in the longer one free), and identity = matching columns / aligned columns (gaps included), so a
partial barcode is not penalised for the part it lacks. ``N`` matches any base.
"""

from __future__ import annotations

import re

import edlib

BIN_IDENTITY = 97.8  # % identity: BOLD's BIN threshold (2.2 % divergence)
_EQUALITIES = [("N", base) for base in "ACGT"]
_CIGAR = re.compile(r"(\d+)([=XID])")


def percent_identity(a: str, b: str) -> float:
    """Identity of ``a`` and ``b`` (upper-case ACGTN strings) in percent, over their overlap."""
    if not a or not b:
        return 0.0
    query, target = (a, b) if len(a) <= len(b) else (b, a)
    result = edlib.align(query, target, mode="HW", task="path", additionalEqualities=_EQUALITIES)
    columns = matches = 0
    for count, operation in _CIGAR.findall(result["cigar"] or ""):
        columns += int(count)
        matches += int(count) if operation == "=" else 0
    return 100.0 * matches / columns if columns else 0.0
