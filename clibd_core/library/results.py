"""Identification results as files: CSV (provenance as leading ``#`` lines) or Parquet (provenance in
the file's key-value metadata), with the top-k neighbours in a second file beside the first and the query
embeddings in a third (:func:`write_bundle`, what the CLI and the app both write)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from clibd_core.fileio import atomic_file
from clibd_core.library.identification import Identification
from clibd_core.library.naming import CONFIDENT
from clibd_core.library.search import neighbours_table, results_table
from clibd_core.library.store import Library
from clibd_core.taxonomy import RANKS


def provenance(library: Library, model) -> dict:
    """What produced the answers: model, library, time and thresholds."""
    novelty = {
        pair: (c.get("novelty") or {}).get("threshold") for pair, c in library.facts.get("calibration", {}).items()
    }
    return {
        "model_fingerprint": model.fingerprint or "",
        "model_path": str(model.source_dir or ""),
        "library": library.name,
        "library_path": str(library.path),
        "library_version": library.version_dir.name,
        "library_records": str(len(library.metadata)),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "confidence_threshold": str(CONFIDENT),
        "novelty_thresholds": json.dumps(novelty),
    }


def neighbours_path(path: str | Path) -> Path:
    path = Path(path)
    return path.with_name(f"{path.stem}.neighbours{path.suffix}")


def write_results(results: Sequence[Identification], path: str | Path, library: Library, model) -> list[Path]:
    """Write the results table and the neighbours table (CSV or Parquet by suffix), atomically."""
    facts = provenance(library, model)
    written = []
    for table, target in ((results_table(results), Path(path)), (neighbours_table(results), neighbours_path(path))):
        _write_table(table, target, facts)
        written.append(target)
    return written


def _write_table(table: pd.DataFrame, path: Path, facts: dict) -> None:
    with atomic_file(path) as temporary:
        if path.suffix.lower() == ".parquet":
            arrow = pa.Table.from_pandas(table, preserve_index=False)
            metadata = {
                **(arrow.schema.metadata or {}),
                **{f"clibd.{k}".encode(): v.encode() for k, v in facts.items()},
            }
            pq.write_table(arrow.replace_schema_metadata(metadata), temporary)
        else:
            with open(temporary, "w", newline="") as out:
                out.writelines(f"# {key}: {value}\n" for key, value in facts.items())
                table.to_csv(out, index=False)


def embeddings_table(results: Sequence[Identification]) -> pd.DataFrame:
    """Query embeddings in the emb-explorer layout: ``uuid``, ``emb`` (a float list) and the lineage found."""
    usable = [r for r in results if r.embedding is not None]
    return pd.DataFrame(
        {
            "uuid": [r.query_id for r in usable],
            "emb": [r.embedding for r in usable],
            **{rank: [r.ranks[rank].name if rank in r.ranks else "" for r in usable] for rank in RANKS},
        }
    )


def read_results(path: str | Path) -> pd.DataFrame:
    """Read a results file written by :func:`write_results` (the ``#`` lines are skipped)."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path, comment="#")


def write_bundle(results: Sequence[Identification], path: str | Path, library: Library, model) -> list[Path]:
    """Everything one identification run produces, as the CLI and the app's Batch both write it: the
    results and neighbours tables (CSV or Parquet by ``path``'s suffix, provenance inside), and the query
    embeddings as Parquet (emb-explorer layout) beside them."""
    path = Path(path)
    written = write_results(results, path, library, model)
    embeddings = path.with_name(f"{path.stem}.embeddings.parquet")
    with atomic_file(embeddings) as temporary:
        embeddings_table(results).to_parquet(temporary, index=False)
    return [*written, embeddings]
