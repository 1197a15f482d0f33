"""One entry point for every source: the format is detected from content (or named), then read."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from pathlib import Path

from clibd_core.data.bioscan import (
    BIOSCAN_1M_METADATA,
    BIOSCAN_5M_METADATA,
    iter_bioscan_1m,
    iter_bioscan_5m,
    iter_clibd_hdf5,
    read_bioscan_1m,
    read_bioscan_5m,
    read_clibd_hdf5,
)
from clibd_core.data.bold import iter_bold_tsv, read_bold_tsv, read_fasta
from clibd_core.data.folder import find_file_column, is_species_folders, read_image_folder, read_species_folders
from clibd_core.data.records import ReadResult, Record, Skipped
from clibd_core.fileio import file_sha256
from clibd_core.textio import decode_line, read_head

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
READERS = {
    "bold_tsv": read_bold_tsv,
    "fasta": read_fasta,
    "bioscan_1m": read_bioscan_1m,
    "bioscan_5m": read_bioscan_5m,
    "clibd_hdf5": read_clibd_hdf5,
    "image_folder": read_image_folder,
    "species_folders": read_species_folders,
}
# The formats of millions of records, read row by row (the others are small and read whole).
STREAMS = {
    "bold_tsv": iter_bold_tsv,
    "bioscan_1m": iter_bioscan_1m,
    "bioscan_5m": iter_bioscan_5m,
    "clibd_hdf5": iter_clibd_hdf5,
}
SKIPPED_KEPT = 1000  # skipped rows a stream keeps for its report (all are counted)


class UnknownFormatError(ValueError):
    """A source whose format could not be recognised, with what was looked for."""


def _metadata_file(path: Path) -> Path:
    """A dataset folder stands for its metadata file."""
    if not path.is_dir():
        return path
    for name in (BIOSCAN_1M_METADATA, BIOSCAN_5M_METADATA):
        if (path / name).is_file():
            return path / name
    tables = sorted(path.glob("*.csv")) + sorted(path.glob("*.tsv"))
    if len(tables) == 1:
        return tables[0]
    raise UnknownFormatError(
        f"folder '{path}' holds {len(tables)} CSV/TSV files: name the metadata file itself"
        if tables
        else f"folder '{path}' holds no BIOSCAN metadata, CSV or TSV file"
    )


def detect_format(path: str | Path) -> str:
    """``bold_tsv``, ``fasta``, ``bioscan_1m``, ``bioscan_5m``, ``clibd_hdf5``, ``image_folder`` or
    ``species_folders``, from content."""
    if is_species_folders(Path(path)):
        return "species_folders"
    path = _metadata_file(Path(path))
    with open(path, "rb") as handle:
        if handle.read(8) == HDF5_MAGIC:
            return "clibd_hdf5"
    head = decode_line(read_head(path)).lstrip("\ufeff").lstrip()
    if head.startswith(">"):
        return "fasta"
    header_line = head.split("\n", 1)[0].replace("\r", "")
    columns = {c.strip().lower() for c in header_line.replace(",", "\t").replace(";", "\t").split("\t")}
    if {"processid", "nucleotides"} <= columns:
        return "bold_tsv"
    if {"nucraw", "image_file"} <= columns or path.name == BIOSCAN_1M_METADATA:
        return "bioscan_1m"
    if {"dna_barcode", "split"} <= columns or path.name == BIOSCAN_5M_METADATA:
        return "bioscan_5m"
    if find_file_column(list(columns)) or columns & {"barcode", "sequence", "dna"}:
        return "image_folder"
    raise UnknownFormatError(
        f"'{path}' is not a recognised source: expected a BOLD TSV export, FASTA, BIOSCAN-1M/5M metadata, "
        f"a CLIBD HDF5 file, or a CSV naming image files (its first line splits into {len(columns)} columns, none "
        "of them the columns these formats need; --format reads it as a given format)"
    )


def read_source(path: str | Path, fmt: str | None = None) -> ReadResult:
    """Read any supported source into Records; ``fmt`` overrides detection."""
    path, fmt = _checked(path, fmt)
    return READERS[fmt](path if fmt == "species_folders" else _metadata_file(path))


def _checked(path: str | Path, fmt: str | None) -> tuple[Path, str]:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"source '{path}' does not exist")
    fmt = fmt or detect_format(path)
    if fmt not in READERS:
        raise UnknownFormatError(f"unknown format '{fmt}': choose one of {', '.join(READERS)}")
    return path, fmt


class SourceStream:
    """A source's Records one at a time, in bounded memory for the formats of millions (``STREAMS``;
    the others are read whole), counting what it yields and skips as it goes.

    ``on_skipped`` hears of every skipped row; after a complete pass, :meth:`facts` is the source's
    provenance, as :func:`source_facts` gives for a read source.
    """

    def __init__(self, path: str | Path, fmt: str | None = None, on_skipped: Callable[[Skipped], None] | None = None):
        self.path, self.format = _checked(path, fmt)
        self.on_skipped = on_skipped or (lambda item: None)
        self.records = 0
        self.skipped: list[Skipped] = []  # the first SKIPPED_KEPT
        self.skipped_count = 0
        self._read: ReadResult | None = None  # a format read whole

    def __iter__(self) -> Iterator[Record]:
        self.records = self.skipped_count = 0
        self.skipped.clear()
        if self.format in STREAMS:
            items = STREAMS[self.format](_metadata_file(self.path))
        else:
            self._read = read_source(self.path, self.format)
            items = [*self._read.records, *self._read.skipped]
        for item in items:
            if isinstance(item, Record):
                self.records += 1
                yield item
                continue
            self.skipped_count += 1
            if len(self.skipped) < SKIPPED_KEPT:
                self.skipped.append(item)
            self.on_skipped(item)

    def facts(self) -> dict:
        """Provenance for a library (after a complete pass)."""
        if self._read is not None:
            return source_facts(self._read)
        return {
            "path": str(self.path.resolve()),
            "format": self.format,
            "sha256": file_sha256(_metadata_file(self.path)),
            "records": self.records,
            "skipped": self.skipped_count,
        }


def source_facts(result: ReadResult) -> dict:
    """Provenance of a read source for a library: where, what format, the file's hash, the counts."""
    source = Path(result.source)
    if result.format == "species_folders":  # no metadata file: a hash of what the folders hold
        listing = "\n".join(f"{r.source}\t{Path(r.image).stat().st_size}" for r in result.records)
        digest = hashlib.sha256(listing.encode()).hexdigest()
    else:
        digest = file_sha256(_metadata_file(source))
    return {
        "path": str(source.resolve()),
        "format": result.format,
        "sha256": digest,
        "records": len(result.records),
        "skipped": len(result.skipped),
    }
