"""Embedding a library's records in shards: any number of processes (``accelerate launch``), each shard
written as it finishes, a killed build resumed where it stopped.

Shard ``i`` holds records ``[i·S, (i+1)·S)`` (S: ``SHARD_RECORDS`` unless the build says otherwise) and
is embedded by process ``i mod P``, in the same batches whatever ``P`` is, so a build of any number of
processes yields the vectors of a single-process build.
Shards live in a work folder beside the library (``.build-NAME``), keyed by the model and the records,
and are removed once the library is committed.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from clibd_core.data.records import Record
from clibd_core.fileio import atomic_directory, write_json

SHARD_RECORDS = 4096


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


def prepare(work: Path, model_fingerprint: str, records: Sequence[Record], processes, shard_records: int) -> int:
    """The number of shards; the work folder is kept only if it holds shards of this very build."""
    if shard_records < 1:
        raise ValueError(f"shards need at least one record, not {shard_records}")
    key = hashlib.sha256("\n".join([model_fingerprint or "", *(r.id for r in records)]).encode()).hexdigest()
    description = {"key": key, "records": len(records), "shard_records": shard_records}
    if processes.is_main_process:
        marker = work / "build.json"
        if marker.exists() and json.loads(marker.read_text()) != description:
            shutil.rmtree(work)
        work.mkdir(parents=True, exist_ok=True)
        write_json(marker, description)
    processes.wait_for_everyone()
    return -(-len(records) // shard_records)


def embed_shards(work: Path, records: Sequence[Record], shard_records: int, processes, embed: Callable) -> int:
    """Embed this process's missing shards (``embed(records, first_row)`` → the parts to save); returns
    how many shards this process embedded now (the others were there already)."""
    done = 0
    count = -(-len(records) // shard_records)
    for shard in range(processes.process_index, count, processes.num_processes):
        target = work / f"shard-{shard:06d}"
        if target.exists():
            continue
        first = shard * shard_records
        parts = embed(records[first : first + shard_records], first)
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
    """Every shard's parts, concatenated in shard order (as one process would have produced them)."""
    vectors: dict[str, list] = {}
    rows: dict[str, list] = {}
    thumbnails: dict[int, bytes] = {}
    skipped: list[dict] = []
    features = []
    for shard in range(count):
        folder = work / f"shard-{shard:06d}"
        if not folder.exists():
            raise FileNotFoundError(f"{folder} is missing: a process of this build did not finish")
        for path in sorted(folder.glob("*_rows.npy")):
            modality = path.name[: -len("_rows.npy")]
            vectors.setdefault(modality, []).append(np.load(folder / f"{modality}.npy"))
            rows.setdefault(modality, []).append(np.load(path))
        table = pd.read_parquet(folder / "thumbnails.parquet")
        thumbnails.update(zip(table["row"].tolist(), table["jpeg"].tolist(), strict=True))
        skipped += json.loads((folder / "skipped.json").read_text())
        if (folder / "image_features.npy").exists():
            features.append(np.load(folder / "image_features.npy"))
    return {
        "vectors": {m: np.concatenate(v) for m, v in vectors.items()},
        "rows": {m: np.concatenate(r).astype(np.int64) for m, r in rows.items()},
        "thumbnails": thumbnails,
        "skipped": skipped,
        "image_features": np.concatenate(features) if features else None,
    }
