"""The policy for naming: how the evidence becomes the names a lab may publish.

The winner's vote share and the best score go through a logistic model fitted per rank on the library
itself (library/calibration.py) to give the confidence shown to the user. Then the honesty rules:
- a deeper rank is never more confident than the one above it;
- every rank is capped at ``UNSUPPORTED_CAP`` (with the reason) when the library could not be
  calibrated, when the query lies outside the library's domain (library/domain.py) or when its evidence
  is weaker than any the calibration saw;
- a second logistic model on the best identity (or similarity) flags queries whose species is probably
  absent from the library, as does an identity below the named species' own spread; those are answered
  by models fitted on absent species and never named at species;
- a query flagged so is stated at a rank only where the library's own species-held-out tests found such
  calls right ``PUBLISHED_PRECISION`` of the time (the rank's bar, fitted in calibration, above or below
  ``CONFIDENT``): its confidence is scaled so that the bar reads ``CONFIDENT`` (:func:`hold_to_bars`);
- a species whose BIN also carries another name, or whose genus the library's checklist says it holds
  only in part, is not named (``WITHHELD_CAP``, with the reason): the barcode cannot rule out the other;
- the deepest rank whose confidence reaches ``CONFIDENT`` (with every rank above it too) is the headline.
An image and a barcode of one specimen are combined rank by rank (:func:`combine`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from clibd_core.library.coverage import NO_BIN, bin_rivals, minor_bin, missing_relatives, outside_its_bins
from clibd_core.library.domain import distances, with_arrays
from clibd_core.library.evidence import (
    BIN_IDENTITY,
    Evidence,
    lineages,
    logistic,
    novelty_features,
    rank_features,
    rank_votes,
)
from clibd_core.library.identification import BinCall, Identification, Neighbour, RankCall
from clibd_core.library.store import Library
from clibd_core.taxonomy import MISSING, RANKS

CONFIDENT = 0.8  # a rank is stated (deepest_rank) when its calibrated confidence reaches this
EMBEDDING_ONLY = "dna->dna:embedding"  # calibration of barcode answers without alignment
NOVEL_MESSAGE = "no close reference: possibly undescribed, or a species missing from the library"
OUT_OF_DOMAIN_MESSAGE = (
    "this query is unlike anything in the library (far outside where its references' features lie): "
    "its model was probably never trained on such data, so no rank is stated"
)
UNSUPPORTED_CAP = 0.3  # the most confidence any rank keeps when the calibration cannot back it
PHOTOS_UNMEASURED_MESSAGE = (
    "the photo was matched to this library's barcodes, but the library holds no labelled photos to measure "
    "how often such matches are right: the nearest species are shown, no rank is stated with confidence "
    "(add labelled photos of some of its species to calibrate it)"
)
WITHHELD_CAP = 0.5  # a species another name may share (BIN, checklist): as likely as not
PUBLISHED_PRECISION = 0.99  # a rank of a probably-missing species is stated where such calls were this often right


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
    withheld = species_not_backed(evidence, votes, library)
    models = calibration.get("ranks", {})
    if result.novel:  # the species is probably absent: confidence as measured on absent species
        models = {**models, **calibration.get("ranks_if_novel", {})}
    result.ranks = rank_calls(votes, evidence, models)
    if result.novel:
        make_monotone(result.ranks)
        result.warnings += hold_to_bars(result.ranks, calibration.get("bars_if_novel", {}))
    limits = confidence_limits(evidence, library, pair, features, calibration)
    if limits:
        result.warnings += limits
        for call in result.ranks.values():
            call.confidence = min(call.confidence, UNSUPPORTED_CAP)
    if withheld and "species" in result.ranks:
        result.warnings.append(withheld)
        result.ranks["species"].confidence = min(result.ranks["species"].confidence, WITHHELD_CAP)
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


def rank_calls(votes: dict[str, tuple[str, float]], evidence: Evidence, models: dict) -> dict[str, RankCall]:
    """Each rank's call with its calibrated confidence (the raw vote share where no model was fitted)."""
    calls = {}
    for rank, (name, share) in votes.items():
        model = models.get(rank)
        calls[rank] = RankCall(name, logistic(model, rank_features(share, evidence)) if model else share, share)
    return calls


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


