"""A camera or light trap's photos as a project's specimens: each photo one specimen, its time read from
EXIF (DateTimeOriginal), else from its file name (``20260612_221503.jpg``, ``2026-06-12T22-15-03.png``),
else from its nightly sub-folder (``2026-06-12/``); photos grouped into collecting events wherever the
gap between consecutive photos exceeds ``gap_hours``, every event carrying the deployment's field sheet
(site, coordinates, method, ...). Written through intake's plan, so all or nothing as any import."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path

from PIL import Image

from clibd_core.data.uploads import IMAGE_SUFFIXES
from clibd_core.projects import sheets
from clibd_core.projects.db import session_scope
from clibd_core.projects.intake import (
    ImportPlan,
    ImportRefused,
    Problem,
    SpecimenDraft,
    draft_from_row,
    write_plan,
)
from clibd_core.projects.registry import get_project

_STAMP = re.compile(r"(\d{4})[-_.]?(\d{2})[-_.]?(\d{2})[T_ -]?(\d{2})[-_.:h]?(\d{2})[-_.:m]?(\d{2})")
_DAY = re.compile(r"^(\d{4})[-_.]?(\d{2})[-_.]?(\d{2})$")
EXIF_ORIGINAL, EXIF_IFD, EXIF_DATETIME = 36867, 0x8769, 306


def photo_time(path: Path) -> datetime | None:
    """When a photo was taken: EXIF, else the file name's time stamp, else its folder's date (midnight)."""
    try:
        with Image.open(path) as image:
            exif = image.getexif()
            text = exif.get_ifd(EXIF_IFD).get(EXIF_ORIGINAL) or exif.get(EXIF_DATETIME)
        if text:
            return datetime.strptime(str(text).strip(), "%Y:%m:%d %H:%M:%S")
    except (OSError, ValueError):
        pass
    for found in (_STAMP.search(path.stem), _DAY.match(path.parent.name)):
        if found:
            try:
                return datetime(*map(int, found.groups()))
            except ValueError:
                continue
    return None


def group_events(times: list[datetime], gap_hours: float) -> list[int]:
    """An event number per (sorted) time: a new event after every gap longer than ``gap_hours``."""
    numbers, current = [], 0
    for i, moment in enumerate(times):
        if i and moment - times[i - 1] > timedelta(hours=gap_hours):
            current += 1
        numbers.append(current)
    return numbers


def import_trap(
    project_name: str,
    folder: str | Path,
    deployment: str | Path | None = None,
    gap_hours: float = 3.0,
    check_only: bool = False,
    url: str | None = None,
) -> ImportPlan:
    folder = Path(folder)
    photos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    plan = ImportPlan(project_name)
    field: dict[str, object] = {}
    if deployment:
        sheet = sheets.read_sheet(deployment) if Path(deployment).suffix.lower() != ".csv" else None
        sheet = sheet or _deployment_sheet(Path(deployment))
        where = f"{Path(deployment).name} {sheet.row_numbers[0]}"
        draft, problems = draft_from_row(sheet.rows[0], where, sheet.headers)
        plan.errors += problems
        field = dict(draft.values) if draft else {}
    timed = []
    for path in photos:
        moment = photo_time(path)
        if moment is None:
            plan.errors.append(Problem(path.name, "no time in its EXIF, file name or folder name"))
        else:
            timed.append((moment, path))
    timed.sort()
    events = group_events([moment for moment, _ in timed], gap_hours)
    spans: dict[int, list[datetime]] = {}
    for number, (moment, _) in zip(events, timed, strict=True):
        spans.setdefault(number, []).append(moment)
    seen: set[str] = set()
    for number, (moment, path) in zip(events, timed, strict=True):
        first, last = spans[number][0], spans[number][-1]
        sample = path.stem if path.stem not in seen else f"{path.parent.name}-{path.stem}"
        seen.add(sample)
        values = {**field, "event_date": f"{first.date().isoformat()}/{last.date().isoformat()}"
                  if first.date() != last.date() else first.date().isoformat(),
                  "event_time": f"{first:%H:%M}/{last:%H:%M}", "method": field.get("method") or "trap photos",
                  "deployment": field.get("deployment") or folder.name}  # fmt: skip
        plan.specimens.append(SpecimenDraft(sample, path.name, values, extra={"taken": moment.isoformat()}))
        plan.photos.append((sample, path, path.name))
    with session_scope(url) as session:
        project = get_project(session, project_name)
        known = {s.sample_id for s in project.specimens}
        plan.errors += [Problem(d.where, f"sample id {d.sample_id} is already in the project")
                        for d in plan.specimens if d.sample_id in known]  # fmt: skip
        if plan.errors:
            raise ImportRefused(plan)
        if not check_only:
            write_plan(session, project, plan)
    return plan


def _deployment_sheet(path: Path) -> sheets.Sheet:
    """A deployment's field sheet: one row of field data; a sample id column is not needed."""
    import csv
    import io

    from clibd_core.textio import read_text

    rows = list(csv.reader(io.StringIO(read_text(path))))
    if len(rows) < 2:
        raise sheets.SheetError(f"{path.name}: a header and one row of the deployment's field data are needed")
    header = ["Sample ID", *rows[0]]
    return sheets.Sheet(path, header, [dict(zip(header, ["deployment", *rows[1]], strict=False))], ["row 2"])
