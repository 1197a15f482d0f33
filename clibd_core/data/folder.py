"""Reader for the simplest layout a lab has: a folder of images and a CSV that describes them."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from clibd_core.data.records import ReadResult, Record, Skipped
from clibd_core.data.uploads import IMAGE_SUFFIXES
from clibd_core.dna import BarcodeError, clean_sequence
from clibd_core.taxonomy import ALL_RANKS, Taxonomy
from clibd_core.textio import decode_line, normalise_newlines, read_bytes

FILE_COLUMNS = ("file", "filename", "file_name", "image", "image_file", "path")
BARCODE_COLUMNS = ("barcode", "dna_barcode", "nucleotides", "nucraw", "sequence", "dna")
ID_COLUMNS = ("id", "processid", "sampleid", "specimen")


def _pick(row: dict[str, str], names: tuple[str, ...]) -> str:
    return next((row[name] for name in names if row.get(name)), "")


def find_file_column(header: list[str]) -> str | None:
    """The CSV column naming each image file, if any (case-insensitive)."""
    return next((name for name in FILE_COLUMNS if name in [h.strip().lower() for h in header]), None)


def _dialect(text: str) -> type[csv.Dialect] | csv.Dialect:
    """The CSV dialect, sniffed; where the sniffer gives up, the separator its header line uses most."""
    try:
        return csv.Sniffer().sniff(text[:4096], delimiters=",;\t")
    except csv.Error:
        header = text.split("\n", 1)[0]
        separator = max(",;\t", key=header.count)
        return type("Guessed", (csv.excel,), {"delimiter": separator})


def read_image_folder(csv_path: str | Path, image_dir: str | Path | None = None) -> ReadResult:
    """Records from a CSV with a file-name column, taxonomy columns (``order`` ... ``species``, or BOLD's
    ``order_name`` ...) and an optional barcode column; images relative to the CSV's folder."""
    csv_path = Path(csv_path)
    image_dir = Path(image_dir) if image_dir else csv_path.parent
    text = normalise_newlines(decode_line(read_bytes(csv_path)))
    result = ReadResult(format="image_folder", source=str(csv_path))
    reader = csv.DictReader(io.StringIO(text), dialect=_dialect(text))
    rows = []
    try:
        rows.extend(reader)
    except csv.Error as error:  # e.g. a quote never closed: the rest of the file cannot be split into rows
        result.skipped.append(Skipped(f"line {reader.line_num}", f"unreadable CSV from here on ({error})"))
    seen: set[str] = set()
    for number, raw in enumerate(rows, start=2):
        row = {k.strip().lower(): (v or "").strip() for k, v in raw.items() if k is not None}
        file_name = _pick(row, FILE_COLUMNS)
        record_id = _pick(row, ID_COLUMNS) or Path(file_name).stem
        label = f"line {number} ({record_id})" if record_id else f"line {number}"
        image_path = image_dir / file_name if file_name else None
        if image_path is not None and not image_path.is_file():
            result.skipped.append(Skipped(label, f"image file {file_name} not found in {image_dir}"))
            continue
        raw_barcode = _pick(row, BARCODE_COLUMNS)
        barcode = None
        if raw_barcode:
            try:
                barcode = clean_sequence(raw_barcode, record_id)
            except BarcodeError as error:
                result.skipped.append(Skipped(label, str(error)))
                continue
        if image_path is None and barcode is None:
            result.skipped.append(Skipped(label, "neither an image file nor a barcode"))
            continue
        if record_id in seen:
            result.skipped.append(Skipped(label, f"duplicate id {record_id}"))
            continue
        seen.add(record_id)
        ranks = {rank: row.get(rank) or row.get(f"{rank}_name") for rank in ALL_RANKS}
        result.records.append(
            Record(
                id=record_id,
                taxonomy=Taxonomy.from_values(**ranks, bin=row.get("bin") or row.get("bin_uri")),
                barcode=barcode,
                barcode_raw=raw_barcode or None,
                image=str(image_path) if image_path else None,
                split=row.get("split") or None,
                country=row.get("country") or None,
                source=f"{csv_path}:{number}",
            )
        )
    return result


def is_species_folders(path: Path) -> bool:
    """A folder without a CSV/TSV of its own whose sub-folders hold images (torchvision's ImageFolder)."""
    if not path.is_dir() or any(path.glob("*.csv")) or any(path.glob("*.tsv")):
        return False
    return any(f.suffix.lower() in IMAGE_SUFFIXES for f in path.glob("*/*")) or any(
        f.suffix.lower() in IMAGE_SUFFIXES for f in path.glob("*/*/*/*")
    )


def read_species_folders(root: str | Path) -> ReadResult:
    """Records from one sub-folder per species (``Genus_species/`` or ``Genus species/``), optionally
    inside ``Order/Family/`` folders; the folder names give the taxonomy, the file names the ids."""
    root = Path(root)
    result = ReadResult(format="species_folders", source=str(root))
    seen: set[str] = set()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = path.relative_to(root)
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            if not path.name.startswith("."):
                result.skipped.append(Skipped(str(relative), "not an image file"))
            continue
        folders = relative.parts[:-1]
        if len(folders) not in (1, 3):
            result.skipped.append(
                Skipped(str(relative), "not in a species folder (Genus_species/ or Order/Family/Genus_species/)")
            )
            continue
        species = " ".join(folders[-1].replace("_", " ").split())
        record_id = f"{folders[-1]}/{path.stem}"
        if record_id in seen:
            result.skipped.append(Skipped(str(relative), f"duplicate id {record_id}"))
            continue
        seen.add(record_id)
        order, family = folders[:2] if len(folders) == 3 else (None, None)
        genus = species.split()[0] if len(species.split()) > 1 else None
        result.records.append(
            Record(
                id=record_id,
                taxonomy=Taxonomy.from_values(order=order, family=family, genus=genus, species=species),
                image=str(path),
                source=str(relative),
            )
        )
    return result