def species_not_backed(evidence: Evidence, votes: dict, library: Library) -> str:
    """Why the species voted for cannot be published (empty when it can), whatever its confidence:
    the BIN of its closest record also carries another species name that is not a stray mislabel
    (BOLDigger's flag: the barcode does not separate them), or holds only a minority of the species'
    records while the rest lie in other BINs (a species split over BINs), or has no BIN and lies outside the
    species' BINs, or the library's checklist expects
    relatives of the genus that the library lacks, any of which may share the barcode
    (library/coverage.py)."""
    if "species" not in votes:
        return ""
    name = votes["species"][0]
    members = np.flatnonzero(library.column("species")[evidence.rows] == name)
    closest = evidence.rows[members[0]] if len(members) else None
    if closest is not None and "bin" in library.metadata:
        bin_name = library.column("bin")[closest]
        rivals = bin_rivals(library, bin_name, name)
        if rivals:
            shared = ", ".join(f"{count} {other}" for other, count in list(rivals.items())[:3])
            return f"its BIN {bin_name} also holds {shared}: the barcode does not separate them, species not named"
        minority = minor_bin(library, bin_name, name)
        if minority:
            return (
                f"only {minority[0]} of the {minority[1]} {name} records with a BIN lie in {bin_name}, the rest "
                "in other BINs: they may be misidentified records of a species the library lacks, species not named"
            )
        outside = outside_its_bins(library, int(closest), name) if bin_name in NO_BIN else None
        if outside is not None:
            return (
                f"its closest {name} record has no BIN and lies at {outside:.1f} % from the {name} records that "
                "have one, outside their BINs: it may be a misidentified record of a species the library lacks, "
                "species not named"
            )
    missing = missing_relatives(library, votes.get("genus", (name.split()[0],))[0])
    if missing:
        listed = ", ".join(missing[:3]) + ("…" if len(missing) > 3 else "")
        return (
            f"the checklist expects {len(missing)} species of this genus that the library lacks ({listed}): "
            "one may share this barcode, species not named"
        )
    return ""


def confidence_limits(
    evidence: Evidence, library: Library, pair: str, features: np.ndarray | None, calibration: dict
) -> list[str]:
    """Why the calibrated confidences cannot be trusted for this query (empty when they can): a library
    too small or uniform to calibrate, a query outside the library's domain, or evidence weaker than any
    the calibration saw (the logistic models would extrapolate)."""
    if "ranks" not in calibration and pair == "image->dna" and "image" not in library.modalities:
        return [PHOTOS_UNMEASURED_MESSAGE]
    if "ranks" not in calibration:
        reason = calibration.get("fallback", "it was built before calibration existed")
        return [f"this library could not be calibrated ({reason}): no rank is stated with confidence"]
    modality = pair.split("->")[0]
    stated = library.facts.get("domain", {}).get(modality)
    domain = stated and library.derived(f"domain:{modality}", lambda: with_arrays(stated))
    # An aligned barcode is measured against its references by the alignment itself (the support floor
    # below refuses one further than any calibrated): its embedding's place says nothing more. Short reads
    # lie off the full barcodes' domain, and 71 of 5,000 real BOLD queries (Leray fragments, 100 %
    # identical to a reference) lost every rank to it.
    aligned = pair == "dna->dna" and evidence.identities is not None
    if domain and features is not None and not aligned and distances(domain, features)[0] > domain["threshold"]:
        return [OUT_OF_DOMAIN_MESSAGE]
    floor = calibration.get("support", {}).get("min_score")
    if floor is not None and evidence.top_score() < floor:
        aligned = evidence.identities is not None
        score = f"{100 * evidence.top_score():.1f} % identity" if aligned else f"similarity {evidence.top_score():.2f}"
        return [f"the closest reference ({score}) is further than any the calibration saw: no rank is supported"]
    return []


def hold_to_bars(ranks: dict[str, RankCall], bars: dict[str, dict]) -> list[str]:
    """Scale each rank's confidence so that its bar (the confidence from which calls of species missing
    from the library were right ``PUBLISHED_PRECISION`` of the time, library/calibration.py) reads
    ``CONFIDENT``: piecewise linear, order kept, 0 and 1 fixed. Returns why ranks were held back."""
    held = []
    for rank, call in ranks.items():
        bar = bars.get(rank, {}).get("min_confidence")
        if bar is None:
            continue
        if call.confidence < bar:
            if call.confidence >= CONFIDENT:
                held.append(
                    f"{rank} {call.name} not stated: for species missing from this library, {rank} calls this "
                    f"strong ({call.confidence:.2f}) were right less than {PUBLISHED_PRECISION:.0%} of the time "
                    "in its own tests"
                )
            call.confidence *= CONFIDENT / bar
        else:
            call.confidence = CONFIDENT + (call.confidence - bar) * (1 - CONFIDENT) / max(1 - bar, 1e-9)
    make_monotone(ranks)
    return held


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


def deepest_confident_rank(ranks: dict[str, RankCall], novel: bool) -> str | None:
    """The deepest rank reaching ``CONFIDENT`` with every rank above it; never species for a novel query.
    A rank no reference names (photos filed by species folder only: no order, no family) is passed over."""
    deepest = None
    for rank in RANKS:
        call = ranks.get(rank)
        if call is None:
            continue
        if call.confidence < CONFIDENT or (novel and rank == "species"):
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
