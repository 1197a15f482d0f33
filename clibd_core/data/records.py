"""The one Record type every reader yields, and the result of reading a source."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from clibd_core.data.transforms import open_image
from clibd_core.taxonomy import MISSING, Taxonomy, taxonomy_text


@dataclass(frozen=True)
class HDF5ImageRef:
    """An image stored as JPEG bytes in a CLIBD HDF5 file: read only when asked for."""

    path: str
    group: str
    index: int

    def read_bytes(self) -> bytes:
        import h5py

        with h5py.File(self.path, "r") as handle:
            group = handle[self.group]
            length = int(group["image_mask"][self.index])
            return bytes(group["image"][self.index, :length])


@dataclass
class Record:
    """One specimen: identity, lineage, barcode, image, split, place and where it came from.

    ``image`` is a reference (a file path, JPEG bytes, an array or an :class:`HDF5ImageRef`), loaded by
    :meth:`load_image` only when needed, so millions of records fit in memory.
    """

    id: str
    taxonomy: Taxonomy
    barcode: str | None = None  # cleaned: upper case, gaps removed, IUPAC codes kept
    barcode_raw: str | None = None  # as the source wrote it (the official CLIBD pipeline tokenises this)
    image: Any = None
    split: str | None = None
    country: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    source: str = ""

    @property
    def has_image(self) -> bool:
        return self.image is not None

    def load_image(self) -> Image.Image:
        image = self.image.read_bytes() if isinstance(self.image, HDF5ImageRef) else self.image
        return open_image(image, name=f"{self.id} ({self.source})")


@dataclass(frozen=True)
class Skipped:
    """A row a reader could not use, and why (shown by ``clibd inspect``)."""

    row: str
    reason: str


@dataclass
class ReadResult:
    """What a reader made of a source: its format, the good records, and every skipped row."""

    format: str
    source: str
    records: list[Record] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)

    @classmethod
    def collect(cls, format: str, source: str | Path, items: Iterable[Record | Skipped]) -> ReadResult:
        """A reader's stream of Records and Skipped rows, gathered."""
        result = cls(format=format, source=str(source))
        for item in items:
            (result.records if isinstance(item, Record) else result.skipped).append(item)
        return result

    def summary(self) -> dict:
        """The counts ``clibd inspect`` prints (and ``--json`` emits)."""
        return {"format": self.format, "source": self.source, **summarise(self.records, self.skipped)}


SUMMARY_RANKS = (("species", "species"), ("genera", "genus"), ("families", "family"), ("orders", "order"))


def summarise(records: Iterable[Record], skipped: Sequence[Skipped]) -> dict:
    """Counts of records (read once: a stream of millions is fine), names per rank, barcodes, images,
    splits; then the skipped rows (looked at after the records: a stream lists them as it goes)."""
    names: dict[str, set[str]] = {name: set() for name, _ in SUMMARY_RANKS}
    counts = Counter()
    splits = Counter()
    for record in records:
        counts["records"] += 1
        counts["with_barcode"] += record.barcode is not None
        counts["with_image"] += record.has_image
        for name, rank in SUMMARY_RANKS:
            names[name].add(record.taxonomy.get(rank))
        if record.split:
            splits[record.split] += 1
    return {
        "records": counts["records"],
        **{name: len(values - {MISSING}) for name, values in names.items()},
        "with_barcode": counts["with_barcode"],
        "with_image": counts["with_image"],
        "splits": dict(sorted(splits.items())),
        "skipped_count": len(skipped),  # a stream keeps only its first skipped rows: it counts them all
        "skipped": [{"row": s.row, "reason": s.reason} for s in skipped],
    }


def record_texts(records: Sequence[Record]) -> list[str]:
    """Each record's taxonomy text, as the text tower reads it."""
    return [taxonomy_text(r.taxonomy) for r in records]
