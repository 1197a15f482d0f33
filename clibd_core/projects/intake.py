"""Intake: a sample sheet, plate maps, barcodes and photos → a project's specimens, all or nothing.

``plan_import`` reads everything and checks it row by row against the sheet and the project before a
byte is written; ``import_files`` writes the plan in one transaction (photos are copied first, by
content, so a failed import leaves at most unreferenced copies and a re-run reuses them). Barcodes
(FASTA, multi-FASTA, BOLD TSV) and photos (files, zips, folders) find their specimen by sample, field or
museum id: a FASTA id or any ``|`` field of its header, a photo's file name (``ID.jpg``, ``ID_2.jpg``,
``ID dorsal.png``) or its folder. Whatever matches no specimen is listed with the reason.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session

from clibd_core.data.uploads import IMAGE_SUFFIXES, SEQUENCE_SUFFIXES, unpack_tree
from clibd_core.dna import BarcodeError, parse_fasta
from clibd_core.projects import sheets
from clibd_core.projects.db import ProjectError
from clibd_core.projects.schema import Event, Project, QueryItem, Specimen
from clibd_core.textio import read_head, read_text
from clibd_core.workspace import safe_name, workspace_root

SHEET_SUFFIXES = (".csv", ".xlsx", ".xlsm")
EVENT_FIELDS = (
    "site", "deployment", "event_date", "event_time", "country", "country_code", "state_province", "locality",
    "latitude", "longitude", "uncertainty", "collector", "method",
)  # fmt: skip
TEXT_FIELDS = ("field_id", "museum_id", "plate", "well", "control")
_CONTROL_NOTE = re.compile(r"^\s*(negative|positive|extraction|pcr)?\s*(control|blank)\s*$", re.IGNORECASE)


@dataclass
class Problem:
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass
class SpecimenDraft:
    sample_id: str
    where: str
    values: dict[str, object] = field(default_factory=dict)  # field → parsed value
    taxonomy: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)


@dataclass
class ImportPlan:
    """What an import would write, and every problem found on the way (nothing is written if any)."""

    project: str
    specimens: list[SpecimenDraft] = field(default_factory=list)
    barcodes: list[tuple[str, str, str, dict]] = field(default_factory=list)  # sample id, sequence, source, details
    photos: list[tuple[str, Path, str]] = field(default_factory=list)  # sample id, file, source
    wells: dict[str, tuple[str, str, bool]] = field(default_factory=dict)  # sample id → plate, well, control
    errors: list[Problem] = field(default_factory=list)
    unmatched: list[Problem] = field(default_factory=list)
    already: int = 0  # specimens, barcodes and photos the project holds already (a sheet imported again)

    def summary(self) -> dict:
        return {
            "project": self.project,
            "new_specimens": len(self.specimens),
            "barcodes": len(self.barcodes),
            "photos": len(self.photos),
            "plate_wells": len(self.wells),
            "already_in_project": self.already,
            "errors": [str(p) for p in self.errors],
            "unmatched": [str(p) for p in self.unmatched],
        }

    def report(self) -> str:
        lines = [
            f"{self.project}: {len(self.specimens)} new specimens, {len(self.barcodes)} barcodes, "
            f"{len(self.photos)} photos, {len(self.wells)} plate wells"
            + (f" ({self.already} already in the project)" if self.already else "")
        ]
        lines += [f"  error  {p}" for p in self.errors]
        lines += [f"  unmatched  {p}" for p in self.unmatched]
        return "\n".join(lines)


class ImportRefused(ProjectError):
    def __init__(self, plan: ImportPlan) -> None:
        self.plan = plan
        problems = len(plan.errors) + len(plan.unmatched)
        message = f"nothing was imported: {problems} problems (fix them, or leave those files out)"
        super().__init__(f"{message}\n{plan.report()}")


def media_dir(project: str) -> Path:
    """Where a project's photos are kept (by content): the workspace, beside the database."""
    return workspace_root() / "projects" / safe_name(project) / "media"


