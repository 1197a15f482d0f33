"""Barcode hygiene (FASTA, case, U→T, gaps, IUPAC codes, orientation, quality flags) and DNA tokenisers.

Everything that reads a barcode from a user or a file goes through :func:`check_barcodes` or
:func:`clean_sequence`, so every entry point rejects and flags the same things with the same words.
This module imports neither torch nor a model: readers and datasets use it freely.
"""

from __future__ import annotations

import itertools
import operator
import re
from dataclasses import dataclass, field

import numpy as np

from clibd_core.textio import normalise_newlines

NUCLEOTIDES = frozenset("ACGT")
AMBIGUITY_CODES = frozenset("RYSWKMBDHVN")
NUCLEOTIDE_ALPHABET = NUCLEOTIDES | AMBIGUITY_CODES
_IGNORED = re.compile(r"[\s\d\-.*]")  # whitespace, GenBank position digits, alignment gaps, terminal '*'

MIN_LENGTH = 100  # below this a barcode cannot place a specimen: rejected
MAX_LENGTH = 10_000  # a COI barcode is ~658 bp; a 10 kb "barcode" is a genome fragment or a paste error
BARCODE_LENGTH = 500  # BOLD's barcode-compliance threshold: shorter sequences are flagged
MAX_AMBIGUOUS_PERCENT = 1.0  # BOLD flags barcodes with more than 1 % ambiguous bases

# Stop codons of the invertebrate mitochondrial code (NCBI translation table 5): TGA is Trp and
# AGA/AGG are Ser there, so only TAA and TAG end a reading frame.
STOP_CODONS_TABLE_5 = frozenset({"TAA", "TAG"})
_STOP_CODON = re.compile(f"(?=({'|'.join(sorted(STOP_CODONS_TABLE_5))}))")  # every position a stop starts at

# Primers and adapters that are commonly left on submitted COI reads (5'→3' as ordered).
FORWARD_PRIMERS = {
    "LCO1490": "GGTCAACAAATCATAAAGATATTGG",
    "LepF1": "ATTCAACCAATCATAAAGATATTGG",
}
REVERSE_PRIMERS = {
    "HCO2198": "TAAACTTCAGGGTGACCAAAAAATCA",
    "LepR1": "TAAACTTCTGGATGTCCAAAAAATCA",
}
ILLUMINA_ADAPTER = "AGATCGGAAGAGC"
_PRIMER_MISMATCHES = 3
_PRIMER_SLACK = 12  # a primer may sit a few bases inside the read (e.g. after a tag)

_COMPLEMENT = str.maketrans("ACGTRYSWKMBDHVN", "TGCAYRSWMKVHDBN")
_AMBIGUITY_TO_N = str.maketrans({code: "N" for code in AMBIGUITY_CODES})


class BarcodeError(ValueError):
    """A barcode that cannot be used, with a message that names the record and says why."""


@dataclass
class BarcodeReport:
    """What hygiene found in one submitted sequence; ``error`` set means the record was rejected."""

    id: str
    sequence: str = ""  # cleaned, upper case, oriented as COI's coding strand
    length: int = 0
    ambiguous_percent: float = 0.0
    reverse_complemented: bool = False
    orientation: str = ""  # how the orientation was decided, in words
    frame: int | None = None  # 0-based offset of the best COI reading frame
    stop_codons: int = 0  # stop codons (table 5) in that frame
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def reverse_complement(sequence: str) -> str:
    """Reverse complement, IUPAC codes included (R↔Y, K↔M, B↔V, D↔H; S, W, N unchanged)."""
    return sequence.translate(_COMPLEMENT)[::-1]


def to_acgtn(sequence: str) -> str:
    """A cleaned sequence with every IUPAC ambiguity code replaced by N: what the tokenisers read."""
    return sequence.upper().translate(_AMBIGUITY_TO_N)


def parse_fasta(text: str) -> list[tuple[str, str]]:
    """``(header, body)`` of every FASTA record, header without ``>``; text before the first ``>`` is an error."""
    text = normalise_newlines(text).lstrip("\ufeff").strip()
    if not text.startswith(">"):
        raise BarcodeError("text before the first FASTA header '>': FASTA starts with a '>' line")
    records = []
    for chunk in text[1:].split("\n>"):
        header, _, body = chunk.partition("\n")
        records.append((header.strip(), body))
    return records


