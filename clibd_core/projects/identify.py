"""Identify a project: every specimen not yet identified by the given (library, model) pair, through
library.search.identify, photo and barcode combined where a specimen has both.

Work goes in batches, each stored in one transaction: a crash or a cancel loses at most the batch in
flight, and the next run picks up the specimens still missing an identification by this pair. A new
library version adds machine identifications beside the old ones; nothing is replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import exists, func, select
from sqlalchemy.orm import selectinload

from clibd_core.projects.db import session_scope
from clibd_core.projects.intake import media_dir
from clibd_core.projects.registry import get_project
from clibd_core.projects.review import refresh_determination, watch_list
from clibd_core.projects.schema import IdentificationRecord, Specimen

BATCH = 256
NEIGHBOURS_KEPT = 5  # the nearest references stored with a machine identification, for review


def _not_done(project_id: int, library, fingerprint: str):
    """Specimens of the project (controls aside) without a machine identification by this pair."""
    done = exists().where(
        IdentificationRecord.specimen_id == Specimen.id,
        IdentificationRecord.kind == "machine",
        IdentificationRecord.model_fingerprint == fingerprint,
        IdentificationRecord.library == library.name,
        IdentificationRecord.library_version == library.version_dir.name,
    )
    return (Specimen.project_id == project_id, Specimen.control.is_(False), ~done)


def _pending(session, project_id: int, library, fingerprint: str, after: int, limit: int):
    return session.scalars(
        select(Specimen)
        .where(*_not_done(project_id, library, fingerprint), Specimen.id > after)
        .order_by(Specimen.id)
        .limit(limit)
        .options(selectinload(Specimen.queries), selectinload(Specimen.identifications))
    ).all()


def _query(specimen: Specimen, media: Path, can_take_photos: bool):
    from clibd_core.library.identification import Query

    barcodes = sorted((q.sequence for q in specimen.queries if q.kind == "barcode"), key=len, reverse=True)
    photos = [media / q.media_path for q in specimen.queries if q.kind == "photo"]
    if not barcodes and not (photos and can_take_photos):
        return None
    return Query(specimen.sample_id, barcode=barcodes[0] if barcodes else None,
                 image=photos[0] if photos and can_take_photos else None)  # fmt: skip


def _record(result, library, model_path: str, fingerprint: str) -> IdentificationRecord:
    stated = result.deepest_rank
    ranks = {rank: {"name": c.name, "confidence": round(c.confidence, 4)} for rank, c in result.ranks.items()}
    lineage = {}
    for rank, call in ranks.items():
        lineage[rank] = call["name"]
        if rank == stated:
            break
    top = result.neighbours[0] if result.neighbours else None
    return IdentificationRecord(
        kind="machine",
        taxon=ranks[stated]["name"] if stated else "",
        rank=stated or "",
        lineage=lineage if stated else {},
        model=model_path,
        model_fingerprint=fingerprint,
        library=library.name,
        library_version=library.version_dir.name,
        query_type=result.query_type,
        ranks=ranks,
        novel=bool(result.novel),
        novelty=round(float(result.novelty), 4),
        agreement=result.agreement,
        bin=result.bin.name if result.bin else "",
        bin_identity=round(result.bin.identity, 2) if result.bin else None,
        top_identity=round(top.identity, 2) if top is not None and top.identity is not None else None,
        neighbours=[
            {"id": n.id, **n.lineage, "similarity": round(n.similarity, 4),
             "identity": None if n.identity is None else round(n.identity, 2)}
            for n in result.neighbours[:NEIGHBOURS_KEPT]
        ],  # fmt: skip
        warnings=list(result.warnings),
    )


def identify_project(
    project_name: str,
    library_path: str | Path | None = None,
    model_path: str | Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    batch: int = BATCH,
    url: str | None = None,
) -> dict:
    """Identify what the pair has not identified yet; returns counts, and why any specimen was left out."""
    from clibd_core.library.search import identify, photo_way_forward
    from clibd_core.workspace import Workspace, load_cached_library, load_cached_model

    active_library, active_model = Workspace().active()
    library = load_cached_library(Path(library_path or active_library))
    model_path = str(Path(model_path or active_model).resolve())
    model = load_cached_model(model_path)
    library.check_model(model)
    fingerprint = library.fingerprint
    can_take_photos = "image" in model.config.modalities
    media = media_dir(project_name)
    with session_scope(url) as session:
        project = get_project(session, project_name)
        project_id, watch = project.id, watch_list(project)
        total = session.scalar(select(func.count()).where(*_not_done(project_id, library, fingerprint)))
    summary = {"project": project_name, "library": f"{library.name} {library.version_dir.name}",
               "model": model_path, "to_identify": total, "identified": 0, "left_out": [], "state": "done"}  # fmt: skip
    photo_only, last, done = 0, 0, 0
    while True:
        if should_stop and should_stop():
            summary["state"] = "cancelled"
            break
        with session_scope(url) as session:
            specimens = _pending(session, project_id, library, fingerprint, last, batch)
            if not specimens:
                break
            last = specimens[-1].id
            queries = {s.sample_id: _query(s, media, can_take_photos) for s in specimens}
            photo_only += sum(q is None and any(x.kind == "photo" for x in s.queries) for s, q in
                              zip(specimens, queries.values(), strict=True))  # fmt: skip
            asked = [q for q in queries.values() if q is not None]
            results = {r.query_id: r for r in identify(library, model, asked)} if asked else {}
            for specimen in specimens:
                result = results.get(specimen.sample_id)
                if result is None:
                    if queries[specimen.sample_id] is None and not specimen.queries:
                        summary["left_out"].append(f"{specimen.sample_id}: no barcode or photo yet")
                    continue
                if result.error:
                    summary["left_out"].append(f"{specimen.sample_id}: {result.error}")
                    continue
                specimen.identifications.append(_record(result, library, model_path, fingerprint))
                refresh_determination(specimen, watch)
                summary["identified"] += 1
            done += len(specimens)
        if progress:
            progress(done, total)
    if photo_only:
        summary["left_out"].append(f"{photo_only} specimens have only photos: {photo_way_forward(library.name)}")
    return summary
