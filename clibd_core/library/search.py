"""Identification: k nearest references → a per-rank answer with calibrated confidence and a novelty flag.

For each query the k nearest references of the library vote at every rank, each vote weighted by
``exp((score - best score) / tau)``: the cosine similarity of the embeddings, or for barcode queries
the percent identity of a real alignment (library/identity.py), which reranks the candidates the
embedding found. The calls form one lineage path: the genus voted, the ranks above it its own, the species inside it.
The winner's vote share and the best score go through a logistic model fitted per rank on the library
itself (library/calibration.py) to give the confidence shown to the user; then the honesty rules: a
deeper rank is never more confident than the one above it, and every rank is capped at
``UNSUPPORTED_CAP`` (with the reason) when the library could not be calibrated, when the query lies
outside the library's domain (library/domain.py) or when its evidence is weaker than any the calibration
saw. The deepest rank whose confidence reaches ``CONFIDENT`` (with every rank above it too) is the
headline. A second logistic model on the best identity (or similarity) flags queries whose species is
probably absent from the library, as does an identity below the named species' own spread; those are
answered by models fitted on absent species and never named at species. Bad queries get an error on
their own row, never a failed batch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clibd_core.data.transforms import ImageError, open_image
from clibd_core.dna import inspect_barcode, parse_sequences, to_acgtn
from clibd_core.library.domain import distances
from clibd_core.library.identity import percent_identity
from clibd_core.library.kmers import kmer_profiles
from clibd_core.library.seeds import LONG_READ
from clibd_core.library.store import Library, LibraryError
from clibd_core.taxonomy import MISSING, RANKS

K_DEFAULT = 10
CONFIDENT = 0.8  # a rank is stated (deepest_rank) when its calibrated confidence reaches this
TAU_SIMILARITY = 0.02  # vote temperature on cosine similarity
TAU_IDENTITY = 1.0  # vote temperature on percent identity
EMBEDDING_ONLY = "dna->dna:embedding"  # calibration of barcode answers without alignment
NOVEL_MESSAGE = "no close reference: possibly undescribed, or a species missing from the library"
OUT_OF_DOMAIN_MESSAGE = (
    "this query is unlike anything in the library (far outside where its references' features lie): "
    "its model was probably never trained on such data, so no rank is stated"
)
UNSUPPORTED_CAP = 0.3  # the most confidence any rank keeps when the calibration cannot back it
BIN_IDENTITY = 97.8  # % identity: BOLD's BIN threshold (2.2 % divergence)
SEED_CANDIDATES = 30  # references sharing the most seeds with a hard query, aligned too (needs_seeds)


@dataclass
class Query:
    """One specimen: a barcode (raw or cleaned), an image (path, bytes, PIL image or array), or both."""

    id: str
    barcode: str | None = None
    image: object = None


@dataclass
class Neighbour:
    row: int
    id: str
    lineage: dict[str, str]
    similarity: float
    identity: float | None = None


@dataclass
class RankCall:
    name: str
    confidence: float
    vote_share: float


@dataclass
class BinCall:
    """The nearest BOLD BIN and whether the query falls inside it."""

    name: str
    identity: float
    inside: bool


@dataclass
class Identification:
    """The answer for one query; ``error`` set means the query could not be used (and why)."""

    query_id: str
    query_type: str = ""  # "barcode", "image" or "image+barcode"
    ranks: dict[str, RankCall] = field(default_factory=dict)
    deepest_rank: str | None = None
    novel: bool = False
    novelty: float = 0.0  # calibrated probability that the species is not in the library
    neighbours: list[Neighbour] = field(default_factory=list)
    agreement: str = ""  # image+barcode: where the two agree and disagree
    warnings: list[str] = field(default_factory=list)
    error: str | None = None
    parts: dict[str, Identification] = field(default_factory=dict)  # image+barcode: each on its own
    embedding: list[float] | None = None  # the query's vector (barcode's for image+barcode)
    key_modality: str = ""  # which library vectors it was matched against
    bin: BinCall | None = None  # barcodes against a library with BINs

    @property
    def headline(self) -> str:
        if self.error:
            return f"error: {self.error}"
        if not self.deepest_rank:
            return "no confident placement"
        call = self.ranks[self.deepest_rank]
        absent = "; species not in this library" if self.novel and self.deepest_rank != "species" else ""
        return f"{self.deepest_rank} {call.name} ({call.confidence:.2f}){absent}"

    def to_dict(self) -> dict:
        """JSON-ready (without the embedding vectors)."""
        data = asdict(self)
        data.pop("embedding")
        for part in data["parts"].values():
            part.pop("embedding")
        return {**data, "headline": self.headline}

    def row(self) -> dict:
        """The flat CSV row (see `clibd identify`)."""
        top = self.neighbours[0] if self.neighbours else None
        return {
            "query_id": self.query_id,
            "query_type": self.query_type,
            **{rank: self.ranks[rank].name if rank in self.ranks else "" for rank in RANKS},
            **{f"{rank}_conf": round(self.ranks[rank].confidence, 4) if rank in self.ranks else None for rank in RANKS},
            "deepest_rank": self.deepest_rank or "",
            "headline": self.headline,
            "top1_id": top.id if top else "",
            "top1_similarity": round(top.similarity, 4) if top else None,
            "top1_identity": round(top.identity, 2) if top and top.identity is not None else None,
            "novel": self.novel,
            "novelty": round(self.novelty, 4),
            "bin": self.bin.name if self.bin else "",
            "bin_identity": round(self.bin.identity, 2) if self.bin else None,
            "in_bin": self.bin.inside if self.bin else None,
            "agreement": self.agreement,
            "warnings": "; ".join(self.warnings),
            "error": self.error or "",
        }


# -- the answer from neighbours (shared with calibration) -----------------------------------------
@dataclass
class Evidence:
    """A query's neighbours, best first: metadata rows, similarities and (barcodes) identities."""

    rows: np.ndarray
    similarities: np.ndarray
    identities: np.ndarray | None = None

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
    identities = np.array(known + [percent_identity(sequence, to_acgtn(barcode)) for barcode in barcodes])
    order = np.lexsort((-similarities, -identities))[:k]
    return Evidence(rows[order], similarities[order], identities[order])


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


