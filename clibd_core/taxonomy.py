"""Taxonomic ranks, the one spelling of a missing rank, and how source spellings are normalised.

Every reader passes each rank through :func:`normalise_rank`, so whatever a source wrote for "unknown"
(empty, NaN, ``None``, ``not_classified``, ``sp.``) becomes :data:`MISSING`, and nothing downstream
ever needs to know the source's habits. docs/DATA.md lists the rules with examples.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields

RANKS: tuple[str, ...] = ("order", "family", "genus", "species")
ALL_RANKS: tuple[str, ...] = ("order", "family", "subfamily", "genus", "species")
MISSING = "not_classified"

_MISSING_SPELLINGS = {
    "",
    "not_classified",
    "not classified",
    "none",
    "nan",
    "na",
    "n/a",
    "null",
    "unknown",
    "unidentified",
    "undetermined",
    "no_data",
    "-",
    "?",
}
# "Apanteles sp.", "Apanteles spp.", "Apanteles sp" name no species: missing. "Apanteles sp. Rodriguez01"
# (an interim name with a code, BOLD's practice for distinct undescribed species) is kept as a species.
_BARE_SP = re.compile(r"^\S+\s+spp?\.?$", re.IGNORECASE)


def normalise_rank(value: object, rank: str = "") -> str:
    """One clean spelling for one rank's value: whitespace collapsed, unknowns → :data:`MISSING`."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    text = " ".join(str(value).replace("_", " ").split()) if rank != "bin" else str(value).strip()
    if text.lower() in _MISSING_SPELLINGS or text.lower().replace(" ", "_") in _MISSING_SPELLINGS:
        return MISSING
    if rank == "species" and _BARE_SP.match(text):
        return MISSING
    return text


@dataclass(frozen=True)
class Taxonomy:
    """A specimen's lineage; every rank is a name or :data:`MISSING`."""

    order: str = MISSING
    family: str = MISSING
    subfamily: str = MISSING
    genus: str = MISSING
    species: str = MISSING
    bin: str = MISSING  # BOLD's Barcode Index Number (e.g. BOLD:AAO0357), where known

    @classmethod
    def from_values(cls, **values: object) -> Taxonomy:
        """Build from raw source values, normalising each rank."""
        return cls(**{f.name: normalise_rank(values.get(f.name), f.name) for f in fields(cls)})

    def get(self, rank: str) -> str:
        return getattr(self, rank)

    def deepest_rank(self) -> str | None:
        """The deepest of order/family/genus/species that is known."""
        known = [rank for rank in RANKS if self.get(rank) != MISSING]
        return known[-1] if known else None


def taxonomy_text(taxonomy: Taxonomy) -> str:
    """The CLIBD text-tower input: ``"{order} {family} {genus} {species}"``, missing ranks as ``not_classified``."""
    return " ".join(taxonomy.get(rank) for rank in RANKS)
