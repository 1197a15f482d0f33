"""Readers for BOLD "combined" TSV exports and for FASTA files (BOLD-style, SINTAX-style, plain).

Real BOLD exports are messy: UTF-8 and Windows-1252 mixed in one file, a stray carriage return in
every row, blank values written as a single space, non-COI markers, gaps and IUPAC codes in the
sequences. Every row is judged on its own: good rows become Records, the others are listed with the
reason, and no single row stops the read.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from clibd_core.data.records import ReadResult, Record, Skipped
from clibd_core.dna import BarcodeError, clean_sequence, fasta_id, parse_fasta
from clibd_core.taxonomy import Taxonomy
from clibd_core.textio import decode_line, iter_byte_lines, parse_float, read_bytes

BARCODE_MARKER = "COI-5P"
# Insect orders, so a one-word BOLD identification can be placed at the right rank.
INSECT_ORDERS = frozenset(
    "Archaeognatha Blattodea Coleoptera Dermaptera Diptera Embioptera Ephemeroptera Grylloblattodea Hemiptera "
    "Hymenoptera Lepidoptera Mantodea Mantophasmatodea Mecoptera Megaloptera Neuroptera Odonata Orthoptera "
    "Phasmida Phasmatodea Plecoptera Psocodea Psocoptera Raphidioptera Siphonaptera Strepsiptera Thysanoptera "
    "Trichoptera Zoraptera Zygentoma".split()
)
_SINTAX_RANKS = {"o": "order", "f": "family", "g": "genus", "s": "species"}


def _value(text: str | None) -> str:
    return (text or "").replace("\r", "").strip()


def read_bold_tsv(path: str | Path) -> ReadResult:
    """Records of a BOLD combined TSV export (plain or gzip): one per good COI-5P row."""
    return ReadResult.collect("bold_tsv", path, iter_bold_tsv(path))


def iter_bold_tsv(path: str | Path) -> Iterator[Record | Skipped]:
    """A BOLD export's Records and skipped rows, one at a time (an export of millions in bounded memory)."""
    lines = iter_byte_lines(path)
    header = [_value(name) for name in decode_line(next(lines, b"")).split("\t")]
    if "processid" not in header or "nucleotides" not in header:
        yield Skipped("header", "not a BOLD export: no 'processid' and 'nucleotides' columns")
        return
    seen: set[str] = set()
    for line_number, raw in enumerate(lines, start=2):
        if not raw.strip():
            continue
        values = decode_line(raw.rstrip(b"\n")).split("\t")
        row_label = f"line {line_number}"
        if len(values) != len(header):
            yield Skipped(row_label, f"{len(values)} fields where the header has {len(header)}")
            continue
        row = {name: _value(value) for name, value in zip(header, values, strict=True)}
        record_id = row.get("processid") or row.get("sampleid", "")
        row_label = f"{row_label} ({record_id})" if record_id else row_label
        marker = row.get("markercode", "")
        reason = None
        if not record_id:
            reason = "no processid or sampleid"
        elif record_id in seen:
            reason = f"duplicate processid {record_id}"
        elif marker and marker != BARCODE_MARKER:
            reason = f"marker {marker} is not the COI-5P barcode"
        elif not row["nucleotides"]:
            reason = "no sequence"
        if reason is None:
            try:
                barcode = clean_sequence(row["nucleotides"], record_id)
            except BarcodeError as error:
                reason = str(error)
        if reason is not None:
            yield Skipped(row_label, reason)
            continue
        seen.add(record_id)
        yield Record(
            id=record_id,
            taxonomy=Taxonomy.from_values(
                order=row.get("order_name"),
                family=row.get("family_name"),
                subfamily=row.get("subfamily_name"),
                genus=row.get("genus_name"),
                species=row.get("species_name"),
                bin=row.get("bin_uri"),
            ),
            barcode=barcode,
            barcode_raw=row["nucleotides"],
            country=row.get("country") or None,
            latitude=parse_float(row.get("lat", "")),
            longitude=parse_float(row.get("lon", "")),
            source=f"{path}:{line_number}",
        )


def taxonomy_from_name(name: str) -> Taxonomy:
    """Place a BOLD identification (the lowest name given) at its rank: binomial → species (and its
    genus); one word → order if it is an insect order, family for -idae, subfamily for -inae, else genus."""
    words = name.replace("_", " ").split()
    if len(words) >= 2:
        return Taxonomy.from_values(genus=words[0], species=" ".join(words))
    if not words:
        return Taxonomy()
    word = words[0]
    if word in INSECT_ORDERS:
        return Taxonomy.from_values(order=word)
    if word.endswith("idae"):
        return Taxonomy.from_values(family=word)
    if word.endswith("inae"):
        return Taxonomy.from_values(subfamily=word)
    return Taxonomy.from_values(genus=word)


def taxonomy_from_sintax(header: str) -> Taxonomy:
    """``;tax=d:...,o:Diptera,f:Cecidomyiidae,g:Asynapta,s:Asynapta_sp1`` → Taxonomy (other ranks ignored)."""
    match = re.search(r"tax=([^;]*)", header)
    values = {}
    for item in match.group(1).split(",") if match else []:
        code, _, name = item.partition(":")
        if code.strip() in _SINTAX_RANKS:
            values[_SINTAX_RANKS[code.strip()]] = name
    return Taxonomy.from_values(**values)


def fasta_style(header: str) -> str:
    """``sintax`` (``;tax=`` in the header), ``bold`` (``|``-separated fields) or ``plain``."""
    if ";tax=" in header or header.startswith("tax="):
        return "sintax"
    return "bold" if "|" in header else "plain"


def read_fasta(path: str | Path) -> ReadResult:
    """Records of a FASTA file; taxonomy from BOLD-style or SINTAX headers where present."""
    text = decode_line(read_bytes(path))
    try:
        entries = parse_fasta(text)
    except BarcodeError as error:
        return ReadResult(format="fasta", source=str(path), skipped=[Skipped("start", str(error))])
    style = fasta_style(entries[0][0]) if entries else "plain"
    result = ReadResult(format=f"fasta_{style}", source=str(path))
    seen: set[str] = set()
    for number, (header, body) in enumerate(entries, start=1):
        record_id = fasta_id(header.split(";")[0], number)
        row_label = f"record {number} ({record_id})"
        fields = header.split("|")
        if record_id in seen:
            result.skipped.append(Skipped(row_label, f"duplicate FASTA id {record_id}"))
            continue
        if style == "bold" and len(fields) > 2 and fields[2].strip() and fields[2].strip() != BARCODE_MARKER:
            result.skipped.append(Skipped(row_label, f"marker {fields[2].strip()} is not the COI-5P barcode"))
            continue
        try:
            barcode = clean_sequence(body, record_id)
        except BarcodeError as error:
            result.skipped.append(Skipped(row_label, str(error)))
            continue
        if style == "sintax":
            taxonomy = taxonomy_from_sintax(header)
        elif style == "bold" and len(fields) > 1:
            taxonomy = taxonomy_from_name(fields[1].strip())
        else:
            taxonomy = Taxonomy()
        seen.add(record_id)
        result.records.append(
            Record(id=record_id, taxonomy=taxonomy, barcode=barcode, barcode_raw=body, source=f"{path}:{number}")
        )
    return result