def rank_features(vote_share: float, evidence: Evidence) -> list[float]:
    return [vote_share, evidence.top_score()]


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
    z = model["intercept"] + sum(c * x for c, x in zip(model["coef"], features, strict=True))
    return 1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0)))


def answer(evidence: Evidence, library: Library, pair: str, features: np.ndarray | None = None) -> Identification:
    """Per-rank calls, confidence, novelty and deepest rank from the evidence of one query; ``features``
    (a barcode's embedding, an image's backbone features) are checked against the library's domain."""
    if pair == "dna->dna" and evidence.identities is None:
        pair = EMBEDDING_ONLY
    calibration = library.facts.get("calibration", {}).get(pair, {})
    result = Identification(query_id="")
    if not len(evidence.rows):
        result.error = "no reference in the library to compare with"
        return result
    novelty_model = calibration.get("novelty")
    if novelty_model:
        # Libraries calibrated before the model named its features used similarity [, identity].
        names = novelty_model.get("features", ["similarity", "identity"][: len(novelty_model["coef"])])
        result.novelty = logistic(novelty_model, novelty_features(evidence, names))
        result.novel = result.novelty >= novelty_model["threshold"]
    votes = rank_votes(evidence, lineages(library))
    outside = outside_species_spread(evidence, votes, library, calibration)
    if outside:
        result.novel = True
        result.warnings.append(outside)
    models = calibration.get("ranks", {})
    if result.novel:  # the species is probably absent: confidence as measured on absent species
        models = {**models, **calibration.get("ranks_if_novel", {})}
    for rank, (name, share) in votes.items():
        model = models.get(rank)
        confidence = logistic(model, rank_features(share, evidence)) if model else share
        result.ranks[rank] = RankCall(name, confidence, share)
    limits = confidence_limits(evidence, library, pair, features, calibration)
    if limits:
        result.warnings += limits
        for call in result.ranks.values():
            call.confidence = min(call.confidence, UNSUPPORTED_CAP)
    make_monotone(result.ranks)
    result.deepest_rank = deepest_confident_rank(result.ranks, result.novel)
    # Ids are read one by one: a column of millions of distinct ids is not made into Python strings
    # (and a gather over the column's many Arrow chunks costs ~6 ms a query at 5M records).
    ids = library.metadata["id"].array
    names = {rank: library.column(rank) for rank in (*RANKS, "bin")}
    result.neighbours = [
        Neighbour(
            int(row),
            str(ids[int(row)]),
            {rank: str(names[rank][row]) for rank in names},
            float(similarity),
            None if evidence.identities is None else float(evidence.identities[i]),
        )
        for i, (row, similarity) in enumerate(zip(evidence.rows, evidence.similarities, strict=True))
    ]
    result.bin = nearest_bin(result.neighbours)
    return result


