"""Identification: queries in, one answer per query out. Barcodes are embedded, searched, aligned and
widened by seeds (library/evidence.py); images are embedded and searched; each query's evidence is
named by the library's policy (library/naming.py); an image and a barcode of one specimen are combined.
Bad queries get an error on their own row, never a failed batch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from clibd_core.data.transforms import ImageError, open_image
from clibd_core.dna import inspect_barcode, parse_sequences, to_acgtn
from clibd_core.library.dna_precision import dna_tower_in
from clibd_core.library.evidence import Evidence, aligned_candidates, with_seed_candidates
from clibd_core.library.identification import Identification, Query
from clibd_core.library.kmers import kmer_profiles
from clibd_core.library.naming import NOVEL_MESSAGE, answer, combine
from clibd_core.library.store import Library, LibraryError
from clibd_core.taxonomy import RANKS

K_DEFAULT = 10


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
        with dna_tower_in(model, library.dna_precision):
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
