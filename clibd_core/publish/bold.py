"""BOLD's specimen-data submission workbook from a project: the four sheets of BOLD's template (Voucher
Info, Taxonomy, Specimen Details, Collection Data) keyed by Sample ID, the taxonomy as determined (down to
the stated rank), and one 8 × 12 plate record per plate. projects/sheets.py reads it back."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from clibd_core.fileio import atomic_file
from clibd_core.projects.db import ProjectError, session_scope
from clibd_core.projects.registry import get_project
from clibd_core.projects.schema import Specimen
from clibd_core.projects.sheets import PLATE_ROWS

SHEETS = {
    "Voucher Info": ["Sample ID", "Field ID", "Museum ID", "Collection Code", "Institution Storing"],
    "Taxonomy": ["Sample ID", "Phylum", "Class", "Order", "Family", "Subfamily", "Genus", "Species", "Identifier",
                 "Identifier Email", "Identification Method", "Taxonomy Notes"],
    "Specimen Details": ["Sample ID", "Sex", "Reproduction", "Life Stage", "Extra Info", "Notes", "Voucher Status",
                         "Tissue Descriptor", "External URLs", "Associated Taxa", "Associated Specimens"],
    "Collection Data": ["Sample ID", "Collectors", "Collection Date", "Country/Ocean", "State/Province", "Region",
                        "Sector", "Exact Site", "Lat", "Lon", "Elev", "Coordinate Accuracy", "Event Time",
                        "Sampling Protocol", "Collection Notes", "Site Code"],
}  # fmt: skip


def _method(specimen: Specimen) -> str:
    record = specimen.determination
    if record is None:
        return ""
    if record.kind == "human":
        return f"{record.action} by {record.reviewer} (CLIBD review)"
    return f"CLIBD {record.query_type} identification, library {record.library} {record.library_version}"


def _rows(specimen: Specimen) -> dict[str, list]:
    record, event = specimen.determination, specimen.event
    lineage = record.lineage if record is not None and specimen.status != "not_identifiable" else {}
    extra = specimen.extra
    ev = (lambda name: getattr(event, name) if event is not None else "")  # noqa: E731
    return {
        "Voucher Info": [specimen.sample_id, specimen.field_id, specimen.museum_id, extra.get("Collection Code", ""),
                         extra.get("Institution Storing", "")],
        "Taxonomy": [specimen.sample_id, specimen.given_taxonomy.get("phylum", "Arthropoda"),
                     specimen.given_taxonomy.get("class", "Insecta"), lineage.get("order", ""),
                     lineage.get("family", ""), "", lineage.get("genus", ""), lineage.get("species", ""),
                     record.reviewer if record is not None and record.kind == "human" else "",
                     "", _method(specimen), "; ".join(specimen.review_reasons)],
        "Specimen Details": [specimen.sample_id, extra.get("Sex", ""), extra.get("Reproduction", ""),
                             extra.get("Life Stage", ""), extra.get("Extra Info", ""),
                             "control well" if specimen.control else extra.get("Notes", ""),
                             extra.get("Voucher Status", ""), extra.get("Tissue Descriptor", ""), "", "", ""],
        "Collection Data": [specimen.sample_id, ev("collector"), ev("event_date"), ev("country"),
                            ev("state_province"), extra.get("Region", ""), extra.get("Sector", ""),
                            ev("locality"), ev("latitude"), ev("longitude"), extra.get("Elev", ""),
                            ev("coordinate_uncertainty_m"), ev("event_time"), ev("method"), "", ev("site")],
    }  # fmt: skip


def write_bold_workbook(project_name: str, out: str | Path, url: str | None = None) -> dict:
    """Every specimen of the project (controls marked), with its plate records; returns counts."""
    from openpyxl import Workbook

    with session_scope(url) as session:
        project = get_project(session, project_name)
        specimens = session.scalars(
            select(Specimen)
            .where(Specimen.project_id == project.id)
            .order_by(Specimen.plate, Specimen.well, Specimen.sample_id)
            .options(selectinload(Specimen.event), selectinload(Specimen.determination))
        ).all()
        if not specimens:
            raise ProjectError(f"project {project.name} has no specimens to submit")
        book = Workbook()
        book.remove(book.active)
        sheets = {name: book.create_sheet(name) for name in SHEETS}
        for name, header in SHEETS.items():
            sheets[name].append(header)
        plates: dict[str, dict[str, str]] = {}
        for specimen in specimens:
            for name, row in _rows(specimen).items():
                sheets[name].append(["" if value is None else value for value in row])
            if specimen.plate and specimen.well:
                plates.setdefault(specimen.plate, {})[specimen.well] = specimen.sample_id
    for plate, wells in plates.items():
        grid = book.create_sheet(f"Plate {plate}"[:31])
        grid.append([plate, *range(1, 13)])
        for row in PLATE_ROWS:
            grid.append([row, *(wells.get(f"{row}{col:02d}", "") for col in range(1, 13))])
    with atomic_file(out) as partial:
        book.save(partial)
    return {"workbook": str(out), "specimens": len(specimens), "plates": len(plates)}