# -- reading -----------------------------------------------------------------------------------------
def draft_from_row(row: dict[str, str], where: str, headers: list[str]) -> tuple[SpecimenDraft | None, list]:
    """A sheet row's specimen (None for an empty row) and the problems of its cells."""
    by_field: dict[str, str] = {}
    extra, problems = {}, []
    for header in headers:
        value = (row.get(header) or "").strip()
        target = sheets.field_of(header)
        if target is None or target in by_field:
            if value:
                extra[header] = value
        else:
            by_field[target] = value
    sample_id = by_field.get("sample_id", "")
    if not sample_id:
        return None, ([Problem(where, "no sample id")] if any(by_field.values()) or extra else [])
    draft = SpecimenDraft(sample_id, where, extra=extra)
    draft.taxonomy = {k: by_field[k] for k in sheets.TAXONOMY_FIELDS if by_field.get(k)}
    parsers = {
        "event_date": sheets.parse_date,
        "well": sheets.parse_well,
        "latitude": lambda v: sheets.parse_coordinate(v, "latitude"),
        "longitude": lambda v: sheets.parse_coordinate(v, "longitude"),
        "uncertainty": _metres,
        "control": sheets.is_control,
        "country_code": _country_code,
    }
    for name in (*EVENT_FIELDS, *TEXT_FIELDS):
        value = by_field.get(name, "")
        if not value:
            continue
        try:
            draft.values[name] = parsers[name](value) if name in parsers else value
        except ValueError as error:
            problems.append(Problem(f"{where} ({sample_id})", str(error)))
    if ("latitude" in draft.values) != ("longitude" in draft.values):
        problems.append(Problem(f"{where} ({sample_id})", "a latitude without a longitude, or the reverse"))
    if "control" not in draft.values and any(_CONTROL_NOTE.search(v) for v in extra.values()):
        draft.values["control"] = True  # "negative control" written in a notes column
    if "well" not in draft.values and "plate" not in draft.values:
        plate, well = sheets.plate_and_well(sample_id)
        if well:
            draft.values.update(plate=plate, well=well)
    return draft, problems


def _metres(text: str) -> float:
    value = sheets.parse_coordinate(text.lower().removesuffix("m").strip(), "longitude") if text else 0.0
    if value < 0:
        raise ValueError(f"coordinate uncertainty '{text}' is negative")
    return abs(value)


def _country_code(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z]{2}", text):
        raise ValueError(f"country code '{text}' is not two letters (ISO 3166-1, e.g. CA)")
    return text.upper()


def _expand(paths: list[Path], scratch: Path) -> tuple[list[Path], list[Problem]]:
    """Files from files, folders (recursively) and zips (unpacked with their folders kept)."""
    files, problems = [], []
    for path in paths:
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        elif path.suffix.lower() == ".zip":
            target = scratch / f"{len(files):05d}_{path.stem}"
            try:
                problems += [Problem(path.name, why) for why in unpack_tree(path, target)]
            except ValueError as error:
                problems.append(Problem(path.name, str(error)))
                continue
            files += sorted(p for p in target.rglob("*") if p.is_file())
        elif path.is_file():
            files.append(path)
        else:
            problems.append(Problem(str(path), "no such file or folder"))
    return files, problems


def _is_bold_tsv(path: Path) -> bool:
    head = read_head(path, 4096).decode("utf-8", "replace").split("\n", 1)[0].lower().split("\t")
    return "nucleotides" in head and ("sampleid" in head or "processid" in head)


def _bold_barcodes(path: Path) -> list[tuple[list[str], str, str, dict]]:
    rows = csv.DictReader(io.StringIO(read_text(path)), delimiter="\t")
    found = []
    for number, row in enumerate(rows, start=2):
        keys = [row.get("sampleid", ""), row.get("processid", ""), row.get("fieldid", ""), row.get("museumid", "")]
        details = {k: row[k] for k in ("processid", "marker_code", "bin_uri") if row.get(k)}
        found.append(([k for k in keys if k], row.get("nucleotides", ""), f"{path.name} row {number}", details))
    return found


