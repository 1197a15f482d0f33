"""References whose own barcode contradicts their label, found when a library is built.

A barcode filed under species A that lies far outside A's other barcodes and nearer species B's (an
*Aedes aegypti* barcode filed as *Aedes albopictus*, a swapped well, a contaminated read: a parasitoid
wasp's barcode filed as its moth host) would vote for
A whenever a query of B comes near it, and would make A look present where it is not. Such records are
listed in the library (``suspect_labels`` in library.json; `clibd inspect LIBRARY`, the Libraries tab),
take no part in the votes (library/evidence.py's ``lineages``) and give their place among a query's
neighbours to the next references (``Library.search``); they stay in the library, so nothing a lab filed
is lost or changed.

The rule, per reference with a species and at least one conspecific: its embedding is nearer to another
species' centroid than to the centroid of its own other members (a cheap first pass over every record),
and then, aligned, it is at least ``SUSPECT_MARGIN`` points closer to that species than to its own
species' main body (the members nearest the species' centroid), and either within BOLD's BIN threshold
of it (≥ 97.8 % identity) or of another genus. A record nearer another genus than its own species is
a contradiction of its label whatever the distance: four GenBank "*Armigeres subalbatus*" barcodes lie at
88.7 % from that species' 322 others and 92.5 % from *Culex tritaeniorhynchus* (they are *Culex
quinquefasciatus* barcodes), and where the library lacks *C. quinquefasciatus* they named its queries
*Armigeres subalbatus*. Within a genus, sister species closer than the BIN threshold stay apart.
"""

from __future__ import annotations

import numpy as np

from clibd_core.dna import to_acgtn
from clibd_core.library.build_status import Progress, no_progress
from clibd_core.library.identity import BIN_IDENTITY, percent_identity
from clibd_core.library.store import Library
from clibd_core.taxonomy import MISSING

SUSPECT_MARGIN = 2.0  # % identity closer to another species than to its own
ALIGNED_PER_SPECIES = 3  # members of each species aligned to a candidate (the nearest by embedding)
SUSPECT_LIMIT = 1_000_000  # DNA references: above this the check is not run (library.json says so)
CHUNK = 16_384
RULE = 2  # 2: the other-genus case; a default library checked by an older rule is rebuilt (reference.py)


def find_suspect_labels(library: Library, progress: Progress = no_progress) -> dict:
    """``{"checked": n, "records": [{row, id, label, inside, identity_inside, identity_own}, …]}``, or
    ``{"checked": 0, "reason": …}`` where the library holds no barcodes or too many to check."""
    if "dna" not in library.modalities:
        return {"checked": 0, "reason": "the library holds no barcodes", "records": []}
    rows = library.rows["dna"]
    if len(rows) > SUSPECT_LIMIT:
        return {"checked": 0, "reason": f"more than {SUSPECT_LIMIT:,} barcodes: not checked", "records": []}
    species = library.column("species")[rows]
    names, member_of = np.unique(species, return_inverse=True)
    named = names != MISSING
    counts = np.bincount(member_of, minlength=len(names))
    sums = np.zeros((len(names), library.vectors_at("dna", np.arange(1)).shape[1]), dtype=np.float64)
    stage = "checking reference labels"
    for start in range(0, len(rows), CHUNK):
        progress(stage, start // 2, len(rows))
        positions = np.arange(start, min(start + CHUNK, len(rows)))
        np.add.at(sums, member_of[positions], library.vectors_at("dna", positions))
    norms = np.linalg.norm(sums, axis=1)
    candidates = []  # (position, species index it lies nearer to)
    for start in range(0, len(rows), CHUNK):
        progress(stage, (len(rows) + start) // 2, len(rows))
        positions = np.arange(start, min(start + CHUNK, len(rows)))
        vectors = library.vectors_at("dna", positions).astype(np.float64)
        dots = vectors @ sums.T
        own = member_of[positions]
        own_dot = dots[np.arange(len(positions)), own]
        # the centroid of the record's own species without it (its other members)
        own_norm = np.sqrt(np.maximum(norms[own] ** 2 - 2 * own_dot + 1, 1e-12))
        own_similarity = (own_dot - 1) / own_norm
        others = dots / np.maximum(norms, 1e-12)
        others[:, ~named] = -np.inf
        others[np.arange(len(positions)), own] = -np.inf
        nearest = others.argmax(axis=1)
        checkable = named[own] & (counts[own] >= 2)
        suspicious = checkable & (others[np.arange(len(positions)), nearest] > own_similarity)
        candidates += list(zip(positions[suspicious].tolist(), nearest[suspicious].tolist(), strict=True))
    progress(stage, len(rows), len(rows))
    records = _confirmed(library, candidates, member_of, names, sums)
    return {"checked": int(len(rows)), "rule": RULE, "records": records}


def _confirmed(
    library: Library, candidates: list, member_of: np.ndarray, names: np.ndarray, sums: np.ndarray
) -> list[dict]:
    """The candidates whose alignments confirm them (the rule in the module's docstring). A species is
    represented by its members nearest its centroid, so a group of records mislabelled alike (a batch
    misidentified together) does not vouch for itself while the species' other records lie elsewhere."""
    rows = library.rows["dna"]
    genus = library.column("genus")[rows]
    genus_of = {s: genus[np.flatnonzero(member_of == s)[0]] for s in {other for _, other in candidates}}
    found = []
    for position, other in candidates:
        own = member_of[position]
        vector = library.vectors_at("dna", np.array([position]))[0]
        query = to_acgtn(library.barcodes.take(rows[[position]])[0])
        members = {s: np.setdiff1d(np.flatnonzero(member_of == s), [position]) for s in (own, other)}
        inside = best_identity(library, query, members[other], vector)
        own_identity = best_identity(library, query, members[own], (sums[own] - vector).astype(np.float32))
        another_genus = genus_of[other] not in (MISSING, genus[position])
        if (inside >= BIN_IDENTITY or another_genus) and inside - own_identity >= SUSPECT_MARGIN:
            row = int(rows[position])
            found.append(
                {
                    "row": row,
                    "id": str(library.metadata["id"].iloc[row]),
                    "label": str(names[own]),
                    "inside": str(names[other]),
                    "identity_inside": round(inside, 2),
                    "identity_own": round(own_identity, 2),
                }
            )
    return found


def best_identity(library: Library, query: str, pool: np.ndarray, towards: np.ndarray) -> float:
    """The best identity of ``query`` (a reference's barcode) to the ``ALIGNED_PER_SPECIES`` members of
    ``pool`` (index positions) nearest ``towards`` (the barcode's own vector, or its species' centroid)."""
    rows = library.rows["dna"]
    nearest = pool[np.argsort(-(library.vectors_at("dna", pool) @ towards))[:ALIGNED_PER_SPECIES]]
    return max(percent_identity(query, to_acgtn(b)) for b in library.barcodes.take(rows[nearest]))