def fasta_id(header: str, number: int) -> str:
    """A record's id: the header's first word, cut at the first ``|`` (BOLD: ``processid|species|...``)."""
    words = "".join(c for c in header if c.isprintable() or c.isspace()).split()
    return (words[0].split("|")[0] if words else "") or f"record_{number}"


def parse_sequences(text: str, default_id: str = "query") -> list[tuple[str, str]]:
    """Split pasted text into ``(id, raw sequence)`` records.

    Text that does not start with ``>`` is one raw sequence (line breaks allowed inside it); otherwise
    it is FASTA, with ids from :func:`fasta_id`.
    """
    stripped = normalise_newlines(text).lstrip("\ufeff").strip()
    if not stripped:
        return []
    if not stripped.startswith(">") and "\n>" not in stripped:
        return [(default_id, stripped)]
    return [(fasta_id(header, number), body) for number, (header, body) in enumerate(parse_fasta(stripped), start=1)]


def clean_sequence(raw: str, record_id: str = "query") -> str:
    """Upper-case, U→T, drop whitespace/digits/gaps; reject non-nucleotide text and empty or absurd lengths."""
    sequence = _IGNORED.sub("", raw).upper().replace("U", "T")
    if not sequence:
        raise BarcodeError(f"record '{record_id}': empty sequence")
    foreign = sorted(set(sequence) - NUCLEOTIDE_ALPHABET)
    if foreign:
        shown = ", ".join(f"'{letter}'" for letter in foreign[:8])
        raise BarcodeError(
            f"record '{record_id}': {shown} are not nucleotide codes — is this a protein sequence or other text?"
        )
    acgt = sum(sequence.count(base) for base in NUCLEOTIDES)
    if acgt < len(sequence) / 2:
        raise BarcodeError(
            f"record '{record_id}': only {100 * acgt / len(sequence):.0f} % of the letters are A, C, G or T — "
            "this does not look like a DNA sequence"
        )
    if len(sequence) < MIN_LENGTH:
        raise BarcodeError(
            f"record '{record_id}': {len(sequence)} bp after cleaning, too short to identify (minimum {MIN_LENGTH} bp)"
        )
    if len(sequence) > MAX_LENGTH:
        raise BarcodeError(
            f"record '{record_id}': {len(sequence):,} bp is far longer than a COI barcode (maximum {MAX_LENGTH:,} bp)"
        )
    return sequence


def best_reading_frame(sequence: str) -> tuple[int, int]:
    """``(frame, stop codons)`` of the frame with the fewest table-5 stops; codons with ambiguity skipped."""
    counts = [0, 0, 0]
    for stop in _STOP_CODON.finditer(sequence):
        counts[stop.start() % 3] += 1
    frame = min(range(3), key=counts.__getitem__)
    return frame, counts[frame]


def orient(sequence: str) -> tuple[str, bool, str]:
    """Put a barcode on COI's coding strand: ``(sequence, reverse_complemented, how it was decided)``.

    The coding strand of a real COI barcode has a reading frame free of table-5 stop codons, while its
    reverse complement is full of TAA/TAG in every frame (TTA, insect COI's commonest leucine codon,
    reads TAA backwards). When both strands tie (short or very ambiguous reads), insect COI's strong
    T-over-A excess on the coding strand decides. Accuracy on real BOLD barcodes: docs/DNA.md.
    """
    reverse = reverse_complement(sequence)
    _, forward_stops = best_reading_frame(sequence)
    _, reverse_stops = best_reading_frame(reverse)
    if forward_stops != reverse_stops:
        flip = reverse_stops < forward_stops
        how = (
            f"reading frame: best frame has {min(forward_stops, reverse_stops)} stop codon(s) on the "
            f"{'reverse' if flip else 'given'} strand, {max(forward_stops, reverse_stops)} on the other"
        )
    else:
        t_count, a_count = sequence.count("T"), sequence.count("A")
        flip = a_count > t_count
        how = f"base composition: both strands' frames tie, so COI's T excess decides (T={t_count}, A={a_count})"
    return (reverse if flip else sequence), flip, how


