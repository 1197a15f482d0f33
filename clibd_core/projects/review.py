"""People's work on a project: identifications (agree, correct, not identifiable, withdraw), the
determination derived from them, the queue of what most needs a person, and human–machine agreement.

Machine identifications are never changed. The determination is the latest standing human
identification (the specimen is then *verified*, or *not identifiable*), else the latest machine one.
Every change moves the specimen's ``version``: a reviewer acting on a version that is no longer current
(someone else reviewed it, a new library identified it) is refused with what changed, and nothing is lost.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload
from sqlalchemy.orm.exc import StaleDataError

from clibd_core.fileio import atomic_file
from clibd_core.projects.db import ProjectError, session_scope
from clibd_core.projects.registry import get_project
from clibd_core.projects.schema import IdentificationRecord, Project, QueryItem, Specimen, now
from clibd_core.taxonomy import MISSING, RANKS
from clibd_core.workspace import workspace_root

ACTIONS = ("agree", "correct", "not_identifiable", "withdraw")
CONFIDENT = 0.8  # as library.naming.CONFIDENT: a rank below it is "low confidence" here


class StaleEdit(ProjectError):
    """The specimen changed since the reviewer saw it: nothing was saved."""


@dataclass
class Taxon:
    name: str
    rank: str
    lineage: dict[str, str]


# -- determinations ------------------------------------------------------------------------------------
def standing(identifications: list[IdentificationRecord]) -> list[IdentificationRecord]:
    return [i for i in identifications if i.kind == "human" and i.withdrawn_at is None]


def latest_machine(identifications: list[IdentificationRecord]) -> IdentificationRecord | None:
    return next((i for i in reversed(identifications) if i.kind == "machine"), None)


def review_reasons(machine: IdentificationRecord, watch: set[str]) -> tuple[float, list[str]]:
    """Why a machine identification needs a person, and how urgently (higher first)."""
    priority, reasons = 0.0, []
    if machine.novel:
        priority, reasons = priority + 4, [*reasons, "flagged novel: possibly a species missing from the library"]
    watched = sorted({call["name"] for call in machine.ranks.values()} & watch)
    if watched:
        priority, reasons = priority + 3, [*reasons, f"on the watch list ({', '.join(watched)})"]
    if "disagree" in machine.agreement:
        priority, reasons = priority + 2, [*reasons, f"photo and barcode disagree: {machine.agreement}"]
    species = machine.ranks.get("species", {}).get("confidence", 0.0)
    if species < CONFIDENT:
        stated = f"{machine.rank} {machine.taxon}" if machine.taxon else "no rank stated"
        reasons.append(f"low confidence (species {species:.2f}; {stated})")
    return priority + (1.0 - species), reasons


def refresh_determination(specimen: Specimen, watch: set[str]) -> None:
    """Derive the specimen's determination, status and place in the queue from its identifications."""
    humans = standing(specimen.identifications)
    machine = latest_machine(specimen.identifications)
    if humans:
        specimen.determination = humans[-1]
        specimen.status = "not_identifiable" if humans[-1].action == "not_identifiable" else "verified"
        specimen.review_priority, specimen.review_reasons = 0.0, []
    elif machine is not None:
        specimen.determination, specimen.status = machine, "machine"
        specimen.review_priority, specimen.review_reasons = review_reasons(machine, watch)
    else:
        specimen.determination, specimen.status = None, "new"
        specimen.review_priority, specimen.review_reasons = 0.0, []


def watch_list(project: Project) -> set[str]:
    return {taxon.name for taxon in project.watch_taxa}


def local_reviewer() -> str:
    """Who reviews on loopback (no logins): ``CLIBD_REVIEWER``, else the name set once for the workspace
    (``reviewer.txt``), else the computer's login name."""
    import getpass

    saved = workspace_root() / "reviewer.txt"
    if os.environ.get("CLIBD_REVIEWER"):
        return os.environ["CLIBD_REVIEWER"].strip()
    if saved.is_file() and saved.read_text().strip():
        return saved.read_text().strip()
    return getpass.getuser()


