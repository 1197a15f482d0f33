"""A project's verified records as a training source: every specimen a person verified (agreed or
corrected), its photos and longest barcode, labelled with the person's lineage (down to the rank they
stated, never deeper), written in the images-CSV layout ``clibd train`` reads, with a manifest of what it
holds (which project, which specimens, which identifications) for the model to keep."""

from __future__ import annotations

import csv
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from clibd_core.fileio import atomic_file, write_json
from clibd_core.projects.db import ProjectError, session_scope
from clibd_core.projects.intake import media_dir
from clibd_core.projects.registry import get_project
from clibd_core.projects.review import standing
from clibd_core.projects.schema import Specimen
from clibd_core.taxonomy import RANKS

COLUMNS = ["id", "file", "barcode", *RANKS]


def write_training_set(project_name: str, url: str | None = None) -> tuple[Path, dict]:
    """The CSV (in the project's folder, beside its photos) and its manifest."""
    media = media_dir(project_name)
    with session_scope(url) as session:
        project = get_project(session, project_name)
        specimens = session.scalars(
            select(Specimen)
            .where(Specimen.project_id == project.id, Specimen.status == "verified")
            .order_by(Specimen.id)
            .options(selectinload(Specimen.queries), selectinload(Specimen.identifications))
        ).all()
        rows, learned = [], []
        for specimen in specimens:
            human = standing(specimen.identifications)[-1]
            barcodes = sorted((q.sequence for q in specimen.queries if q.kind == "barcode"), key=len, reverse=True)
            photos = [q.media_path for q in specimen.queries if q.kind == "photo"]
            labels = {rank: human.lineage.get(rank, "") for rank in RANKS}
            for number, photo in enumerate(photos or [None]):
                rows.append({
                    "id": specimen.sample_id if number == 0 else f"{specimen.sample_id}#{number + 1}",
                    "file": f"../media/{photo}" if photo else "",
                    "barcode": barcodes[0] if barcodes else "", **labels,
                })  # fmt: skip
            learned.append({"sample_id": specimen.sample_id, "identification": human.id, "by": human.reviewer,
                            "taxon": human.taxon, "rank": human.rank, "photos": len(photos),
                            "barcode": bool(barcodes)})  # fmt: skip
    if not rows:
        raise ProjectError(f"project {project_name} has no verified records yet: review some first (Review tab)")
    folder = media.parent / "training"
    out = folder / f"verified-{time.strftime('%Y%m%d-%H%M%S')}.csv"
    with atomic_file(out) as partial:
        with open(partial, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    manifest = {
        "project": project_name,
        "source": str(out),
        "verified_specimens": len(learned),
        "rows": len(rows),
        "modalities": sorted({"text", *(["image"] if any(r["file"] for r in rows) else []),
                              *(["dna"] if any(r["barcode"] for r in rows) else [])}),  # fmt: skip
        "records": learned,
    }
    write_json(out.with_suffix(".manifest.json"), manifest)
    return out, manifest