def _approximate_find(window: str, pattern: str, max_mismatches: int) -> int:
    """First offset where ``pattern`` matches ``window`` with at most ``max_mismatches`` substitutions, or -1.

    A match with m substitutions holds one of the pattern's m + 1 disjoint pieces exactly (pigeonhole),
    so only the offsets where a piece is found are compared: most reads hold no primer at all."""
    size, last = len(pattern) // (max_mismatches + 1), len(window) - len(pattern)
    offsets = set()
    for piece_start in range(0, size * (max_mismatches + 1), size):
        piece = pattern[piece_start : piece_start + size]
        found = window.find(piece)
        while found >= 0:
            if 0 <= found - piece_start <= last:
                offsets.add(found - piece_start)
            found = window.find(piece, found + 1)
    for offset in sorted(offsets):
        if sum(map(operator.ne, window[offset : offset + len(pattern)], pattern)) <= max_mismatches:
            return offset
    return -1


def primer_tails(sequence: str) -> list[str]:
    """Names of primers or adapters found at the ends of a coding-strand-oriented barcode."""
    found = []
    for name, primer in FORWARD_PRIMERS.items():
        if _approximate_find(sequence[: len(primer) + _PRIMER_SLACK], primer, _PRIMER_MISMATCHES) >= 0:
            found.append(f"{name} at the 5' end")
            break  # LCO1490 and LepF1 share their 3' half: name one
    for name, primer in REVERSE_PRIMERS.items():
        tail = reverse_complement(primer)
        if _approximate_find(sequence[-(len(tail) + _PRIMER_SLACK) :], tail, _PRIMER_MISMATCHES) >= 0:
            found.append(f"{name} at the 3' end")
            break
    for end, window in (("5'", sequence[:40]), ("3'", sequence[-40:])):
        for motif in (ILLUMINA_ADAPTER, reverse_complement(ILLUMINA_ADAPTER)):
            if _approximate_find(window, motif, 1) >= 0:
                found.append(f"Illumina adapter at the {end} end")
                break
    return found


def inspect_barcode(record_id: str, raw: str) -> BarcodeReport:
    """Clean, orient and quality-flag one sequence; a rejected sequence comes back with ``error`` set."""
    report = BarcodeReport(id=record_id)
    try:
        sequence = clean_sequence(raw, record_id)
    except BarcodeError as error:
        report.error = str(error)
        return report
    sequence, report.reverse_complemented, report.orientation = orient(sequence)
    report.sequence, report.length = sequence, len(sequence)
    ambiguous = len(sequence) - sum(sequence.count(base) for base in NUCLEOTIDES)
    report.ambiguous_percent = 100.0 * ambiguous / len(sequence)
    report.frame, report.stop_codons = best_reading_frame(sequence)
    if report.length < BARCODE_LENGTH:
        report.warnings.append(f"shorter than a full barcode: {report.length} bp (< {BARCODE_LENGTH} bp)")
    if report.ambiguous_percent > MAX_AMBIGUOUS_PERCENT:
        report.warnings.append(
            f"{report.ambiguous_percent:.1f} % ambiguous bases (more than {MAX_AMBIGUOUS_PERCENT:g} %)"
        )
    if report.stop_codons:
        report.warnings.append(
            f"{report.stop_codons} stop codon(s) in the COI reading frame (invertebrate mitochondrial code): "
            "possible pseudogene (NUMT) or sequencing error"
        )
    for tail in primer_tails(sequence):
        report.warnings.append(f"primer/adapter tail: {tail}")
    return report


