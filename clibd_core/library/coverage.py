"""What a library holds and what it does not: BOLD BINs shared by several species names, and (with a
checklist of the species expected, a lab's CSV or a GBIF/national checklist export) each genus's
coverage. Both stop a species name that the references cannot back: the query matches a species, but
another name shares its BIN, or a relative expected in the region is missing from the library and may
share the barcode (sister species often do: *Eilema lurideola* / *E. complana*).

A library knows the BINs of its own records only. A BIN registry (the BIN and species of every record of
wider BOLD exports, `clibd bins LIBRARY EXPORT…`) adds the names its BINs carry elsewhere: *Erebia
ligea* and *E. euryale* share BOLD:AAA8264, and a library holding only *E. euryale* would otherwise name
every *E. ligea* barcode *E. euryale*."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

from clibd_core.data.bold import iter_bold_tsv
from clibd_core.data.records import Record
from clibd_core.dna import to_acgtn
from clibd_core.fileio import write_json
from clibd_core.library.identity import BIN_IDENTITY
from clibd_core.library.store import Library
from clibd_core.library.suspects import best_identity
from clibd_core.taxonomy import MISSING

CHECKLIST_FILE = "checklist.json"  # beside CURRENT: it holds for every version of the library
BIN_REGISTRY_FILE = "bin_registry.json"  # beside CURRENT, as the checklist
NO_BIN = {MISSING, "", "None", "nan"}
BIN_DOMINANCE = 0.95  # a name with this share of its BIN's records is the BIN's name
MINOR_BIN_SHARE = 0.2  # a BIN holding less of a species' records than this is a minority of it ...
MINOR_BIN_FROM = 5  # ... among at least this many records with a BIN
SAME_STRETCH = 80.0  # % identity: below it two COI reads probably cover different stretches (orders differ ~20 %)
NAME_COLUMNS = ("species", "scientificname", "scientific name", "species name", "canonicalname", "name")
RANK_COLUMNS = ("taxonrank", "rank", "taxon rank")


class ChecklistError(ValueError):
    """A checklist file that cannot be read as one (said in words)."""


def bin_names(library: Library) -> dict[str, Counter]:
    """Each BIN of the library with how many of its records carry each species name (made once per
    opened library); references found mislabelled (library/suspects.py) are not counted. With a BIN
    registry, each name counts as the larger of the library's records and the registry's."""

    def made() -> dict[str, Counter]:
        names: dict[str, Counter] = {}
        if "bin" in library.metadata:
            suspect = library.suspect_mask
            for bin_name, species, stray in zip(library.column("bin"), library.column("species"), suspect, strict=True):
                if bin_name not in NO_BIN and species != MISSING and not stray:
                    names.setdefault(bin_name, Counter())[species] += 1
        for bin_name, counts in (bin_registry_of(library) or {}).items():
            held = names.setdefault(bin_name, Counter())
            for species, count in counts.items():
                held[species] = max(held[species], count)
        return names

    return library.derived("bin names", made)


def bin_rivals(library: Library, bin_name: str, species: str) -> dict[str, int]:
    """The other names in ``species``'s BIN that the barcode cannot rule out: every other name, unless
    ``species`` holds ``BIN_DOMINANCE`` of the BIN's records (the rest are then probably mislabelled, as
    21 *Aedes albopictus* among 2,349 *A. aegypti* records are)."""
    names = bin_names(library).get(bin_name)
    if not names or len(names) < 2:
        return {}
    if names[species] >= BIN_DOMINANCE * sum(names.values()):
        return {}
    return {name: count for name, count in names.most_common() if name != species}


def species_bins(library: Library) -> dict[str, Counter]:
    """Each species of the library with how many of its records lie in each BIN (suspects left out)."""

    def made() -> dict[str, Counter]:
        by_species: dict[str, Counter] = {}
        for bin_name, names in bin_names(library).items():
            for species, count in names.items():
                by_species.setdefault(species, Counter())[bin_name] += count
        return by_species

    return library.derived("species bins", made)


def minor_bin(library: Library, bin_name: str, species: str) -> tuple[int, int] | None:
    """``(records in this BIN, records of the species with a BIN)`` when ``bin_name`` holds under
    ``MINOR_BIN_SHARE`` of ``species``' records while the rest lie in other BINs; None otherwise. Such a
    minority is often a batch of records misidentified as the species (an *Armigeres subalbatus* batch
    inside the *Culex quinquefasciatus* BIN): a query inside it may be of a species the library lacks."""
    bins = species_bins(library).get(species)
    if not bins or bin_name in NO_BIN:
        return None
    total = sum(bins.values())
    if total < MINOR_BIN_FROM or bins[bin_name] >= MINOR_BIN_SHARE * total:
        return None
    return bins[bin_name], total


def outside_its_bins(library: Library, row: int, species: str) -> float | None:
    """For a record without a BIN: its best identity to the records of ``species`` that have one, where that
    is below BOLD's BIN threshold. Such a record lies outside every BIN of its species, as a minority BIN
    would, and like one it may be a misidentified record of a species the library lacks (an "*Amara
    bifrons*" barcode without a BIN lies at 86.4 % from that species' BIN and 100 % from *A. quenseli*).
    None otherwise, when the species has fewer than ``MINOR_BIN_FROM`` records with a BIN, or below
    ``SAME_STRETCH`` (the two do not cover the same stretch of COI: 297 of the default library's 1,667
    records without a BIN lie below 75 % from their species, most of them 1,000-bp reads of another part
    of the gene). Measured once per record and opened library."""
    if "dna" not in library.modalities:
        return None
    measured = library.derived("outside its bins", dict)
    if row not in measured:
        with_bin = library.derived("with a BIN", lambda: ~np.isin(library.column("bin"), list(NO_BIN)))
        members = np.flatnonzero((library.column("species") == species) & with_bin & ~library.suspect_mask)
        pool = library.positions("dna", members)
        pool = pool[pool >= 0]
        own = library.positions("dna", np.array([row]))
        identity = None
        if len(pool) >= MINOR_BIN_FROM and own[0] >= 0:  # a photo's record has no barcode to place
            query = to_acgtn(library.barcodes.take(np.array([row]))[0])
            identity = best_identity(library, query, pool, library.vectors_at("dna", own)[0])
        measured[row] = identity if identity is not None and SAME_STRETCH <= identity < BIN_IDENTITY else None
    return measured[row]


def read_bin_registry(paths: list[str | Path]) -> dict[str, dict[str, int]]:
    """Each BIN of the BOLD exports with how many of their records carry each species name."""
    names: dict[str, Counter] = {}
    for path in paths:
        for item in iter_bold_tsv(path):
            if not isinstance(item, Record):
                if item.row == "header":  # not a BOLD export at all
                    raise ChecklistError(f"{path}: {item.reason}")
                continue
            bin_name, species = item.taxonomy.bin, item.taxonomy.species
            if bin_name not in NO_BIN and species != MISSING:
                names.setdefault(bin_name, Counter())[species] += 1
    if not names:
        raise ChecklistError(f"{', '.join(map(str, paths))}: no record with both a BIN and a species name")
    return {bin_name: dict(counts.most_common()) for bin_name, counts in sorted(names.items())}


def attach_bin_registry(library_path: str | Path, exports: list[str | Path]) -> dict:
    """Store the BINs of BOLD exports with the library (atomically); returns :func:`registry_summary`."""
    bins = read_bin_registry(exports)
    write_json(Path(library_path) / BIN_REGISTRY_FILE, {"sources": [str(path) for path in exports], "bins": bins})
    return registry_summary(Library.open(library_path, with_indexes=False))


def _attached(library: Library, file_name: str) -> dict | None:
    """A file attached beside the library's CURRENT (its checklist, its BIN registry) as stored, or None;
    read once per opened library."""

    def read() -> dict | None:
        file = library.path / file_name
        return json.loads(file.read_text()) if file.is_file() else None

    return library.derived(f"attached {file_name}", read)


def bin_registry_of(library: Library) -> dict[str, dict[str, int]] | None:
    """The library's BIN registry (None without one)."""
    return (_attached(library, BIN_REGISTRY_FILE) or {}).get("bins")


def registry_summary(library: Library) -> dict:
    """What the registry adds: its BINs, those shared by several names, and those of the library's records
    that carry a name elsewhere that the library does not hold."""
    registry = bin_registry_of(library)
    if registry is None:
        return {"registry": None}
    held = _held_species(library)
    own = set(library.column("bin")) - NO_BIN if "bin" in library.metadata else set()
    widened = sorted(b for b in own & set(registry) if set(registry[b]) - held)
    return {
        "registry": _attached(library, BIN_REGISTRY_FILE)["sources"],
        "bins": len(registry),
        "shared_bins": sum(len(names) > 1 for names in registry.values()),
        "library_bins_with_names_elsewhere": len(widened),
        "examples": {b: sorted(set(registry[b]) - held)[:3] for b in widened[:5]},
    }


def naming_facts(library: Library) -> dict:
    """What a library's species names rest on beyond its records, for a pipeline to record beside them:
    its checklist and BIN registry (their sources, or None) and how many references it does not vote with."""
    return {
        "checklist": (_attached(library, CHECKLIST_FILE) or {}).get("source"),
        "bin_registry": (_attached(library, BIN_REGISTRY_FILE) or {}).get("sources"),
        "suspect_labels": len(library.suspect_records),
    }


def read_checklist(path: str | Path) -> dict[str, set[str]]:
    """Species expected, by genus, from a CSV or TSV with a species (or scientificName) column; rows of
    another rank (a taxonRank column) and names that are not binomials are left out."""
    text = Path(path).read_text(encoding="utf-8-sig", errors="replace")
    try:
        dialect = csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel_tab if "\t" in text[:4096] else csv.excel
    rows = list(csv.DictReader(io.StringIO(text), dialect=dialect))
    header = {name.strip().lower(): name for name in (rows[0].keys() if rows else []) if name}
    name_column = next((header[c] for c in NAME_COLUMNS if c in header), None)
    if name_column is None:
        raise ChecklistError(f"{path}: no species column (expected one of: species, scientificName)")
    rank_column = next((header[c] for c in RANK_COLUMNS if c in header), None)
    expected: dict[str, set[str]] = {}
    for row in rows:
        if rank_column and (row.get(rank_column) or "species").strip().lower() != "species":
            continue
        words = (row.get(name_column) or "").split()
        if len(words) >= 2 and words[0][:1].isupper() and words[1].islower():
            expected.setdefault(words[0], set()).add(f"{words[0]} {words[1]}")
    if not expected:
        raise ChecklistError(f"{path}: no species names (genus and epithet) found")
    return expected


def attach_checklist(library_path: str | Path, checklist: str | Path) -> dict:
    """Store the checklist with the library (atomically); returns its coverage summary."""
    expected = read_checklist(checklist)
    genera = {genus: sorted(species) for genus, species in sorted(expected.items())}
    write_json(Path(library_path) / CHECKLIST_FILE, {"source": str(checklist), "genera": genera})
    return coverage_summary(Library.open(library_path, with_indexes=False))


def checklist_of(library: Library) -> dict[str, set[str]] | None:
    """The library's checklist by genus (None without one), read once per opened library."""

    def read() -> dict[str, set[str]] | None:
        facts = _attached(library, CHECKLIST_FILE)
        return {genus: set(species) for genus, species in facts["genera"].items()} if facts else None

    return library.derived("checklist", read)


def missing_relatives(library: Library, genus: str) -> list[str]:
    """The checklist's species of ``genus`` that the library holds no record of."""
    expected = (checklist_of(library) or {}).get(genus)
    if not expected:
        return []
    held = _held_species(library)
    return sorted(expected - held)


def _held_species(library: Library) -> set[str]:
    return library.derived("held species", lambda: set(library.column("species")) - {MISSING})


def coverage_summary(library: Library) -> dict:
    """How much of the checklist the library holds: genera and species, in all and per genus."""
    checklist = checklist_of(library)
    if checklist is None:
        return {"checklist": None}
    held = _held_species(library)
    genera = {
        genus: {"expected": len(species), "held": len(species & held)} for genus, species in sorted(checklist.items())
    }
    expected = sum(g["expected"] for g in genera.values())
    return {
        "checklist": _attached(library, CHECKLIST_FILE)["source"],
        "species_expected": expected,
        "species_held": sum(g["held"] for g in genera.values()),
        "genera_expected": len(genera),
        "genera_complete": sum(g["held"] == g["expected"] for g in genera.values()),
        "genera": genera,
    }
