"""A BOLDigger3-compatible identification table from the local library, offline: per query the name at
the level BOLDigger's identity thresholds select (species 97 %, genus 95 %, family 90 %, order 85 %),
``pct_identity``, how many hits carry it (``records``, ``records_ratio``), the BIN and BOLDigger's flags,
plus what its users ask for: the top hit's process id, BIN and coordinates."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from clibd_core.fileio import atomic_file
from clibd_core.library.identification import Identification
from clibd_core.taxonomy import MISSING

THRESHOLDS = (("species", 97.0), ("genus", 95.0), ("family", 90.0), ("order", 85.0))
COLUMNS = ["id", "phylum", "class", "order", "family", "genus", "species", "pct_identity", "status", "records",
           "records_ratio", "selected_level", "BIN", "flags", "top_hit_process_id", "top_hit_bin",
           "top_hit_latitude", "top_hit_longitude", "top_hit_country"]  # fmt: skip
FLAGS = {
    2: "more than one taxon above the selected level's threshold",
    4: "the top hit is a single record",
    5: "the top hit's taxon is split over several BINs",
}


def _named(value: str) -> bool:
    return value not in (MISSING, "", "None", "nan")


def boldigger_row(result: Identification, library) -> dict:
    """One query's row (empty names and 'no-match' when it has no aligned hit)."""
    row = dict.fromkeys(COLUMNS, "")
    row["id"] = result.query_id
    hits = [n for n in result.neighbours if n.identity is not None]
    if result.error or not hits:
        row.update(status="no-match", flags=result.error or "no aligned hit")
        return row
    top = max(hits, key=lambda n: n.identity)
    for level, threshold in THRESHOLDS:
        above = [n for n in hits if n.identity >= threshold and _named(n.lineage.get(level, MISSING))]
        if not above:
            continue
        counts = Counter(n.lineage[level] for n in above)
        name, records = counts.most_common(1)[0]
        chosen = [n for n in above if n.lineage[level] == name]
        flags = []
        if len(counts) > 1:
            flags.append(2)
        if sum(n.lineage.get(level) == top.lineage.get(level) for n in hits) == 1:
            flags.append(4)
        if len({n.lineage.get("bin") for n in chosen if _named(n.lineage.get("bin", MISSING))}) > 1:
            flags.append(5)
        lineage = chosen[0].lineage
        ranks = ("order", "family", "genus", "species")
        row.update({rank: lineage.get(rank, "") for rank in ranks[: ranks.index(level) + 1]})
        bins = Counter(n.lineage.get("bin") for n in chosen if _named(n.lineage.get("bin", MISSING)))
        row.update(
            phylum="Arthropoda", **{"class": "Insecta"}, pct_identity=round(max(n.identity for n in chosen), 2),
            status="local library", records=records, records_ratio=round(records / len(above), 3),
            selected_level=level, BIN=bins.most_common(1)[0][0] if bins else "",
            flags=", ".join(str(f) for f in flags),
        )  # fmt: skip
        break
    else:
        row.update(status="no-match", pct_identity=round(top.identity, 2), flags="below every threshold")
    row.update(
        top_hit_process_id=top.id, top_hit_bin=top.lineage.get("bin", "") if _named(top.lineage.get("bin", "")) else "",
        top_hit_latitude=_number(library.column("latitude")[top.row]) if "latitude" in library.metadata else "",
        top_hit_longitude=_number(library.column("longitude")[top.row]) if "longitude" in library.metadata else "",
        top_hit_country=str(library.column("country")[top.row]) if "country" in library.metadata else "",
    )  # fmt: skip
    return row


def _number(value) -> object:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if number != number else number


def boldigger_table(results: list[Identification], library) -> pd.DataFrame:
    return pd.DataFrame([boldigger_row(r, library) for r in results], columns=COLUMNS)


def write_boldigger(results: list[Identification], library, out: str | Path) -> Path:
    """The table as CSV, or XLSX (BOLDigger's own output) by suffix; written atomically."""
    table = boldigger_table(results, library)
    out = Path(out)
    with atomic_file(out) as partial:
        if out.suffix.lower() == ".xlsx":
            table.to_excel(partial, index=False, engine="openpyxl")
        elif out.suffix.lower() == ".parquet":
            table.astype(str).to_parquet(partial, index=False)
        else:
            table.to_csv(partial, index=False)
    return out


def write_project_boldigger(project_name: str, out: str | Path, library_path: str | None = None,
                            url: str | None = None) -> dict:  # fmt: skip
    """The table for every barcode of a project (its specimens' longest reads), against ``library_path``."""
    from sqlalchemy import select

    from clibd_core.library.identification import Query
    from clibd_core.library.search import identify
    from clibd_core.projects.db import ProjectError, session_scope
    from clibd_core.projects.registry import get_project
    from clibd_core.projects.schema import QueryItem, Specimen
    from clibd_core.workspace import Workspace, load_cached_library, load_cached_model

    with session_scope(url) as session:
        project = get_project(session, project_name)
        reads: dict[str, str] = {}
        for sample, sequence in session.execute(
            select(Specimen.sample_id, QueryItem.sequence).join(QueryItem, QueryItem.specimen_id == Specimen.id)
            .where(Specimen.project_id == project.id, QueryItem.kind == "barcode")
        ):  # fmt: skip
            if len(sequence) > len(reads.get(sample, "")):
                reads[sample] = sequence
    if not reads:
        raise ProjectError(f"project {project_name} has no barcodes")
    library = load_cached_library(Path(library_path or Workspace().active()[0]))
    model = load_cached_model(str(library.model_path))
    results = identify(library, model, [Query(s, barcode=b) for s, b in sorted(reads.items())], k=25)
    write_boldigger(results, library, out)
    return {"table": str(out), "queries": len(results), "library": library.name}
