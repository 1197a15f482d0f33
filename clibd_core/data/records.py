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
        ranks = {
            name: {r.taxonomy.get(rank) for r in self.records} - {MISSING}
            for name, rank in (("species", "species"), ("genera", "genus"), ("families", "family"), ("orders", "order"))
        }
        return {
            "format": self.format,
            "source": self.source,
            "records": len(self.records),
            **{name: len(values) for name, values in ranks.items()},
            "with_barcode": sum(r.barcode is not None for r in self.records),
            "with_image": sum(r.has_image for r in self.records),
            "splits": dict(sorted(Counter(r.split for r in self.records if r.split).items())),
            "skipped": [{"row": s.row, "reason": s.reason} for s in self.skipped],
        }


def record_texts(records: Sequence[Record]) -> list[str]:
    """Each record's taxonomy text, as the text tower reads it."""
    return [taxonomy_text(r.taxonomy) for r in records]
