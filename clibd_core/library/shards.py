"""Embedding a library's records in shards: any number of processes (``accelerate launch``), each shard
written as it finishes, a killed build resumed where it stopped.

The main process first reads the source once, as a stream, and writes its records (each id once) as
tables of S records (S: ``SHARD_RECORDS`` unless the build says otherwise): no process ever holds
every record, so a source of millions is built in bounded memory. Shard ``i`` holds records
``[i·S, (i+1)·S)`` and is embedded by process ``i mod P``, in the same batches whatever ``P`` is, so a
build of any number of processes yields the vectors of a single-process build.
Record tables and shards live in a work folder beside the library (``.build-NAME``), keyed by the
model and the records, and are removed once the library is committed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clibd_core.data.records import HDF5ImageRef, Record
from clibd_core.fileio import atomic_directory, write_json
from clibd_core.library.store import metadata_table
from clibd_core.taxonomy import ALL_RANKS, MISSING, Taxonomy

SHARD_RECORDS = 4096
IMAGE_COLUMNS = ("image_file", "image_group", "image_row", "image_bytes")  # where a record's image is


@dataclass(frozen=True)
class Processes:
    """Which of how many processes this is (Accelerate's ``PartialState`` has the same fields)."""

    process_index: int = 0
    num_processes: int = 1

    @property
    def is_main_process(self) -> bool:
        return self.process_index == 0

    def wait_for_everyone(self) -> None:
        return None


def work_folder(out: Path) -> Path:
    return out.parent / f".build-{out.name}"


def spool(
    work: Path, model_fingerprint: str, records: Iterable[Record], processes, shard_records: int, progress
) -> dict:
    """The main process reads ``records`` once and writes them (each id once, the first kept) as record
    tables; every process gets the build's plan: records, shards, records with an image. Shards
    already embedded are kept only if they are of this very build (the same model, ids, barcodes and
    images)."""
    if processes.is_main_process:
        if shard_records < 1:
            raise ValueError(f"shards need at least one record, not {shard_records}")
        work.mkdir(parents=True, exist_ok=True)
        staging = work / ".records-new"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        key = hashlib.sha256((model_fingerprint or "").encode())
        seen: set[str] = set()
        chunk: list[Record] = []
        plan = {"records": 0, "shards": 0, "shard_records": shard_records, "with_image": 0}
        for record in records:
            if record.id in seen:
                continue
            seen.add(record.id)
            key.update(f"\n{record.id}\t{record.barcode}\t{_image_columns(record)[:3]}".encode())  # what is embedded
            chunk.append(record)
            plan["records"] += 1
            plan["with_image"] += record.has_image
            if len(chunk) == shard_records:
                _write_records(staging / _records_file(work, plan["shards"]).name, chunk)
                plan["shards"] += 1
                chunk = []
                progress("reading records", plan["records"], 0)
        if chunk:
            _write_records(staging / _records_file(work, plan["shards"]).name, chunk)
            plan["shards"] += 1
        progress("reading records", plan["records"], plan["records"])
        plan["key"] = key.hexdigest()
        marker = work / "build.json"
        if marker.exists() and json.loads(marker.read_text()) != plan:
            for stale in work.glob("shard-*"):
                shutil.rmtree(stale)
        shutil.rmtree(work / "records", ignore_errors=True)
        staging.rename(work / "records")
        write_json(marker, plan)
    processes.wait_for_everyone()
    return json.loads((work / "build.json").read_text())


def _write_records(file: Path, records: Sequence[Record]) -> None:
    table = metadata_table(records)
    table["barcode"] = [r.barcode for r in records]
    images = [_image_columns(record) for record in records]
    for column, values in zip(IMAGE_COLUMNS, zip(*images, strict=True), strict=True):
        table[column] = list(values)
    table.to_parquet(file, index=False)


def _image_columns(record: Record) -> tuple:
    """Where a record's image is: (file, HDF5 group, HDF5 row, bytes)."""
    image = record.image
    if image is None:
        return None, None, -1, None
    if isinstance(image, HDF5ImageRef):
        return image.path, image.group, image.index, None
    if isinstance(image, str | Path):
        return str(image), None, -1, None
    if isinstance(image, bytes):
        return None, None, -1, image
    raise ValueError(f"{record.id}: an image held as {type(image).__name__} cannot go into a library build")


def read_records(work: Path, shard: int) -> list[Record]:
    """The records of one shard, as they were read."""
    records = []
    for row in pd.read_parquet(_records_file(work, shard)).to_dict("records"):
        row = {name: None if _missing(value) else value for name, value in row.items()}
        path, group, index, data = (row.pop(column) for column in IMAGE_COLUMNS)
        image = data if data is not None else HDF5ImageRef(path, group, int(index)) if group is not None else path
        taxonomy = Taxonomy(**{rank: row.pop(rank) or MISSING for rank in (*ALL_RANKS, "bin")})
        records.append(Record(taxonomy=taxonomy, image=image, **row))
    return records


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and value != value)  # None, or NaN (a missing cell)


