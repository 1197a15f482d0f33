"""Readers for BIOSCAN-1M (TSV + image tree), BIOSCAN-5M (CSV + image tree) and CLIBD's HDF5 files.

Images are never opened here: a Record carries the image's path (or, for HDF5, its file, group and
row) and loads it when asked. A missing image file leaves the record without an image (it still has
its barcode), and ``clibd inspect`` shows how many records have one.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

from clibd_core.data.records import HDF5ImageRef, ReadResult, Record, Skipped
from clibd_core.dna import BarcodeError, clean_sequence
from clibd_core.taxonomy import Taxonomy
from clibd_core.textio import iter_lines, parse_float

BIOSCAN_1M_METADATA = "BIOSCAN_Insect_Dataset_metadata.tsv"
BIOSCAN_5M_METADATA = "BIOSCAN_5M_Insect_Dataset_metadata.csv"
IMAGE_DIR = Path("images") / "cropped_256"
# Groups of CLIBD's BIOSCAN-1M HDF5 that are unions of other groups: read the parts, not the union.
HDF5_UNION_GROUPS = {
    "all_keys": ("seen_keys", "val_unseen_keys", "test_unseen_keys"),
    "no_split_and_seen_train": ("no_split", "train_seen"),
}
HDF5_CHUNK = 10_000


def _rows(path: Path, delimiter: str) -> Iterator[tuple[int, dict[str, str]]]:
    """The table's rows as they are read (BIOSCAN-5M's 5M rows are never held whole)."""
    for number, row in enumerate(csv.DictReader(iter_lines(path), delimiter=delimiter), start=2):
        yield number, {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}


def _barcode(raw: str, record_id: str) -> tuple[str | None, str | None]:
    """``(cleaned barcode, problem)``; an image record keeps its image when its barcode is unusable."""
    if not raw:
        return None, None
    try:
        return clean_sequence(raw, record_id), None
    except BarcodeError as error:
        return None, str(error)


def _iter_table(path: Path, delimiter: str, barcode_column: str, image_path, extra) -> Iterator[Record | Skipped]:
    """The loop both BIOSCAN metadata readers share: one Record per row that has a usable barcode or an
    existing image file. ``image_path(row, id)`` locates the image; ``extra(row)`` adds format-specific fields."""
    seen: set[str] = set()
    for number, row in _rows(path, delimiter):
        record_id = row.get("processid") or row.get("sampleid")
        if not record_id:
            yield Skipped(f"line {number}", "no processid or sampleid")
            continue
        label = f"line {number} ({record_id})"
        barcode, problem = _barcode(row.get(barcode_column, ""), record_id)
        located = image_path(row, record_id)
        image = str(located) if located is not None and located.is_file() else None
        if barcode is None and image is None:
            yield Skipped(label, problem or f"{record_id}: neither a usable barcode nor an image file")
        elif record_id in seen:
            yield Skipped(label, f"duplicate id {record_id}")
        else:
            seen.add(record_id)
            fields = extra(row)
            ranks = {rank: row.get(rank) for rank in ("order", "family", "subfamily", "genus", "species")}
            yield Record(
                id=record_id,
                taxonomy=Taxonomy.from_values(**ranks, bin=fields.pop("bin", None)),
                barcode=barcode,
                barcode_raw=row.get(barcode_column) or None,
                image=image,
                source=f"{path}:{number}",
                **fields,
            )


def read_bioscan_1m(path: str | Path, image_root: str | Path | None = None) -> ReadResult:
    """BIOSCAN-1M metadata TSV, gathered (see :func:`iter_bioscan_1m`)."""
    return ReadResult.collect("bioscan_1m", path, iter_bioscan_1m(path, image_root))


def iter_bioscan_1m(path: str | Path, image_root: str | Path | None = None) -> Iterator[Record | Skipped]:
    """BIOSCAN-1M metadata TSV, row by row; images under
    ``{root}/images/cropped_256/part{chunk_number}/{image_file}``."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent

    def image_path(row: dict[str, str], record_id: str) -> Path | None:
        if not row.get("image_file"):
            return None
        return root / IMAGE_DIR / f"part{row.get('chunk_number', '')}" / row["image_file"]

    return _iter_table(path, "\t", "nucraw", image_path, lambda row: {})


