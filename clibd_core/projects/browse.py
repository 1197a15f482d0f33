"""A project's specimens as rows for a table (the app's Projects tab), filtered by status."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session, aliased

from clibd_core.projects.schema import Event, IdentificationRecord, Project, QueryItem, Specimen

COLUMNS = ["sample id", "plate", "well", "site", "date", "barcodes", "photos", "status", "determination", "review"]


def specimen_rows(session: Session, project: Project, status: str | None = None, limit: int = 500) -> list[list]:
    counts = (
        select(QueryItem.specimen_id, QueryItem.kind, func.count().label("n"))
        .group_by(QueryItem.specimen_id, QueryItem.kind)
        .subquery()
    )
    barcodes, photos = aliased(counts), aliased(counts)
    query = (
        select(Specimen, Event.site, Event.event_date, barcodes.c.n, photos.c.n, IdentificationRecord)
        .outerjoin(Event, Event.id == Specimen.event_id)
        .outerjoin(barcodes, (barcodes.c.specimen_id == Specimen.id) & (barcodes.c.kind == "barcode"))
        .outerjoin(photos, (photos.c.specimen_id == Specimen.id) & (photos.c.kind == "photo"))
        .outerjoin(IdentificationRecord, IdentificationRecord.id == Specimen.determination_id)
        .where(Specimen.project_id == project.id)
        .order_by(Specimen.plate, Specimen.well, Specimen.sample_id)
        .limit(limit)
    )
    if status:
        query = query.where(Specimen.status == status)
    rows = []
    for specimen, site, day, n_barcodes, n_photos, determination in session.execute(query):
        named = f"{determination.rank} {determination.taxon}".strip() if determination else ""
        who = f" ({determination.reviewer})" if determination is not None and determination.reviewer else ""
        rows.append([
            specimen.sample_id, specimen.plate, specimen.well + (" control" if specimen.control else ""), site or "",
            day or "", n_barcodes or 0, n_photos or 0, specimen.status, (named or "no rank stated") + who,
            "; ".join(specimen.review_reasons),
        ])  # fmt: skip
    return rows