def read_metadata(work: Path, shards: int, columns: Sequence[str]) -> pd.DataFrame:
    """Some columns of every record, in shard order."""
    tables = [pd.read_parquet(_records_file(work, shard), columns=list(columns)) for shard in range(shards)]
    return pd.concat(tables, ignore_index=True)


def read_barcodes(work: Path, shards: int) -> Iterator[str | None]:
    """Every record's barcode in row order, one shard at a time."""
    for shard in range(shards):
        for barcode in pd.read_parquet(_records_file(work, shard), columns=["barcode"])["barcode"].tolist():
            yield None if _missing(barcode) else barcode


def _gathered(work: Path, folders: list[Path], modality: str) -> np.ndarray:
    """One modality's vectors of every shard, written into one ``.npy`` file, memory-mapped."""
    parts = [
        np.load(folder / f"{modality}.npy", mmap_mode="r")
        for folder in folders
        if (folder / f"{modality}.npy").exists()
    ]
    file = work / f"gathered-{modality}.npy"
    out = np.lib.format.open_memmap(file, mode="w+", dtype=np.float32, shape=(sum(map(len, parts)), parts[0].shape[1]))
    start = 0
    for part in parts:
        out[start : start + len(part)] = part
        start += len(part)
    out.flush()
    del out
    return np.load(file, mmap_mode="r")


def _records_file(work: Path, shard: int) -> Path:
    return work / "records" / f"records-{shard:06d}.parquet"


def embed_shards(work: Path, shards: int, processes, embed: Callable[[int], object]) -> int:
    """Embed this process's missing shards (``embed(shard)`` → the parts to save); returns how many
    shards this process embedded now (the others were there already)."""
    done = 0
    for shard in range(processes.process_index, shards, processes.num_processes):
        target = work / f"shard-{shard:06d}"
        if target.exists():
            continue
        parts = embed(shard)
        with atomic_directory(target) as staging:
            _save(staging, parts)
        done += 1
    return done


def _save(folder: Path, parts) -> None:
    for modality, vectors in parts.vectors.items():
        np.save(folder / f"{modality}.npy", vectors)
        np.save(folder / f"{modality}_rows.npy", parts.rows[modality])
    thumbnails = pd.DataFrame({"row": list(parts.thumbnails), "jpeg": list(parts.thumbnails.values())})
    thumbnails.to_parquet(folder / "thumbnails.parquet", index=False)
    if parts.image_features is not None:
        np.save(folder / "image_features.npy", parts.image_features)
    write_json(folder / "skipped.json", parts.skipped)


def load_shards(work: Path, count: int) -> dict:
    """Every shard's parts in shard order (as one process would have produced them). Each modality's
    vectors are gathered into one file of the work folder and returned memory-mapped: at millions of
    records they are page cache the kernel may reclaim, not the assembling process's own memory."""
    rows: dict[str, list] = {}
    thumbnails: dict[int, bytes] = {}
    skipped: list[dict] = []
    features = []
    folders = [work / f"shard-{shard:06d}" for shard in range(count)]
    for folder in folders:
        if not folder.exists():
            raise FileNotFoundError(f"{folder} is missing: a process of this build did not finish")
        for path in sorted(folder.glob("*_rows.npy")):
            rows.setdefault(path.name[: -len("_rows.npy")], []).append(np.load(path))
        table = pd.read_parquet(folder / "thumbnails.parquet")
        thumbnails.update(zip(table["row"].tolist(), table["jpeg"].tolist(), strict=True))
        skipped += json.loads((folder / "skipped.json").read_text())
        if (folder / "image_features.npy").exists():
            features.append(np.load(folder / "image_features.npy"))
    return {
        "vectors": {modality: _gathered(work, folders, modality) for modality in rows},
        "rows": {m: np.concatenate(r).astype(np.int64) for m, r in rows.items()},
        "thumbnails": thumbnails,
        "skipped": skipped,
        "image_features": np.concatenate(features) if features else None,
    }
