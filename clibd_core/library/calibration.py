"""Confidence and novelty calibration of a library on itself, fitted when it is built or appended.

Reference records are drawn as pretend queries in two ways: with only themselves left out (their
species is in the library: the "known species" case) and with the fold of their species left out (the
"species absent" case: a fifth of the library's species, dealt at random, as a real library misses a
species together with some of its relatives), together with the records of their genus that name no
species: those are often the same species, unnamed, and a query that matches one has a close
reference. References the build found mislabelled (library/suspects.py) are never pretend queries. Half of the
barcode queries are cut to a partial read (60-100 % of the read, anywhere in it), as users' reads often
are: a partial read is less similar to its own species' full references, and a model fitted on full
reads only flags it as novel. Each is answered exactly as a real query is (library/naming.py), and two
kinds of logistic models are fitted on the outcomes:
- per rank, P(the answer at this rank is right | winner's vote share, best score), with the absent
  case weighted to ``ABSENT_PRIOR`` of the queries (an assumption, recorded in library.json: with
  half the queries absent, no species call could ever be confident);
- P(species absent | best identity, or best similarity without alignment), with its ROC AUC,
  threshold 0.5 (both cases are drawn equally often, so 0.5 is the point of equal prior).
On the absent case alone, each rank above species also gets its bar (``bars_if_novel``): the confidence
from which those calls were right ``PUBLISHED_PRECISION`` of the time (library/naming.py states a
probably-missing species' rank only above it).
The lowest best score among the pretend queries (a low quantile) bounds where the fits hold: weaker
evidence than that gets no confident rank. The fitted numbers go into library.json; a library whose
records are too few or too uniform is not calibrated (the block says why) and states no rank.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from clibd_core.dna import to_acgtn
from clibd_core.library.build_status import Progress, no_progress
from clibd_core.library.dna_precision import dna_tower_in
from clibd_core.library.evidence import (
    Evidence,
    aligned_candidates,
    lineages,
    logistic,
    novelty_feature_names,
    novelty_features,
    rank_features,
    rank_votes,
    with_seed_candidates,
)
from clibd_core.library.identity import percent_identity
from clibd_core.library.kmers import kmer_profiles
from clibd_core.library.naming import (
    EMBEDDING_ONLY,
    PUBLISHED_PRECISION,
    make_monotone,
    rank_calls,
    species_not_backed,
)
from clibd_core.library.search import K_DEFAULT
from clibd_core.library.store import Library
from clibd_core.taxonomy import MISSING, RANKS

PAIRS = (("dna", "dna"), ("image", "image"), ("image", "dna"))
SAMPLES_PER_CASE = 500
ABSENT_PRIOR = 0.2  # share of queries whose species is missing from the library, for rank confidence
MIN_SAMPLES = 12  # a lab's first set: 3 species × 4 photos
SPECIES_FOLDS = 5  # the absent case leaves out the fold of the query's species (species_folds)
UNNAMED = -1
MIN_BAR_CALLS = 20  # a rank's bar (bars_if_novel) rests on at least this many absent-species calls
PARTIAL_SHARE = 0.5  # share of barcode self-queries cut to a partial read
PARTIAL_MIN_FRACTION = 0.6  # the shortest partial read, as a share of the reference (as in training)
SPREAD_SAMPLE = 300  # members per species aligned to their nearest conspecific
SPREAD_MARGIN = 0.5  # % identity below a species' own spread still accepted (bench/real_identify.py)
SUPPORT_QUANTILE = 0.005  # the weakest best-score the fits are trusted on (a low quantile, not one outlier)


def calibrate(library: Library, model, k: int = K_DEFAULT, seed: int = 0, progress: Progress = no_progress) -> dict:
    """``{"dna->dna": {"ranks": {rank: logistic}, "novelty": logistic + auroc, ...}, ...}``; ``model``
    (the library's) embeds the partial reads; ``progress(stage, done, total)`` counts pretend queries."""
    fitted = {}
    for query_modality, key_modality in PAIRS:
        if query_modality in library.modalities and key_modality in library.modalities:
            fitted.update(_calibrate_pair(library, model, query_modality, key_modality, k, seed, progress))
    return fitted


def partial_read(
    sequence: str, rng: np.random.Generator, shortest: float = PARTIAL_MIN_FRACTION, longest: float = 1.0
) -> str:
    """A random window of ``shortest`` to ``longest`` of ``sequence``, anywhere in it."""
    length = int(len(sequence) * rng.uniform(shortest, longest))
    start = int(rng.integers(0, len(sequence) - length + 1))
    return sequence[start : start + length]


def _calibrate_pair(
    library: Library, model, query_modality: str, key_modality: str, k: int, seed: int, progress
) -> dict[str, dict]:
    species, genus = library.column("species"), library.column("genus")
    folds = species_folds(species, seed)
    query_rows, key_rows = library.rows[query_modality], library.rows[key_modality]
    key_species = species[key_rows]
    per_species = Counter(key_species)
    rng = np.random.default_rng(seed)
    suspect = library.suspect_mask[query_rows]  # their label is probably wrong: no truth
    eligible = np.flatnonzero(
        [
            s != MISSING and per_species[s] >= 2 and not stray
            for s, stray in zip(species[query_rows], suspect, strict=True)
        ]
    )
    if len(eligible) < MIN_SAMPLES or len(per_species) < 3:
        return {
            f"{query_modality}->{key_modality}": {
                "fallback": f"too few references with a known species in ≥ 2 records ({len(eligible)})"
            }
        }
    picked = rng.choice(eligible, size=min(SAMPLES_PER_CASE, len(eligible)), replace=False)
    key_vectors = library.vectors(key_modality)
    query_vectors = (key_vectors if query_modality == key_modality else library.vectors(query_modality))[picked]
    aligned = query_modality == key_modality == "dna"  # barcodes are also answered with alignment
    samples, plain = [], []  # (evidence, query row, species absent?)
    if aligned:
        sequences = [to_acgtn(sequence) for sequence in library.barcodes.take(query_rows[picked])]
        cut = np.flatnonzero(rng.random(len(picked)) < PARTIAL_SHARE)
        for i in cut:
            sequences[i] = partial_read(sequences[i], rng)
        query_vectors = query_vectors.copy()
        with dna_tower_in(model, library.dna_precision):  # as a query against this library is embedded
            query_vectors[cut] = model.encode_barcodes([sequences[i] for i in cut], clean=False)
    use_kmers = aligned and "kmer" in library.indexes
    kmer_rows = library.rows["kmer"] if use_kmers else None
    kmer_keys = library.vectors("kmer") if use_kmers else None
    kmer_queries = kmer_profiles(sequences) if use_kmers else None
    stage = f"calibrating {query_modality}→{key_modality} confidence"
    for case, absent in enumerate((False, True)):
        for start in range(0, len(picked), 256):
            progress(stage, case * len(picked) + start, 2 * len(picked))
            similarities = query_vectors[start : start + 256] @ key_vectors.T
            for offset, sims in enumerate(similarities):
                row = query_rows[picked[start + offset]]
                top = _nearest(None, sims, _left_out(key_rows, row, absent, folds, genus), k)
                evidence = Evidence(key_rows[top], sims[top])
                plain.append((evidence, row, absent))
                if not aligned:
                    continue
                more = np.zeros(0, dtype=np.int64)
                if use_kmers:
                    left_out = _left_out(kmer_rows, row, absent, folds, genus)
                    more = kmer_rows[_nearest(kmer_keys, kmer_queries[start + offset], left_out, k)]
                vector, query = query_vectors[start + offset], sequences[start + offset]
                evidence = aligned_candidates(library, evidence, more, vector, query, k)
                hidden = np.zeros(len(library.metadata), dtype=bool)
                hidden[key_rows[_left_out(key_rows, row, absent, folds, genus)]] = True
                evidence = with_seed_candidates(library, evidence, vector, query, k, hidden)
                samples.append((evidence, row, absent))
    progress(stage, 2 * len(picked), 2 * len(picked))
    fitted = {f"{query_modality}->{key_modality}": _fit(library, samples or plain, k)}
    if aligned:
        fitted[EMBEDDING_ONLY] = _fit(library, plain, k)
        fitted["dna->dna"]["species_identity_floor"] = species_identity_floors(library, seed, progress)
    return fitted


def species_identity_floors(library: Library, seed: int = 0, progress: Progress = no_progress) -> dict[str, float]:
    """Per species with two or more barcodes: the lowest identity of a member to its nearest
    conspecific (aligned against the three closest by embedding), less ``SPREAD_MARGIN``. A query
    further from the species than any of its own members are from each other is probably a relative
    that the library lacks (library/naming.py refuses the species name then)."""
    species = library.column("species")
    rows = library.rows["dna"]
    members: dict[str, list[int]] = {}
    for position, row in enumerate(rows):
        if species[row] != MISSING:
            members.setdefault(species[row], []).append(position)
    rng = np.random.default_rng(seed)
    floors = {}
    for done, (name, positions) in enumerate(members.items()):
        if done % 100 == 0:
            progress("measuring each species' spread", done, len(members))
        if len(positions) < 2:
            continue
        positions = np.array(positions)
        if len(positions) > SPREAD_SAMPLE:
            positions = rng.choice(positions, SPREAD_SAMPLE, replace=False)
        vectors = library.vectors_at("dna", positions)
        similarities = vectors @ vectors.T
        np.fill_diagonal(similarities, -np.inf)
        nearest = np.argsort(-similarities, axis=1)[:, :3]
        sequences = [to_acgtn(barcode) for barcode in library.barcodes.take(rows[positions])]
        spread = min(
            max(percent_identity(sequences[i], sequences[j]) for j in candidates if i != j)
            for i, candidates in enumerate(nearest)
        )
        floors[name] = round(spread - SPREAD_MARGIN, 2)
    progress("measuring each species' spread", len(members), len(members))
    return floors


def _left_out(key_rows: np.ndarray, row: int, absent: bool, folds: np.ndarray, genus: np.ndarray) -> np.ndarray:
    """Which keys a self-query must not see: itself, or (``absent``) every record of the species in its
    species' fold and the records of its genus without a species name (``folds``, ``genus``: per
    metadata row, :func:`species_folds`)."""
    if not absent:
        return key_rows == row
    key_folds = folds[key_rows]
    return (key_folds == folds[row]) | ((key_folds == UNNAMED) & (genus[key_rows] == genus[row]))


def species_folds(species: np.ndarray, seed: int) -> np.ndarray:
    """Each metadata row's fold: the library's species dealt at random into ``SPECIES_FOLDS`` folds
    (``UNNAMED`` for rows without a species). A query of the absent case is answered without its whole
    fold, as a species is missing from a real library together with some of its relatives: left out
    alone, its congeners all stay, and genus calls of missing species look surer than they are."""
    names, codes = np.unique(species, return_inverse=True)
    dealt = np.random.default_rng(seed).permutation(len(names)) % SPECIES_FOLDS
    folds = dealt[codes]
    folds[species == MISSING] = UNNAMED
    return folds


def _nearest(keys: np.ndarray | None, query: np.ndarray, excluded: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k most similar keys, best first, leaving out ``excluded``; ``query`` is
    already the similarity row when ``keys`` is None."""
    similarities = query.copy() if keys is None else keys @ query
    similarities[excluded] = -np.inf
    top = np.argpartition(-similarities, min(k, len(similarities) - 1))[:k]
    top = top[np.argsort(-similarities[top])]
    return top[np.isfinite(similarities[top])]


def _fit(library: Library, samples: list, k: int) -> dict:
    top_scores = [evidence.top_score() for evidence, _, _ in samples if len(evidence.rows)]
    return {
        "samples": len(samples),
        "k": k,
        "absent_prior": ABSENT_PRIOR,
        "ranks": {rank: model for rank in RANKS if (model := _fit_rank(library, samples, rank))},
        # A query flagged novel is answered by models fitted on absent-species queries only: the mixed
        # fit above is right on average, but too sure of the genus of a species it does not hold.
        "ranks_if_novel": (if_novel := {r: m for r in RANKS if (m := _fit_rank(library, samples, r, True))}),
        # ... and stated only above each rank's bar: where those calls were right PUBLISHED_PRECISION of the time
        "bars_if_novel": _bars(library, samples, if_novel),
        "novelty": _fit_novelty(samples),
        # Below the weakest evidence the fits saw, they would extrapolate (library/naming.py caps it).
        "support": {"min_score": float(np.quantile(top_scores, SUPPORT_QUANTILE)), "quantile": SUPPORT_QUANTILE},
    }


def _fit_rank(library: Library, samples: list, rank: str, absent_only: bool = False) -> dict | None:
    truth = library.column(rank)
    features, outcomes, weights = [], [], []
    table = lineages(library)
    for evidence, row, absent in samples:
        if truth[row] == MISSING or not len(evidence.rows) or (absent_only and not absent):
            continue
        votes = rank_votes(evidence, table)
        if rank == "species" and species_not_backed(evidence, votes, library):
            continue  # never stated, whatever its confidence: it must not teach the species model
        if rank in votes:
            name, share = votes[rank]
            features.append(rank_features(share, evidence))
            outcomes.append(name == truth[row])
            weights.append(ABSENT_PRIOR if absent else 1 - ABSENT_PRIOR)
    return _logistic(features, outcomes, weights)


def _bars(library: Library, samples: list, models: dict) -> dict[str, dict]:
    """Per rank above species: the lowest confidence (as the absent-species models give it, made
    monotone) from which the absent-species queries' calls were right ``PUBLISHED_PRECISION`` of the time,
    with that precision and the share of them stated; 1.0 where no confidence reached it."""
    table = lineages(library)
    measured: dict[str, tuple[list, list]] = {rank: ([], []) for rank in RANKS[:-1]}
    for evidence, row, absent in samples:
        if not absent or not len(evidence.rows):
            continue
        votes = {rank: vote for rank, vote in rank_votes(evidence, table).items() if rank in models}
        calls = rank_calls(votes, evidence, models)
        make_monotone(calls)
        for rank, call in calls.items():
            truth = library.column(rank)[row]
            if rank in measured and truth != MISSING:
                measured[rank][0].append(call.confidence)
                measured[rank][1].append(call.name == truth)
    return {rank: bar for rank, (confidences, right) in measured.items() if (bar := _bar(confidences, right))}


def _bar(confidences: list[float], right: list[bool]) -> dict | None:
    """The bar may lie below ``CONFIDENT`` (genus calls of missing species that were right 99 % of the
    time from 0.75 up are stated from 0.75) or above it; it takes in at least ``MIN_BAR_CALLS`` calls."""
    if len(confidences) < MIN_SAMPLES:
        return None
    order = np.argsort(-np.asarray(confidences), kind="stable")
    values, outcomes = np.asarray(confidences)[order], np.asarray(right)[order]
    counts = np.arange(1, len(outcomes) + 1)
    precision = np.cumsum(outcomes) / counts
    last_of_ties = np.r_[values[1:] != values[:-1], True]  # a bar takes in every call of its confidence
    reached = np.flatnonzero(last_of_ties & (precision >= PUBLISHED_PRECISION) & (counts >= MIN_BAR_CALLS))
    if not len(reached):
        return {"min_confidence": 1.0, "precision": None, "stated_share": 0.0, "n": len(values)}
    last = reached[-1]
    return {
        "min_confidence": float(values[last]),
        "precision": float(precision[last]),
        "stated_share": float(counts[last] / len(values)),
        "n": len(values),
    }


def _fit_novelty(samples: list) -> dict | None:
    usable = [(evidence, absent) for evidence, _, absent in samples if len(evidence.rows)]
    if not usable:
        return None
    names = novelty_feature_names(usable[0][0])
    features = [novelty_features(evidence, names) for evidence, _ in usable]
    outcomes = [absent for _, absent in usable]
    model = _logistic(features, outcomes)
    if model is None or len(set(outcomes)) < 2:
        return None
    scores = np.array([logistic(model, values) for values in features])
    flagged = scores >= 0.5
    outcomes = np.asarray(outcomes)
    return {
        **model,
        "features": names,
        "threshold": 0.5,
        "auroc": float(roc_auc_score(outcomes, scores)),
        "true_positive_rate": float(flagged[outcomes].mean()),
        "false_positive_rate": float(flagged[~outcomes].mean()),
    }


def _logistic(features: list, outcomes: list, weights: list | None = None) -> dict | None:
    """A fitted logistic model as plain numbers; None with too few samples. When every answer was
    right (or every one wrong) the model is the constant rate with one pseudo-count each way, so a rank
    that never failed in calibration is not left to its raw vote share."""
    if len(outcomes) < MIN_SAMPLES:
        return None
    if len(set(outcomes)) < 2:
        rate = (sum(outcomes) + 1) / (len(outcomes) + 2)
        return {"coef": [0.0] * len(features[0]), "intercept": float(np.log(rate / (1 - rate))), "n": len(outcomes)}
    fitted = LogisticRegression(C=10.0, max_iter=1000).fit(
        np.asarray(features), np.asarray(outcomes), sample_weight=weights
    )
    return {"coef": fitted.coef_[0].tolist(), "intercept": float(fitted.intercept_[0]), "n": len(outcomes)}