def read_bioscan_5m(path: str | Path, image_root: str | Path | None = None) -> ReadResult:
    """BIOSCAN-5M metadata CSV, gathered (see :func:`iter_bioscan_5m`)."""
    return ReadResult.collect("bioscan_5m", path, iter_bioscan_5m(path, image_root))


def iter_bioscan_5m(path: str | Path, image_root: str | Path | None = None) -> Iterator[Record | Skipped]:
    """BIOSCAN-5M metadata CSV, row by row (its own ``split`` column kept); images under
    ``{root}/images/cropped_256/{split}/{chunk}/{processid}.jpg``."""
    path = Path(path)
    root = Path(image_root) if image_root else path.parent

    def image_path(row: dict[str, str], record_id: str) -> Path:
        return root / IMAGE_DIR / row.get("split", "") / row.get("chunk", "") / f"{record_id}.jpg"

    def extra(row: dict[str, str]) -> dict:
        return {
            "bin": row.get("dna_bin"),
            "split": row.get("split") or None,
            "country": row.get("country") or None,
            "latitude": parse_float(row.get("coord-lat", "")),
            "longitude": parse_float(row.get("coord-lon", "")),
        }

    return _iter_table(path, ",", "dna_barcode", image_path, extra)


def _text(values) -> list[str]:
    return [value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value) for value in values]


def iter_clibd_hdf5(path: str | Path, groups: list[str] | None = None) -> Iterator[Record | Skipped]:
    """Stream a CLIBD HDF5 file group by group, ``HDF5_CHUNK`` rows at a time; images stay on disk.

    Union groups (``all_keys``...) are skipped when all their parts are present, so no record comes twice.
    """
    import h5py

    path = str(path)
    with h5py.File(path, "r") as handle:
        names = groups or [name for name in handle if isinstance(handle[name], h5py.Group)]
        if groups is None:
            names = [n for n in names if not set(HDF5_UNION_GROUPS.get(n, ("-",))) <= set(names)]
        for name in names:
            group = handle[name]
            total = len(group["image_mask"])
            columns = [
                c for c in ("processid", "sampleid", "barcode", "order", "family", "genus", "species") if c in group
            ]
            for start in range(0, total, HDF5_CHUNK):
                stop = min(start + HDF5_CHUNK, total)
                chunk = {column: _text(group[column][start:stop]) for column in columns}
                lengths = group["image_mask"][start:stop]
                for offset in range(stop - start):
                    row = {column: values[offset].strip() for column, values in chunk.items()}
                    record_id = row.get("processid") or row.get("sampleid") or f"{name}:{start + offset}"
                    barcode, _ = _barcode(row.get("barcode", ""), record_id)
                    image = HDF5ImageRef(path, name, start + offset) if int(lengths[offset]) > 0 else None
                    if barcode is None and image is None:
                        yield Skipped(
                            f"{name}[{start + offset}]", f"{record_id}: neither a usable barcode nor an image"
                        )
                        continue
                    yield Record(
                        id=record_id,
                        taxonomy=Taxonomy.from_values(
                            **{r: row.get(r) for r in ("order", "family", "genus", "species")}
                        ),
                        barcode=barcode,
                        barcode_raw=row.get("barcode") or None,
                        image=image,
                        split=name,
                        source=f"{path}:{name}[{start + offset}]",
                    )


def read_clibd_hdf5(path: str | Path, groups: list[str] | None = None) -> ReadResult:
    """All records of a CLIBD HDF5 file (see :func:`iter_clibd_hdf5`); ids may repeat across groups."""
    return ReadResult.collect("clibd_hdf5", path, iter_clibd_hdf5(path, groups))