def _fasta_barcodes(path: Path) -> list[tuple[list[str], str, str, dict]]:
    found = []
    for number, (header, body) in enumerate(parse_fasta(read_text(path)), start=1):
        words = header.split()
        keys = [part.strip() for part in (words[0] if words else "").split("|") if part.strip()]
        found.append((keys, body, f"{path.name} >{header[:80]}", {"header": header[:300]} if number else {}))
    return found


def _photo_keys(path: Path) -> list[str]:
    """Names a photo may be matched by: its stem, the stem less ``_2`` / ``-dorsal`` / `` (1)`` tails, its folder."""
    keys, stem = [], path.stem
    while stem and stem not in keys:
        keys.append(stem)
        stem = re.sub(r"(\s*\(\d+\)|[_ .][^_ .]*)$", "", stem)
    return [*keys, path.parent.name]


def _check_image(path: Path) -> str:
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception:  # PIL raises many kinds for a damaged or foreign file
        return f"{path.name} is not a readable image"
    return ""


def plan_import(session: Session, project: Project, sheet: Path | None, files: list[Path]) -> ImportPlan:
    """Read and check a sheet and files against ``project`` (nothing is written)."""
    plan = ImportPlan(project.name)
    existing = {
        row.sample_id: row
        for row in session.execute(select(Specimen).where(Specimen.project_id == project.id)).scalars()
    }
    if sheet is not None:
        _plan_sheet(plan, sheets.read_sheet(sheet), existing)
    ids: dict[str, str] = {}  # any id a specimen answers to → its sample id
    for specimen in [*existing.values(), *plan.specimens]:
        values = specimen.values if isinstance(specimen, SpecimenDraft) else vars(specimen)
        for key in (specimen.sample_id, values.get("field_id", ""), values.get("museum_id", "")):
            if key:
                ids.setdefault(key, specimen.sample_id)
                ids.setdefault(key.lower(), specimen.sample_id)
    held = _held(session, project)
    with tempfile.TemporaryDirectory(prefix="clibd-intake-") as scratch:
        found, problems = _expand(files, Path(scratch))
        plan.unmatched += problems
        for path in found:
            _plan_file(plan, path, ids, held)
        plan.photos = [(s, _keep(p, Path(scratch)), src) for s, p, src in plan.photos]  # outlive the scratch
    return plan


def _keep(path: Path, scratch: Path) -> Path:
    """Photos unpacked from a zip are copied out of the scratch folder before it goes."""
    if scratch not in path.parents:
        return path
    kept = Path(tempfile.mkdtemp(prefix="clibd-photo-")) / path.name
    shutil.copyfile(path, kept)
    return kept


def _plan_sheet(plan: ImportPlan, sheet: sheets.Sheet, existing: dict) -> None:
    seen: dict[str, str] = {}
    for row, where in zip(sheet.rows, sheet.row_numbers, strict=True):
        draft, problems = draft_from_row(row, where, sheet.headers)
        plan.errors += problems
        if draft is None:
            continue
        if draft.sample_id in seen:
            plan.errors.append(Problem(where, f"sample id {draft.sample_id} repeats {seen[draft.sample_id]}"))
        elif draft.sample_id in existing:
            known = existing[draft.sample_id]
            differs = [k for k in ("field_id", "museum_id", "plate", "well") if k in draft.values
                       and str(draft.values[k]) != getattr(known, k)]  # fmt: skip
            if differs:
                message = f"sample id {draft.sample_id} is in project {plan.project} with another {', '.join(differs)}"
                plan.errors.append(Problem(where, message))
            plan.already += 1  # the same specimen again: kept as the project has it
        else:
            seen[draft.sample_id] = where
            plan.specimens.append(draft)
    wells: dict[tuple[str, str], str] = {}
    for draft in plan.specimens:
        key = (str(draft.values.get("plate", "")), str(draft.values.get("well", "")))
        if key[1] and key in wells:
            plan.errors.append(Problem(draft.where, f"plate {key[0]} well {key[1]} is also {wells[key]}'s"))
        wells.setdefault(key, draft.sample_id)