def outside_species_spread(evidence: Evidence, votes: dict, library: Library, calibration: dict) -> str:
    """Why the species voted for cannot be named (empty when it can): the query's best identity to it is
    below BOLD's BIN threshold or below the species' own spread in the library (calibration.py)."""
    floors = calibration.get("species_identity_floor")
    if floors is None or evidence.identities is None or "species" not in votes:
        return ""
    name = votes["species"][0]
    members = library.column("species")[evidence.rows] == name
    best = float(evidence.identities[members].max())
    floor = max(floors.get(name, BIN_IDENTITY), BIN_IDENTITY)
    if best >= floor:
        return ""
    return f"{best:.1f} % identity to {name} is below its own spread in this library ({floor:.1f} %): species not named"


def confidence_limits(
    evidence: Evidence, library: Library, pair: str, features: np.ndarray | None, calibration: dict
) -> list[str]:
    """Why the calibrated confidences cannot be trusted for this query (empty when they can): a library
    too small or uniform to calibrate, a query outside the library's domain, or evidence weaker than any
    the calibration saw (the logistic models would extrapolate)."""
    if "ranks" not in calibration:
        reason = calibration.get("fallback", "it was built before calibration existed")
        return [f"this library could not be calibrated ({reason}): no rank is stated with confidence"]
    domain = library.facts.get("domain", {}).get(pair.split("->")[0])
    if domain and features is not None and distances(domain, features)[0] > domain["threshold"]:
        return [OUT_OF_DOMAIN_MESSAGE]
    floor = calibration.get("support", {}).get("min_score")
    if floor is not None and evidence.top_score() < floor:
        aligned = evidence.identities is not None
        score = f"{100 * evidence.top_score():.1f} % identity" if aligned else f"similarity {evidence.top_score():.2f}"
        return [f"the closest reference ({score}) is further than any the calibration saw: no rank is supported"]
    return []


def make_monotone(ranks: dict[str, RankCall]) -> None:
    """A deeper call is right only if the one above it is (one lineage path): its confidence never
    exceeds its parent's."""
    ceiling = 1.0
    for rank in RANKS:
        if rank in ranks:
            ranks[rank].confidence = ceiling = min(ranks[rank].confidence, ceiling)


def nearest_bin(neighbours: Sequence[Neighbour]) -> BinCall | None:
    """The BIN of the closest aligned reference that has one, and whether the query lies inside it
    (identity within BOLD's 2.2 % BIN threshold)."""
    for neighbour in neighbours:
        name = neighbour.lineage.get("bin", MISSING)
        if neighbour.identity is not None and name not in (MISSING, "", "None", "nan"):
            return BinCall(name, neighbour.identity, neighbour.identity >= BIN_IDENTITY)
    return None


def lineages(library: Library) -> dict[str, np.ndarray]:
    return {rank: library.column(rank) for rank in RANKS}


def deepest_confident_rank(ranks: dict[str, RankCall], novel: bool) -> str | None:
    """The deepest rank reaching ``CONFIDENT`` with every rank above it; never species for a novel query."""
    deepest = None
    for rank in RANKS:
        call = ranks.get(rank)
        if call is None or call.confidence < CONFIDENT or (novel and rank == "species"):
            break
        deepest = rank
    return deepest


