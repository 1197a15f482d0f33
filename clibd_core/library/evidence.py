"""What a query's neighbours say, before any rule: the evidence (neighbours, similarities and, for
barcodes, the identities of real alignments, library/identity.py), widened by the seed index where the
embedding may have missed close relatives, and the weighted votes at every rank.

Each neighbour's vote is weighted by ``exp((score - best score) / tau)``: the cosine similarity of the
embeddings, or the percent identity of an alignment, which reranks the candidates the embedding found.
The calls form one lineage path: the genus voted, the ranks above it its own, the species inside it.
Shared by the answers (library/naming.py) and the calibration that fits them (library/calibration.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from clibd_core.dna import to_acgtn
from clibd_core.library.identity import BIN_IDENTITY, percent_identity
from clibd_core.library.seeds import LONG_READ
from clibd_core.library.store import Library
from clibd_core.taxonomy import MISSING, RANKS

TAU_SIMILARITY = 0.02  # vote temperature on cosine similarity
TAU_IDENTITY = 1.0  # vote temperature on percent identity
FULL_BARCODE = 658  # bp: the Folmer region of COI
SEED_CANDIDATES = 30  # references sharing the most seeds with a hard query, aligned too (needs_seeds)


@dataclass
class Evidence:
    """A query's neighbours, best first: metadata rows, similarities and (barcodes) identities."""

    rows: np.ndarray
    similarities: np.ndarray
    identities: np.ndarray | None = None
    read_length: int | None = None  # bases of the aligned query read

    @property
    def scores(self) -> np.ndarray:
        return self.identities if self.identities is not None else self.similarities

    @property
    def tau(self) -> float:
        return TAU_IDENTITY if self.identities is not None else TAU_SIMILARITY

    def top_score(self) -> float:
        """Best similarity, or best identity as a fraction: the strength of the closest match."""
        return float(self.identities[0] / 100) if self.identities is not None else float(self.similarities[0])


def aligned_candidates(
    library: Library, evidence: Evidence, extra_rows: np.ndarray, vector: np.ndarray, sequence: str, k: int
) -> Evidence:
    """The candidates and ``extra_rows`` aligned to the query (each once: candidates aligned before keep
    their identity) and reranked by identity, ties by similarity; the best k."""
    extra = np.setdiff1d(extra_rows, evidence.rows)
    rows = np.r_[evidence.rows, extra].astype(np.int64)
    similarities = evidence.similarities
    if len(extra):
        positions = library.positions("dna", extra)
        similarities = np.r_[similarities, library.vectors_at("dna", positions) @ vector]
    known = [] if evidence.identities is None else list(evidence.identities)
    barcodes = library.barcodes.take(rows[len(known) :])
    identities = np.array(known + _identities(sequence, barcodes))
    order = np.lexsort((-similarities, -identities))[:k]
    return Evidence(rows[order], similarities[order], identities[order], len(sequence))


def _identities(sequence: str, barcodes: list[str]) -> list[float]:
    """The query's identity with each barcode: a barcode met twice (references of one haplotype, common in
    BOLD) is aligned once, and one that holds the query whole is 100 % without aligning."""
    known: dict[str, float] = {}
    for barcode in barcodes:
        if barcode not in known:
            target = to_acgtn(barcode)
            known[barcode] = 100.0 if sequence in target or target in sequence else percent_identity(sequence, target)
    return [known[barcode] for barcode in barcodes]


def needs_seeds(evidence: Evidence, sequence: str) -> bool:
    """Whether a barcode's embedding candidates may have missed its closest relatives: none is within
    BOLD's BIN threshold (a species the library may lack), or the read is short (a fragment's
    embedding places it less well)."""
    return len(sequence) < LONG_READ or not len(evidence.rows) or evidence.identities[0] < BIN_IDENTITY


def with_seed_candidates(
    library: Library, evidence: Evidence, vector: np.ndarray, sequence: str, k: int, excluded: np.ndarray | None
) -> Evidence:
    """Aligned candidates widened by the seed index's (library/seeds.py) where :func:`needs_seeds`;
    ``excluded``: a boolean mask of metadata rows that may not be candidates."""
    if library.seeds is None or not needs_seeds(evidence, sequence):
        return evidence
    seeds = library.seeds.candidates(sequence, SEED_CANDIDATES, excluded)
    return aligned_candidates(library, evidence, seeds, vector, sequence, k)


