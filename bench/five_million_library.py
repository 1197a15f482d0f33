"""A library of five million barcodes opened and searched on this laptop-sized machine, as the app and
`clibd identify` use it.

Embedding 5M barcodes on 2 CPU cores would take about 2.5 hours, so the library is made from the
1M-record library that bench/million_library.py builds (its real-like BIOSCAN-5M-layout source, the
shipped DNA model): every record five times under new ids, copies 2-5 with 0.5 % of their bases
substituted and their DNA vectors moved by a little noise (renormalised; not re-embedded). The
copy keeps the 1M library's taxonomy texts, calibration and domain. What is real: the metadata table
and barcodes of 5M records, and the index that library/indexes.py chooses for 5M vectors under the
default budget (IVF-PQ, read memory-mapped, re-ranked from float16 vectors on disk), written in the
library format. No seed index: libraries above 2M records have none (library/build.py SEED_LIMIT).

Measured, each in a fresh process: opening (time, resident memory), then 300 single barcode queries
answered one at a time through ``identify`` (p50 / p99 per query, peak resident memory), and
``clibd identify`` of the 1,000 benchmark queries (wall time and peak under GNU time).

    .venv/bin/python bench/five_million_library.py [--source /tmp/clibd-million/library] [--out-dir /tmp/clibd-five]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.library.barcode_file import write_barcodes
from clibd_core.library.indexes import INDEX_MEMORY, describe, new_index, train
from clibd_core.library.store import CURRENT, Library

COPIES = 5
sys.path.insert(0, str(Path(__file__).parent))
from library_scale import resident_memory  # noqa: E402 - the sibling benchmarks' helpers
from million_library import BASES, timed  # noqa: E402


def make_library(source: Path, out: Path) -> dict:
    """The 5M-record library, written version by version as library/build.py lays one out."""
    one = Library.open(source)
    rng = np.random.default_rng(0)
    if out.exists():
        shutil.rmtree(out)
    version = out / "v000001"
    version.mkdir(parents=True)
    size = len(one.metadata)
    vectors = one.vectors("dna")
    positions = one.positions("dna", np.arange(size))
    assert (positions >= 0).all(), "every record of the source library has a barcode"
    started = time.time()
    metadata = pd.concat([_renamed(one.metadata, copy) for copy in range(COPIES)], ignore_index=True)
    metadata.to_parquet(version / "metadata.parquet", index=False)
    write_barcodes(version, (b for copy in range(COPIES) for b in _barcodes(one, copy, rng)))
    index = new_index(vectors.shape[1], COPIES * size, INDEX_MEMORY)
    train(index, vectors)
    stored = np.lib.format.open_memmap(
        version / "dna_vectors.npy", mode="w+", dtype=np.float16, shape=(COPIES * size, vectors.shape[1])
    )
    for copy in range(COPIES):
        moved = vectors[positions] if copy == 0 else _moved(vectors[positions], rng)
        index.add(moved)
        stored[copy * size : (copy + 1) * size] = moved
    stored.flush()
    del stored
    faiss.write_index(index, str(version / "dna.faiss"))
    np.save(version / "dna_rows.npy", np.arange(COPIES * size, dtype=np.int64))
    shutil.copy(one.version_dir / "text.faiss", version / "text.faiss")
    shutil.copy(one.version_dir / "text_rows.npy", version / "text_rows.npy")
    facts = {
        **one.facts,
        "name": out.name,
        "records": COPIES * size,
        "index": {**one.facts["index"], "dna": describe(index, INDEX_MEMORY)},
        "description": f"{COPIES} copies of {source} (bench/five_million_library.py)",
    }
    (version / "library.json").write_text(json.dumps(facts, indent=2))
    (out / CURRENT).write_text(version.name)
    on_disk = sum(f.stat().st_size for f in version.iterdir())
    return {"records": COPIES * size, "made_s": round(time.time() - started, 1), "on_disk_mb": round(on_disk / 2**20)}


def _renamed(metadata: pd.DataFrame, copy: int) -> pd.DataFrame:
    renamed = metadata.copy()
    renamed["id"] = renamed["id"] + f"-{copy}"
    return renamed


def _barcodes(library: Library, copy: int, rng: np.random.Generator):
    for chunk in library.barcodes.chunks():
        for barcode in chunk:
            if copy == 0 or barcode is None:
                yield barcode
                continue
            sequence = np.frombuffer(barcode.encode(), dtype=np.uint8).copy()
            where = rng.random(len(sequence)) < 0.005
            sequence[where] = BASES[rng.integers(4, size=int(where.sum()))]
            yield sequence.tobytes().decode()


def _moved(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    moved = vectors + rng.normal(scale=0.02 / np.sqrt(vectors.shape[1]), size=vectors.shape).astype(np.float32)
    return moved / np.linalg.norm(moved, axis=1, keepdims=True)


def searched(library: Path, queries: Path) -> dict:
    """In this (fresh) process: open, then single barcode queries through identify, as the app sends them."""
    from clibd_core.dna import parse_sequences
    from clibd_core.library.identification import Query
    from clibd_core.library.search import identify
    from clibd_core.models.clibd import load_model

    model = load_model(Library.open(library, with_indexes=False).model_path, device="cpu")
    started = time.time()
    opened = Library.open(library)
    report = {"open_s": round(time.time() - started, 2), "resident_after_open_mb": resident_memory()}
    sequences = parse_sequences(queries.read_text())[:300]
    times = []
    for query_id, sequence in sequences:
        began = time.perf_counter()
        identify(opened, model, [Query(query_id, barcode=sequence)])
        times.append(1000 * (time.perf_counter() - began))
    report["single_query_ms"] = {
        "p50": round(float(np.percentile(times[10:], 50)), 1),
        "p99": round(float(np.percentile(times[10:], 99)), 1),
    }
    report["resident_after_queries_mb"] = resident_memory()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", default="/tmp/clibd-million/library")
    parser.add_argument("--queries", default="/tmp/clibd-million/queries.fasta")
    parser.add_argument("--out-dir", default="/tmp/clibd-five")
    parser.add_argument("--out", default="docs/bench_five_million_library.json")
    parser.add_argument("--search-only", action="store_true", help=argparse.SUPPRESS)  # the fresh process
    args = parser.parse_args()
    library = Path(args.out_dir) / "library"
    if args.search_only:
        print(json.dumps(searched(library, Path(args.queries))))
        return
    report = {"machine": "2 CPU cores, no GPU", "made": make_library(Path(args.source), library)}
    print(json.dumps(report), flush=True)
    fresh = [sys.executable, __file__, "--out-dir", args.out_dir, "--queries", args.queries, "--search-only"]
    done = subprocess.run(fresh, check=True, capture_output=True, text=True)
    report["search"] = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(report["search"]), flush=True)
    command = ["-m", "clibd_core.cli", "identify", "--library", str(library), "--fasta", args.queries]
    answered = timed([sys.executable, *command, "--out", str(Path(args.out_dir) / "answers.csv")])
    report["identify_1000"] = {k: answered[k] for k in ("seconds", "peak_resident_mb")}
    report["index"] = json.loads((library / "v000001" / "library.json").read_text())["index"]["dna"]
    print(json.dumps(report["identify_1000"]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