def check_barcodes(text: str, default_id: str = "query") -> list[BarcodeReport]:
    """Every record of pasted raw or FASTA text, each cleaned and flagged or rejected on its own.

    One bad record never hides the others: its report carries the error, the rest go on.
    """
    try:
        records = parse_sequences(text, default_id)
    except BarcodeError as error:
        return [BarcodeReport(id=default_id, error=str(error))]
    reports, first_seen = [], {}
    for number, (record_id, raw) in enumerate(records, start=1):
        if record_id in first_seen:
            reports.append(
                BarcodeReport(
                    id=record_id,
                    error=f"record '{record_id}' (#{number}): duplicate FASTA id, "
                    f"first used by record #{first_seen[record_id]}",
                )
            )
            continue
        first_seen[record_id] = number
        reports.append(inspect_barcode(record_id, raw))
    return reports


class BarcodeBertTokenizer:
    """The BarcodeBERT 5-mer tokeniser exactly as CLIBD uses it (CLIBD_SPEC.md, DNA tower).

    Cut or right-pad with ``N`` to 660 nt, split into 132 non-overlapping 5-mers, map ``<MASK>``=0,
    ``<CLS>``=1, ``<UNK>``=2 then the 1024 ACGT 5-mers in lexicographic order to 3..1026 (any 5-mer
    holding another letter is ``<UNK>``), and prepend id 0: 133 ids, no attention mask. It reads the
    string as given (the official pipeline does not upper-case); the models clean user input first.
    """

    k = 5
    max_len = 660
    specials = ("<MASK>", "<CLS>", "<UNK>")
    unk_id = 2

    def __init__(self) -> None:
        kmers = ("".join(letters) for letters in itertools.product("ACGT", repeat=self.k))
        self.vocab = {token: index for index, token in enumerate(itertools.chain(self.specials, kmers))}

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    def sequence_length(self) -> int:
        return self.max_len // self.k + 1

    def encode(self, sequence: str) -> list[int]:
        padded = sequence[: self.max_len].ljust(self.max_len, "N")
        kmers = (padded[i : i + self.k] for i in range(0, self.max_len - self.k + 1, self.k))
        return [0, *(self.vocab.get(kmer, self.unk_id) for kmer in kmers)]

    def encode_batch(self, sequences: list[str]) -> np.ndarray:
        return np.array([self.encode(sequence) for sequence in sequences], dtype=np.int64).reshape(
            len(sequences), self.sequence_length
        )

    def facts(self) -> dict:
        return {
            "kind": "barcodebert_kmer",
            "k": self.k,
            "stride": self.k,
            "max_len": self.max_len,
            "pad": "N",
            "specials": list(self.specials),
            "vocab": "specials then itertools.product('ACGT', repeat=5) in order",
            "leading_id": 0,
            "vocab_size": self.vocab_size,
            "sequence_length": self.sequence_length,
        }


class NucleotideTokenizer:
    """The ``lite`` DNA tower's tokeniser: one id per base (PAD=0, A, C, G, T, N=5) plus a length.

    Per-base ids let the tower's convolutional stem see every offset of every k-mer, so a read that
    starts one base later still looks the same; non-overlapping 5-mers change completely with such a
    shift, which a small model trained here from scratch cannot afford (docs/MODELS.md).
    """

    pad_id = 0
    alphabet = "ACGTN"

    def __init__(self, max_len: int = 660) -> None:
        self.max_len = max_len
        table = np.full(256, self.alphabet.index("N") + 1, dtype=np.int64)
        for index, base in enumerate(self.alphabet, start=1):
            table[ord(base)] = table[ord(base.lower())] = index
        self._table = table

    @property
    def vocab_size(self) -> int:
        return len(self.alphabet) + 1

    def encode_batch(self, sequences: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(ids (n, max_len), lengths (n,))``; sequences longer than ``max_len`` are cut."""
        ids = np.zeros((len(sequences), self.max_len), dtype=np.int64)
        lengths = np.zeros(len(sequences), dtype=np.int64)
        for row, sequence in enumerate(sequences):
            codes = np.frombuffer(sequence[: self.max_len].encode("ascii", "replace"), dtype=np.uint8)
            ids[row, : len(codes)] = self._table[codes]
            lengths[row] = len(codes)
        return ids, lengths

    def facts(self) -> dict:
        return {
            "kind": "nucleotide",
            "max_len": self.max_len,
            "ids": {"PAD": 0, **{b: i + 1 for i, b in enumerate(self.alphabet)}},
        }