def rank_votes(evidence: Evidence, lineages: dict[str, np.ndarray]) -> dict[str, tuple[str, float]]:
    """Per rank: the name called and its share of the weighted votes of the neighbours that name the rank
    (``lineages[rank]`` holds every reference's name at that rank). The calls form one path of the
    library's taxonomy: the genus is voted by every neighbour that names one, the ranks above are that
    genus's own lineage, and the species is voted among the neighbours inside it. Anchoring on the genus
    placed absent species better than descending from the order (genus 76.5 → 78.2 %, family 85.7 →
    87.4 % on real BOLD barcodes, docs/BENCHMARKS.md). Without any genus, the calls descend from the order."""
    weights = np.exp((evidence.scores - evidence.scores[0]) / evidence.tau)
    names = {rank: lineages[rank][evidence.rows] for rank in RANKS}
    genus = _weighted_winner(names["genus"], weights, np.ones(len(weights), dtype=bool))
    if genus is None:
        return _descending_votes(names, weights)
    anchor = int(np.flatnonzero(names["genus"] == genus[0])[0])  # the closest neighbour of that genus
    votes = {}
    for rank in RANKS[: RANKS.index("genus")]:
        name = names[rank][anchor]
        if name != MISSING:
            votes[rank] = (name, _share(names[rank], weights, name))
    votes["genus"] = genus
    species = _weighted_winner(names["species"], weights, names["genus"] == genus[0])
    if species is not None:
        votes["species"] = species
    return votes


def _weighted_winner(names: np.ndarray, weights: np.ndarray, among: np.ndarray) -> tuple[str, float] | None:
    """The name with the most weight among the ``among`` neighbours that name one, and its share of the
    weight of all neighbours naming the rank; None when none of them names it."""
    candidates = among & (names != MISSING)
    if not candidates.any():
        return None
    totals: dict[str, float] = {}
    for name, weight in zip(names[candidates], weights[candidates], strict=True):
        totals[name] = totals.get(name, 0.0) + float(weight)
    winner = max(totals, key=totals.__getitem__)
    return winner, _share(names, weights, winner)


def _share(names: np.ndarray, weights: np.ndarray, name: str) -> float:
    known = names != MISSING
    return float(weights[known & (names == name)].sum() / weights[known].sum())


def _descending_votes(names: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, tuple[str, float]]:
    """From the order down, each rank voted inside the taxon called above (for neighbours without genera)."""
    inside = np.ones(len(weights), dtype=bool)
    votes = {}
    for rank in RANKS:
        call = _weighted_winner(names[rank], weights, inside)
        if call is None:
            break
        votes[rank] = call
        inside &= names[rank] == call[0]
    return votes


def lineages(library: Library) -> dict[str, np.ndarray]:
    """Every reference's name at every rank as the votes read them: references the build found
    mislabelled (library/suspects.py) name nothing, so they are shown as neighbours but never voted with."""

    def made() -> dict[str, np.ndarray]:
        table = {rank: library.column(rank) for rank in RANKS}
        suspects = library.suspect_rows
        if len(suspects):
            table = {rank: names.copy() for rank, names in table.items()}
            for names in table.values():
                names[suspects] = MISSING
        return table

    return library.derived("voting_lineages", made)


def rank_features(vote_share: float, evidence: Evidence) -> list[float]:
    """Vote share, best score and how much of a full barcode the aligned read covers: 100 % identity over
    a 150-bp fragment is weaker evidence than over 658 bp (such fragments of a fly and a butterfly can
    be identical), so the fitted confidence may fall with the read's length."""
    coverage = 1.0 if evidence.read_length is None else min(1.0, evidence.read_length / FULL_BARCODE)
    return [vote_share, evidence.top_score(), coverage]


def novelty_feature_names(evidence: Evidence) -> list[str]:
    """The best identity when the candidates are aligned (a partial read keeps it, while its embedding
    similarity falls and would read as novelty), else the best similarity."""
    return ["identity"] if evidence.identities is not None else ["similarity"]


def novelty_features(evidence: Evidence, names: list[str]) -> list[float]:
    values = {"similarity": float(evidence.similarities[0])}
    if evidence.identities is not None:
        values["identity"] = float(evidence.identities[0] / 100)
    return [values[name] for name in names]


def logistic(model: dict, features: list[float]) -> float:
    """A fitted model's probability; a model fitted before a feature was added reads the first ones."""
    z = model["intercept"] + sum(c * x for c, x in zip(model["coef"], features[: len(model["coef"])], strict=True))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))
