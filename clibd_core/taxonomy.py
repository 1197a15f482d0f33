"""Taxonomic ranks and the one spelling of a missing rank used everywhere in the project."""

from __future__ import annotations

from collections.abc import Mapping

RANKS: tuple[str, ...] = ("order", "family", "genus", "species")
MISSING = "not_classified"


def taxonomy_text(taxonomy: Mapping[str, str | None]) -> str:
    """The CLIBD text-tower input: ``"{order} {family} {genus} {species}"``, missing ranks as ``not_classified``."""
    return " ".join((taxonomy.get(rank) or MISSING).strip() or MISSING for rank in RANKS)