def _held(session: Session, project: Project) -> set[tuple[str, str]]:
    """(sample id, barcode or photo digest) the project holds: a re-run adds nothing twice."""
    rows = session.execute(
        select(Specimen.sample_id, QueryItem.kind, QueryItem.sequence, QueryItem.details)
        .join(QueryItem, QueryItem.specimen_id == Specimen.id)
        .where(Specimen.project_id == project.id)
    )
    return {(sample, seq if kind == "barcode" else details.get("sha256", "")) for sample, kind, seq, details in rows}


def _lookup(ids: dict[str, str], keys: list[str]) -> str | None:
    """The sample id the first matching key names (exactly, else ignoring case)."""
    return next((ids.get(k) or ids.get(k.lower()) for k in keys if ids.get(k) or ids.get(k.lower())), None)


def _plan_file(plan: ImportPlan, path: Path, ids: dict[str, str], held: set) -> None:
    suffix = path.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        sample = _lookup(ids, _photo_keys(path))
        if sample is None:
            plan.unmatched.append(Problem(path.name, "no specimen has this file name (or its folder's) as its id"))
        elif why := _check_image(path):
            plan.errors.append(Problem(path.name, why))
        elif (sample, digest := _sha256(path)) in held:
            plan.already += 1
        else:
            held.add((sample, digest))
            plan.photos.append((sample, path, path.name))
        return
    if suffix in (".csv",) and _plate_map(plan, path, ids):
        return
    try:
        if suffix == ".tsv" or (suffix == ".txt" and _is_bold_tsv(path)):
            barcodes = _bold_barcodes(path)
        elif suffix in SEQUENCE_SUFFIXES or suffix in (".fasta", ".fa"):
            barcodes = _fasta_barcodes(path)
        else:
            plan.unmatched.append(Problem(path.name, "not a photo, FASTA, BOLD TSV or plate map"))
            return
    except (BarcodeError, ValueError) as error:
        plan.errors.append(Problem(path.name, str(error)))
        return
    for keys, sequence, source, details in barcodes:
        sample = _lookup(ids, keys)
        if sample is None:
            plan.unmatched.append(Problem(source, f"no specimen with id {' or '.join(keys) or '(none)'}"))
        elif not re.sub(r"[\s\-.]", "", sequence):
            plan.errors.append(Problem(source, "an empty sequence"))
        elif (sample, sequence.strip()) in held:
            plan.already += 1
        else:
            held.add((sample, sequence.strip()))
            plan.barcodes.append((sample, sequence.strip(), source, details))


def _plate_map(plan: ImportPlan, path: Path, ids: dict[str, str]) -> bool:
    try:
        plate, cells = sheets.read_plate_map(path)
    except sheets.SheetError:
        return False
    for well, value, control in cells:
        sample = _lookup(ids, [value])
        if sample:
            plan.wells[sample] = (plate, well, control)
        elif not control:
            plan.unmatched.append(Problem(f"{path.name} {well}", f"no specimen with id {value}"))
    return True


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- writing -----------------------------------------------------------------------------------------
def event_key(values: dict) -> str:
    return json.dumps([values.get(name, "") for name in EVENT_FIELDS], default=str)


