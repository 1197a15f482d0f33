"""The app's barcode check calls the library and shows rejects as rows instead of failing."""

from __future__ import annotations

from app import barcode_table
from clibd_core.dna import reverse_complement
from tests.test_dna import COI


def test_barcode_table_rows():
    rows = barcode_table(f">fwd\n{COI}\n>rev\n{reverse_complement(COI)}\n>bad\nhello")
    assert [row[0] for row in rows] == ["fwd", "rev", "bad"]
    assert rows[0][3] == "as given" and rows[1][3] == "reverse-complemented"
    assert rows[2][3] == "rejected" and "not nucleotide codes" in rows[2][4]