def combine(image: Identification, barcode: Identification) -> Identification:
    """One answer for an image and a barcode of the same specimen, and where they agree.

    Per rank, treating the two as independent experts with a flat prior: if they name the same taxon
    its confidence becomes c1·c2 / (c1·c2 + (1-c1)(1-c2)); if they differ, the more confident wins
    with c_w(1-c_l) / (c_w(1-c_l) + c_l(1-c_w)). Novelty is the barcode's: a photo cannot tell a
    missing species from a look-alike as an alignment can.
    """
    combined = Identification(query_id=barcode.query_id, query_type="image+barcode")
    agree, disagree = [], []
    for rank in RANKS:
        a, b = barcode.ranks.get(rank), image.ranks.get(rank)
        if a is None or b is None:
            if a or b:
                combined.ranks[rank] = a or b
            continue
        ca, cb = _clip(a.confidence), _clip(b.confidence)
        if a.name == b.name:
            agree.append(rank)
            confidence = ca * cb / (ca * cb + (1 - ca) * (1 - cb))
            combined.ranks[rank] = RankCall(a.name, confidence, max(a.vote_share, b.vote_share))
        else:
            disagree.append(f"{rank} (barcode: {a.name} {a.confidence:.2f}; image: {b.name} {b.confidence:.2f})")
            win, lose = (a, b) if ca >= cb else (b, a)
            cw, cl = _clip(win.confidence), _clip(lose.confidence)
            combined.ranks[rank] = RankCall(win.name, cw * (1 - cl) / (cw * (1 - cl) + cl * (1 - cw)), win.vote_share)
    combined.novel, combined.novelty = barcode.novel, barcode.novelty  # identity decides species novelty
    make_monotone(combined.ranks)
    combined.deepest_rank = deepest_confident_rank(combined.ranks, combined.novel)
    combined.neighbours, combined.bin = barcode.neighbours, barcode.bin
    combined.embedding, combined.key_modality = barcode.embedding, barcode.key_modality
    combined.warnings = [w for w in (*barcode.warnings, *image.warnings) if w != NOVEL_MESSAGE]
    combined.warnings += [NOVEL_MESSAGE] if combined.novel else []
    combined.parts = {"barcode": barcode, "image": image}
    if not disagree:
        combined.agreement = "image and barcode agree at every rank" if agree else ""
    else:
        combined.agreement = (f"agree at {', '.join(agree)}; " if agree else "") + "disagree at " + "; ".join(disagree)
    return combined


def _clip(confidence: float) -> float:
    return min(max(confidence, 1e-4), 1 - 1e-4)


def queries_from(barcode_text: str = "", images: Sequence[str | Path] = ()) -> list[Query]:
    """Queries from pasted/FASTA barcodes and image files; an image whose file name (without suffix)
    is a barcode's id joins that barcode as one specimen, and so does a lone image with a lone barcode.
    Repeated ids get a " (2)", " (3)" suffix."""
    queries: dict[str, Query] = {}
    for record_id, raw in parse_sequences(barcode_text):
        query_id = _fresh_id(queries, record_id)
        queries[query_id] = Query(query_id, barcode=raw)
    if len(queries) == 1 and len(images) == 1:
        only = next(iter(queries.values()))
        only.image = images[0]
        return [only]
    for path in images:
        stem = Path(path).stem
        if stem in queries and queries[stem].image is None and queries[stem].barcode is not None:
            queries[stem].image = path
        else:
            query_id = _fresh_id(queries, stem)
            queries[query_id] = Query(query_id, image=path)
    return list(queries.values())


def _fresh_id(taken: dict, wanted: str) -> str:
    candidate, number = wanted, 1
    while candidate in taken:
        number += 1
        candidate = f"{wanted} ({number})"
    return candidate


# -- identify -----------------------------------------------------------------------------------
def image_key_modality(library: Library, requested: str = "auto") -> str:
    """Which references image queries are matched against: the library's images, else its barcodes."""
    if requested == "auto":
        return "image" if "image" in library.modalities else "dna"
    if requested not in library.modalities:
        raise LibraryError(f"the library has no {requested} vectors (it has {', '.join(library.modalities)})")
    return requested


def identify(
    library: Library,
    model,
    queries: Sequence[Query],
    k: int = K_DEFAULT,
    image_keys: str = "auto",
    taxon: str | None = None,
    country: str | None = None,
    align: bool = True,
    progress: Callable[[str, int, int], None] | None = None,
    batch_size: int = 64,
) -> list[Identification]:
    """Identify every query; one :class:`Identification` per query, in order."""
    library.check_model(model)
    allowed = library.select_rows(taxon, country)
    if allowed is not None and not len(allowed):
        raise LibraryError(f"no reference in the library matches taxon={taxon!r} country={country!r}")
    progress = progress or (lambda stage, done, total: None)
    barcode_parts = _identify_barcodes(library, model, queries, k, allowed, align, progress, batch_size)
    image_parts = _identify_images(library, model, queries, k, image_keys, allowed, progress, batch_size)
    results = []
    for i, query in enumerate(queries):
        parts = [p for p in (barcode_parts.get(i), image_parts.get(i)) if p is not None]
        if not parts:
            result = Identification(query.id, error="the query has neither a barcode nor an image")
        elif len(parts) == 2 and not any(p.error for p in parts):
            result = combine(image=parts[1], barcode=parts[0])
        else:
            result = next((p for p in parts if not p.error), parts[0])
            result.warnings += [f"{p.query_type} ignored: {p.error}" for p in parts if p is not result and p.error]
        result.query_id = query.id
        results.append(result)
    return results


