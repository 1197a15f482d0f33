"""Sample sheets and plate maps as a lab writes them: CSV (any delimiter, any encoding textio reads) or
XLSX (a plain table, or BOLD's submission workbook whose sheets are joined on Sample ID), with BOLD's and
Darwin Core's column names in any case and spacing; every cell parsed or refused with the reason.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

from clibd_core.textio import read_text

# A column's canonical key (letters and digits, lower case) → the field it fills.
COLUMNS = {
    "sampleid": "sample_id", "materialsampleid": "sample_id", "specimenid": "sample_id",
    "fieldid": "field_id", "fieldnumber": "field_id",
    "museumid": "museum_id", "catalognumber": "museum_id", "catalogno": "museum_id",
    "plate": "plate", "plateid": "plate", "platename": "plate",
    "well": "well", "wellposition": "well", "position": "well",
    "control": "control", "iscontrol": "control",
    "collectiondate": "event_date", "eventdate": "event_date", "date": "event_date",
    "collectiontime": "event_time", "eventtime": "event_time", "time": "event_time",
    "countryocean": "country", "country": "country",
    "countrycode": "country_code",
    "stateprovince": "state_province",
    "exactsite": "locality", "locality": "locality",
    "site": "site", "sitecode": "site", "sector": "site", "locationid": "site",
    "lat": "latitude", "latitude": "latitude", "decimallatitude": "latitude",
    "lon": "longitude", "long": "longitude", "longitude": "longitude", "decimallongitude": "longitude",
    "coordinateuncertaintyinmeters": "uncertainty", "coordinateaccuracy": "uncertainty",
    "coordaccuracy": "uncertainty", "uncertainty": "uncertainty",
    "collectors": "collector", "collector": "collector", "recordedby": "collector",
    "samplingprotocol": "method", "collectionmethod": "method", "method": "method",
    "deployment": "deployment",
    "phylum": "phylum", "class": "class", "order": "order", "family": "family", "subfamily": "subfamily",
    "genus": "genus", "species": "species", "identifier": "identified_by",
}  # fmt: skip
TAXONOMY_FIELDS = ("phylum", "class", "order", "family", "subfamily", "genus", "species", "identified_by")
BOLD_SHEETS = ("Voucher Info", "Taxonomy", "Specimen Details", "Collection Data")
PLATE_ROWS = "ABCDEFGH"
CONTROL_WORDS = {"control", "blank", "negative", "neg", "ctrl", "empty", "nc", "pc", "positive"}
_WELL = re.compile(r"^([A-Ha-h])0*([1-9]|1[0-2])$")
_ID_WITH_WELL = re.compile(r"^(?P<plate>.+?)[-_ ](?P<well>[A-Ha-h]0?(?:[1-9]|1[0-2]))$")
_MONTHS = {m: i + 1 for i, m in enumerate(("jan feb mar apr may jun jul aug sep oct nov dec").split())}


class SheetError(ValueError):
    """A sheet that cannot be read at all (not one bad row: those go to the import report)."""


@dataclass
class Sheet:
    """A table's rows as ``{header: text}``, with where each came from (for the row report)."""

    path: Path
    headers: list[str]
    rows: list[dict[str, str]]
    row_numbers: list[str]  # "row 7", "Collection Data row 7"


def canonical(header: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(header).lower())


def field_of(header: str) -> str | None:
    return COLUMNS.get(canonical(header))