def set_local_reviewer(name: str) -> str:
    if not name.strip():
        raise ProjectError("a reviewer needs a name")
    workspace_root().mkdir(parents=True, exist_ok=True)
    with atomic_file(workspace_root() / "reviewer.txt") as partial:
        partial.write_text(name.strip() + "\n")
    return name.strip()


# -- the taxonomy a correction is chosen from --------------------------------------------------------
class TaxonIndex:
    """Every name of a library's taxonomy at any rank, with the lineage above it."""

    def __init__(self, library) -> None:
        self.taxa: dict[str, Taxon] = {}
        columns = {rank: library.column(rank) for rank in RANKS}
        for rank_index, rank in enumerate(RANKS):
            names, first = _unique_first(columns[rank])
            for name, row in zip(names, first, strict=True):
                if name in (MISSING, "") or name in self.taxa:
                    continue
                lineage = {r: str(columns[r][row]) for r in RANKS[: rank_index + 1]}
                self.taxa[name] = Taxon(name, rank, {r: v for r, v in lineage.items() if v != MISSING})

    def find(self, name: str, rank: str | None = None) -> Taxon:
        taxon = self.taxa.get(name.strip()) or next(
            (t for n, t in self.taxa.items() if n.lower() == name.strip().lower()), None
        )
        if taxon is None:
            close = difflib.get_close_matches(name.strip(), list(self.taxa), n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ProjectError(f"{name} is not in the library's taxonomy{hint}")
        if rank and rank != taxon.rank:
            raise ProjectError(f"{taxon.name} is a {taxon.rank} in the library's taxonomy, not a {rank}")
        return taxon

    def names(self) -> list[str]:
        return sorted(self.taxa)


def _unique_first(values):
    import numpy as np

    names, first = np.unique(np.asarray(values, dtype=object).astype(str), return_index=True)
    return names.tolist(), first.tolist()


# -- review actions ----------------------------------------------------------------------------------
def get_specimen(session: Session, project: Project, sample_id: str) -> Specimen:
    specimen = session.scalar(
        select(Specimen)
        .where(Specimen.project_id == project.id, Specimen.sample_id == sample_id.strip())
        .options(selectinload(Specimen.identifications))
    )
    if specimen is None:
        raise ProjectError(f"project {project.name} has no specimen {sample_id}")
    return specimen


def _changed_since(specimen: Specimen, seen_version: int) -> str:
    last = specimen.identifications[-1] if specimen.identifications else None
    who = (last.reviewer or "the machine") if last else "someone"
    what = f"{last.action or 'identified'} {last.taxon}".strip() if last else "changed"
    return (
        f"{specimen.sample_id} changed since you opened it ({who}: {what}): nothing was saved; "
        "reload it to see the change, then act again"
    )


def review(
    session: Session,
    project: Project,
    sample_id: str,
    reviewer: str,
    action: str,
    taxon: Taxon | None = None,
    remarks: str = "",
    seen_version: int | None = None,
) -> Specimen:
    """One reviewer's action on one specimen (in the caller's transaction)."""
    if action not in ACTIONS:
        raise ProjectError(f"unknown review action {action!r}: one of {', '.join(ACTIONS)}")
    if not reviewer.strip():
        raise ProjectError("a review needs the reviewer's name")
    specimen = get_specimen(session, project, sample_id)
    if seen_version is not None and seen_version != specimen.version:
        raise StaleEdit(_changed_since(specimen, seen_version))
    if action == "withdraw":
        own = [i for i in standing(specimen.identifications) if i.reviewer == reviewer]
        if not own:
            raise ProjectError(f"{reviewer} has no standing identification of {specimen.sample_id} to withdraw")
        own[-1].withdrawn_at = now()
    else:
        record = IdentificationRecord(kind="human", reviewer=reviewer, action=action, remarks=remarks)
        if action == "agree":
            current = specimen.determination
            if current is None or not current.taxon:
                raise ProjectError(
                    f"{specimen.sample_id} has no stated name to agree with: correct it with a taxon, "
                    "or mark it not identifiable"
                )
            record.taxon, record.rank, record.lineage = current.taxon, current.rank, dict(current.lineage)
            record.agrees_with_id = current.id
        elif action == "correct":
            if taxon is None:
                raise ProjectError("a correction needs the taxon (any rank of the library's taxonomy)")
            record.taxon, record.rank, record.lineage = taxon.name, taxon.rank, dict(taxon.lineage)
        specimen.identifications.append(record)
    refresh_determination(specimen, watch_list(project))
    session.flush()
    return specimen


def review_specimen(
    project_name: str,
    sample_id: str,
    reviewer: str,
    action: str,
    taxon_name: str | None = None,
    rank: str | None = None,
    remarks: str = "",
    seen_version: int | None = None,
    taxa: TaxonIndex | None = None,
    url: str | None = None,
) -> dict:
    """:func:`review` in a transaction of its own; a concurrent change is refused as a :class:`StaleEdit`."""
    try:
        with session_scope(url) as session:
            project = get_project(session, project_name)
            taxon = None
            if action == "correct":
                if not taxon_name:
                    raise ProjectError("a correction needs the taxon (--taxon NAME)")
                taxon = taxa.find(taxon_name, rank) if taxa else Taxon(taxon_name.strip(), rank or "", {})
                if not taxon.rank:
                    raise ProjectError(f"give the rank of {taxon.name} (--rank), or choose it from the library")
                taxon.lineage = taxon.lineage or {taxon.rank: taxon.name}
            specimen = review(session, project, sample_id, reviewer, action, taxon, remarks, seen_version)
            return specimen_view(specimen)
    except StaleDataError as error:  # another reviewer's transaction committed first
        raise StaleEdit(
            f"{sample_id} was changed by someone else while you saved: nothing was saved; reload it and act again"
        ) from error


# -- reading -----------------------------------------------------------------------------------------
def identification_view(record: IdentificationRecord) -> dict:
    base = {
        "id": record.id,
        "kind": record.kind,
        "at": record.created_at.isoformat() if record.created_at else "",
        "taxon": record.taxon,
        "rank": record.rank,
        "lineage": record.lineage,
        "withdrawn": record.withdrawn_at is not None,
    }
    if record.kind == "human":
        return {**base, "reviewer": record.reviewer, "action": record.action, "remarks": record.remarks}
    return {
        **base,
        "model": record.model,
        "library": f"{record.library} {record.library_version}",
        "query_type": record.query_type,
        "ranks": record.ranks,
        "novel": record.novel,
        "novelty": record.novelty,
        "agreement": record.agreement,
        "bin": record.bin,
        "bin_identity": record.bin_identity,
        "top_identity": record.top_identity,
        "neighbours": record.neighbours,
        "warnings": record.warnings,
    }


def specimen_view(specimen: Specimen) -> dict:
    event = specimen.event
    determination = specimen.determination
    return {
        "sample_id": specimen.sample_id,
        "field_id": specimen.field_id,
        "museum_id": specimen.museum_id,
        "plate": specimen.plate,
        "well": specimen.well,
        "control": specimen.control,
        "event": {} if event is None else {
            k: getattr(event, k) for k in (
                "site", "event_date", "event_time", "country", "country_code", "state_province", "locality",
                "latitude", "longitude", "coordinate_uncertainty_m", "collector", "method", "deployment",
            )
        },  # fmt: skip
        "given_taxonomy": specimen.given_taxonomy,
        "extra": specimen.extra,
        "barcodes": [q.sequence for q in specimen.queries if q.kind == "barcode"],
        "photos": [q.media_path for q in specimen.queries if q.kind == "photo"],
        "status": specimen.status,
        "determination": None if determination is None else identification_view(determination),
        "review_reasons": specimen.review_reasons,
        "identifications": [identification_view(i) for i in specimen.identifications],
        "version": specimen.version,
    }


def next_for_review(session: Session, project: Project, skip: list[str] = ()) -> Specimen | None:
    """The specimen that most needs a person: machine-identified, unverified, highest priority first."""
    query = (
        select(Specimen)
        .where(Specimen.project_id == project.id, Specimen.status == "machine")
        .order_by(Specimen.review_priority.desc(), Specimen.id)
        .limit(1)
        .options(selectinload(Specimen.identifications), selectinload(Specimen.queries))
    )
    if skip:
        query = query.where(Specimen.sample_id.not_in(list(skip)))
    return session.scalar(query)


def review_queue(session: Session, project: Project, limit: int = 20) -> list[dict]:
    """The first ``limit`` specimens of the queue, as the CLI lists them."""
    rows = session.execute(
        select(Specimen.sample_id, Specimen.review_reasons, IdentificationRecord.rank, IdentificationRecord.taxon)
        .outerjoin(IdentificationRecord, IdentificationRecord.id == Specimen.determination_id)
        .where(Specimen.project_id == project.id, Specimen.status == "machine")
        .order_by(Specimen.review_priority.desc(), Specimen.id)
        .limit(limit)
    )
    return [
        {"sample_id": s, "reasons": reasons, "determination": f"{rank} {taxon}".strip() or "no rank stated"}
        for s, reasons, rank, taxon in rows
    ]


def agreement(session: Session, project: Project) -> dict[str, dict]:
    """Per rank, how often the machine's name (the last before the person's) matched the verified one."""
    verified = session.scalars(
        select(Specimen)
        .where(Specimen.project_id == project.id, Specimen.status == "verified")
        .options(selectinload(Specimen.identifications))
    )
    counts = {rank: [0, 0] for rank in RANKS}
    for specimen in verified:
        human = standing(specimen.identifications)[-1]
        before = [i for i in specimen.identifications if i.id < human.id]
        machine = latest_machine(before) or latest_machine(specimen.identifications)
        if machine is None:
            continue
        for rank in RANKS:
            if rank in human.lineage and rank in machine.ranks:
                counts[rank][0] += 1
                counts[rank][1] += machine.ranks[rank]["name"] == human.lineage[rank]
    return {
        rank: {"compared": n, "agreed": k, "rate": round(k / n, 4) if n else None}
        for rank, (n, k) in counts.items()
    }


def project_status(session: Session, project: Project) -> dict:
    by_status = dict(
        session.execute(
            select(Specimen.status, func.count()).where(Specimen.project_id == project.id).group_by(Specimen.status)
        ).all()
    )
    kinds = dict(
        session.execute(
            select(QueryItem.kind, func.count(func.distinct(QueryItem.specimen_id)))
            .join(Specimen, Specimen.id == QueryItem.specimen_id)
            .where(Specimen.project_id == project.id)
            .group_by(QueryItem.kind)
        ).all()
    )
    controls = session.scalar(
        select(func.count()).where(Specimen.project_id == project.id, Specimen.control.is_(True))
    )
    needing = session.scalar(
        select(func.count()).where(
            Specimen.project_id == project.id, Specimen.status == "machine", Specimen.review_priority > 0.2
        )
    )
    total = sum(by_status.values())
    reviewed = by_status.get("verified", 0) + by_status.get("not_identifiable", 0)
    return {
        "project": project.name,
        "specimens": total,
        "controls": controls,
        "with_barcodes": kinds.get("barcode", 0),
        "with_photos": kinds.get("photo", 0),
        "identified": total - by_status.get("new", 0),
        "not_identified": by_status.get("new", 0),
        "verified": by_status.get("verified", 0),
        "not_identifiable": by_status.get("not_identifiable", 0),
        "reviewed": reviewed,
        "awaiting_review": by_status.get("machine", 0),
        "needing_review": needing,
        "agreement": agreement(session, project),
    }