def _identify_barcodes(library, model, queries, k, allowed, align, progress, batch_size) -> dict[int, Identification]:
    results, good = {}, []
    for i, query in enumerate(queries):
        if query.barcode is None:
            continue
        report = inspect_barcode(query.id, query.barcode)
        results[i] = Identification(query.id, "barcode", warnings=list(report.warnings), error=report.error)
        if report.ok:
            if "dna" not in library.modalities:
                results[i].error = "this library has no barcodes to compare with"
            else:
                good.append((i, to_acgtn(report.sequence)))
    use_kmers = align and "kmer" in library.indexes
    excluded = None if allowed is None else ~library.row_mask(allowed)
    for start in range(0, len(good), batch_size):
        chunk = good[start : start + batch_size]
        sequences = [sequence for _, sequence in chunk]
        vectors = model.encode_barcodes(sequences, clean=False)
        similarities, rows = library.search("dna", vectors, k, allowed)
        kmer_rows = library.search("kmer", kmer_profiles(sequences), k, allowed)[1] if use_kmers else rows
        for (i, sequence), vector, sims, found, more in zip(chunk, vectors, similarities, rows, kmer_rows, strict=True):
            evidence = Evidence(found[found >= 0], sims[found >= 0])
            if align:
                evidence = aligned_candidates(library, evidence, more[more >= 0], vector, sequence, k)
                evidence = with_seed_candidates(library, evidence, vector, sequence, k, excluded)
            _fill(results[i], answer(evidence, library, "dna->dna", vector))
            results[i].embedding, results[i].key_modality = vector.tolist(), "dna"
        progress("barcodes", min(start + batch_size, len(good)), len(good))
    return results


def _identify_images(
    library, model, queries, k, image_keys, allowed, progress, batch_size
) -> dict[int, Identification]:
    results, good = {}, []
    for i, query in enumerate(queries):
        if query.image is None:
            continue
        results[i] = Identification(query.id, "image")
        if "image" not in model.config.modalities:
            results[i].error = photo_way_forward(library.name)
            continue
        try:
            good.append((i, open_image(query.image, name=query.id)))
        except ImageError as error:
            results[i].error = str(error)
    if not good:
        return results
    keys = image_key_modality(library, image_keys)
    for start in range(0, len(good), batch_size):
        chunk = good[start : start + batch_size]
        vectors, backbones = model.encode_images_with_backbone([image for _, image in chunk])
        similarities, rows = library.search(keys, vectors, k, allowed)
        for (i, _), vector, backbone, sims, found in zip(chunk, vectors, backbones, similarities, rows, strict=True):
            evidence = Evidence(found[found >= 0], sims[found >= 0])
            _fill(results[i], answer(evidence, library, f"image->{keys}", backbone))
            results[i].embedding, results[i].key_modality = vector.tolist(), keys
        progress("images", min(start + batch_size, len(good)), len(good))
    return results


def photo_way_forward(library_name: str) -> str:
    """What a lab can do when a photo meets a library whose model cannot read photos (words, not code)."""
    return (
        f"the library “{library_name}” holds DNA barcodes only, and its model was never taught what insects look "
        "like, so it cannot name a photo. Ways forward: open the demo library (synthetic insects, to see how photos "
        "are matched), train a model on your own labelled photos (Train tab, or clibd train --data PHOTOS "
        "--modalities image,text --out RUN), or get the official CLIBD model (Libraries tab; needs internet once)"
    )


def _fill(target: Identification, found: Identification) -> None:
    target.error = target.error or found.error
    target.ranks, target.deepest_rank = found.ranks, found.deepest_rank
    target.novel, target.novelty, target.neighbours = found.novel, found.novelty, found.neighbours
    target.bin = found.bin
    target.warnings += found.warnings
    if target.novel:
        target.warnings.append(NOVEL_MESSAGE)


# -- tables ------------------------------------------------------------------------------------------
def results_table(results: Sequence[Identification]) -> pd.DataFrame:
    return pd.DataFrame([r.row() for r in results])


def neighbours_table(results: Sequence[Identification]) -> pd.DataFrame:
    rows = [
        {
            "query_id": result.query_id,
            "position": position + 1,
            "id": n.id,
            **n.lineage,
            "similarity": round(n.similarity, 4),
            "identity": None if n.identity is None else round(n.identity, 2),
        }
        for result in results
        for position, n in enumerate(result.neighbours)
    ]
    return pd.DataFrame(rows, columns=["query_id", "position", "id", *RANKS, "bin", "similarity", "identity"])