def write_plan(session: Session, project: Project, plan: ImportPlan) -> None:
    """Add what ``plan`` holds to ``project`` (in the caller's transaction)."""
    events = {
        e.key: e for e in session.execute(select(Event).where(Event.project_id == project.id)).scalars()
    }
    specimens = {
        s.sample_id: s for s in session.execute(select(Specimen).where(Specimen.project_id == project.id)).scalars()
    }
    for draft in plan.specimens:
        event = None
        if any(name in draft.values for name in EVENT_FIELDS):
            key = event_key(draft.values)
            event = events.get(key)
            if event is None:
                event = events[key] = Event(project_id=project.id, key=key, **_event_values(draft.values))
        specimen = Specimen(
            project=project,
            event=event,
            sample_id=draft.sample_id,
            field_id=str(draft.values.get("field_id", "")),
            museum_id=str(draft.values.get("museum_id", "")),
            plate=str(draft.values.get("plate", "")),
            well=str(draft.values.get("well", "")),
            control=bool(draft.values.get("control", False)),
            given_taxonomy=draft.taxonomy,
            extra=draft.extra,
        )
        session.add(specimen)
        specimens[draft.sample_id] = specimen
    for sample, (plate, well, control) in plan.wells.items():
        specimen = specimens[sample]
        specimen.plate, specimen.well, specimen.control = plate, well, control or specimen.control
    for sample, sequence, source, details in plan.barcodes:
        marker = details.get("marker_code", "COI-5P")
        session.add(
            QueryItem(specimen=specimens[sample], kind="barcode", sequence=sequence, marker=marker, source=source,
                      details=details)
        )  # fmt: skip
    folder = media_dir(project.name)
    for sample, path, source in plan.photos:
        digest = _sha256(path)
        stored = Path(digest[:2]) / f"{digest}{path.suffix.lower()}"
        if not (folder / stored).exists():
            (folder / stored).parent.mkdir(parents=True, exist_ok=True)
            partial = folder / stored.with_suffix(".partial")
            shutil.copyfile(path, partial)
            partial.replace(folder / stored)  # atomic: a copy is whole or absent
        session.add(
            QueryItem(specimen=specimens[sample], kind="photo", media_path=str(stored), source=source,
                      details={"sha256": digest})
        )  # fmt: skip
    session.flush()


def _event_values(values: dict) -> dict:
    return {
        "site": str(values.get("site", "")),
        "deployment": str(values.get("deployment", "")),
        "event_date": str(values.get("event_date", "")),
        "event_time": str(values.get("event_time", "")),
        "country": str(values.get("country", "")),
        "country_code": str(values.get("country_code", "")),
        "state_province": str(values.get("state_province", "")),
        "locality": str(values.get("locality", "")),
        "latitude": values.get("latitude"),
        "longitude": values.get("longitude"),
        "coordinate_uncertainty_m": values.get("uncertainty"),
        "collector": str(values.get("collector", "")),
        "method": str(values.get("method", "")),
    }


def find_sheet(paths: list[str | Path]) -> tuple[Path | None, list[Path]]:
    """Among uploaded files, the sample sheet (the first CSV/XLSX naming a sample id column) and the rest."""
    paths = [Path(p) for p in paths]
    for path in paths:
        if path.suffix.lower() in SHEET_SUFFIXES:
            try:
                sheets.read_sheet(path)
            except (sheets.SheetError, ValueError):
                continue
            return path, [p for p in paths if p != path]
    return None, paths


def import_files(
    project_name: str,
    sheet: str | Path | None,
    files: list[str | Path] = (),
    skip_unmatched: bool = False,
    check_only: bool = False,
    url: str | None = None,
) -> ImportPlan:
    """Check, then write, a sheet and files into a project: all or nothing. Raises :class:`ImportRefused`
    (with the row report) when anything is wrong, or when files matched no specimen and
    ``skip_unmatched`` is not set; ``check_only`` returns the plan without writing."""
    from clibd_core.projects.db import session_scope
    from clibd_core.projects.registry import get_project

    sheet_path = Path(sheet) if sheet else None
    paths = [Path(f) for f in files]
    if sheet_path is not None and sheet_path.suffix.lower() not in SHEET_SUFFIXES:
        sheet_path, paths = None, [sheet_path, *paths]  # no sheet: barcodes and photos for known specimens
    with session_scope(url) as session:
        project = get_project(session, project_name)
        plan = plan_import(session, project, sheet_path, paths)
        if plan.errors or (plan.unmatched and not skip_unmatched):
            raise ImportRefused(plan)
        if not check_only:
            write_plan(session, project, plan)
    return plan