def read_sheet(path: str | Path) -> Sheet:
    """A sample sheet from CSV/TSV or XLSX; the header row is the first that names a sample id."""
    path = Path(path)
    if path.suffix.lower() in (".xlsx", ".xlsm"):
        return _read_workbook(path)
    text = read_text(path)
    try:
        dialect = csv.Sniffer().sniff(text[:20000], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel
    table = [row for row in csv.reader(io.StringIO(text), dialect) if any(cell.strip() for cell in row)]
    return _from_table(path, table, "")


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.date().isoformat() if value.time() == datetime.min.time() else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _read_workbook(path: Path) -> Sheet:
    from openpyxl import load_workbook

    try:
        workbook = load_workbook(path, read_only=True, data_only=True)
    except Exception as error:  # openpyxl raises several kinds for a file that is not a workbook
        raise SheetError(f"{path.name} is not a readable XLSX workbook ({type(error).__name__})") from error
    tables = {
        sheet.title: [[_cell(v) for v in row] for row in sheet.iter_rows(values_only=True) if any(row)]
        for sheet in workbook.worksheets
    }
    workbook.close()
    bold = [name for name in BOLD_SHEETS if name in tables]
    if not bold:
        return _from_table(path, next(iter(tables.values()), []), "")
    merged: Sheet | None = None  # BOLD's workbook: one sheet per topic, joined on Sample ID
    for name in bold:
        part = _from_table(path, tables[name], f"{name} ")
        merged = part if merged is None else _join(merged, part)
    return merged


def _join(left: Sheet, right: Sheet) -> Sheet:
    key_left = next(h for h in left.headers if field_of(h) == "sample_id")
    key_right = next(h for h in right.headers if field_of(h) == "sample_id")
    extra = [h for h in right.headers if h not in left.headers]
    by_id = {row[key_right]: row for row in right.rows}
    rows = [{**row, **{h: by_id.get(row[key_left], {}).get(h, "") for h in extra}} for row in left.rows]
    return Sheet(left.path, left.headers + extra, rows, left.row_numbers)


def _from_table(path: Path, table: list[list[str]], prefix: str) -> Sheet:
    start = next((i for i, row in enumerate(table[:30]) if any(field_of(c) == "sample_id" for c in row)), None)
    if start is None:
        raise SheetError(
            f"{path.name}: no sample id column (one of: Sample ID, materialSampleID, specimen id) in its first rows"
        )
    headers = [cell.strip() or f"column {i + 1}" for i, cell in enumerate(table[start])]
    rows, numbers = [], []
    for offset, values in enumerate(table[start + 1 :], start=start + 2):
        cells = [str(v).strip() for v in values] + [""] * (len(headers) - len(values))
        rows.append(dict(zip(headers, cells, strict=False)))
        numbers.append(f"{prefix}row {offset}")
    return Sheet(path, headers, rows, numbers)


# -- cells -------------------------------------------------------------------------------------------
def parse_well(text: str) -> str:
    """``a1``, ``A01``, ``A 1`` → ``A01``; a well outside the 8 × 12 plate is an error."""
    match = _WELL.match(text.replace(" ", ""))
    if not match:
        raise ValueError(f"well '{text}' is not on an 8 × 12 plate (A01 … H12)")
    return f"{match.group(1).upper()}{int(match.group(2)):02d}"


def plate_and_well(sample_id: str) -> tuple[str, str]:
    """The plate and well a sample id carries (``BIOUG07077-F11`` → ``BIOUG07077``, ``F11``), or empty."""
    match = _ID_WITH_WELL.match(sample_id.strip())
    return (match.group("plate"), parse_well(match.group("well"))) if match else ("", "")


def parse_date(text: str) -> str:
    """A collection date as ISO 8601 (a day, a month, a year, or an interval ``a/b``); BOLD's
    ``12-Jul-2019`` and Excel's dates are understood; ``03/04/2019`` is refused as ambiguous."""
    text = text.strip()
    if "/" in text and re.match(r"^\d{4}", text) and text.count("/") == 1:
        start, end = (parse_date(part) for part in text.split("/"))
        return f"{start}/{end}"
    if match := re.fullmatch(r"(\d{4})(?:[-/.](\d{1,2})(?:[-/.](\d{1,2}))?)?(?:[T ](\d{1,2}:\d{2}(?::\d{2})?))?", text):
        year, month, day, clock = match.groups()
        return _checked(int(year), month and int(month), day and int(day)) + (f"T{clock}" if clock else "")
    if match := re.fullmatch(r"(\d{1,2})[-/ .]([A-Za-z]{3})[A-Za-z]*[-/ .,]*(\d{4})", text):
        day, month, year = match.groups()
        if month.lower() in _MONTHS:
            return _checked(int(year), _MONTHS[month.lower()], int(day))
    if match := re.fullmatch(r"(\d{1,2})[/.](\d{1,2})[/.](\d{4})", text):
        first, second, year = map(int, match.groups())
        if first > 12 >= second:
            return _checked(year, second, first)
        if second > 12 >= first:
            return _checked(year, first, second)
        raise ValueError(f"date '{text}' is ambiguous (day/month or month/day?): write it as YYYY-MM-DD")
    raise ValueError(f"date '{text}' is not a date (write YYYY-MM-DD, or BOLD's 12-Jul-2019)")


def _checked(year: int, month: int | None, day: int | None) -> str:
    if not month:
        return f"{year:04d}"
    if not day:
        if not 1 <= month <= 12:
            raise ValueError(f"month {month} does not exist")
        return f"{year:04d}-{month:02d}"
    try:
        return date(year, month, day).isoformat()
    except ValueError as error:
        raise ValueError(f"{year:04d}-{month:02d}-{day:02d} is not a day of the calendar") from error


def parse_coordinate(text: str, axis: str) -> float:
    """Decimal degrees (``45.5``, ``45,5``, ``45.5 N``, ``73.2W``) within range for ``axis``."""
    cleaned = text.strip().upper().replace(",", ".").replace("°", "")
    sign = -1.0 if cleaned.endswith(("S", "W")) else 1.0
    cleaned = cleaned.rstrip("NSEW ").strip()
    try:
        value = sign * float(cleaned)
    except ValueError:
        raise ValueError(f"{axis} '{text}' is not a number of decimal degrees") from None
    limit = 90 if axis == "latitude" else 180
    if not -limit <= value <= limit:
        raise ValueError(f"{axis} {value} is outside -{limit} … {limit}")
    return value


def is_control(text: str) -> bool:
    return canonical(text) in CONTROL_WORDS or canonical(text) in ("yes", "true", "1", "y")


# -- plate maps --------------------------------------------------------------------------------------
def looks_like_plate_map(table: list[list[str]]) -> bool:
    rows = [r for r in table if r and r[0].strip().upper() in tuple(PLATE_ROWS)]
    return len(rows) >= 4 and any(cell.strip() in ("1", "01") for cell in table[0][1:3])


def read_plate_map(path: str | Path) -> tuple[str, list[tuple[str, str, bool]]]:
    """An 8 × 12 grid (row letters down the side, column numbers across the top; the top-left cell or the
    file name is the plate) → the plate and its (well, sample id, control) cells."""
    path = Path(path)
    table = list(csv.reader(io.StringIO(read_text(path))))
    if not table or not looks_like_plate_map(table):
        raise SheetError(f"{path.name} is not a plate map (A … H down the side, 1 … 12 across the top)")
    plate = table[0][0].strip() or path.stem
    numbers = [cell.strip() for cell in table[0][1:]]
    cells = []
    for row in table[1:]:
        if not row or row[0].strip().upper() not in tuple(PLATE_ROWS):
            continue
        for number, value in zip(numbers, row[1:], strict=False):
            if value.strip() and number:
                word = value.strip()
                cells.append((parse_well(row[0].strip() + number), word, canonical(word) in CONTROL_WORDS))
    return plate, cells
