"""Library search at scale: latency p50/p99 and recall@10 of the index `clibd_core.library.store`
chooses (exact Flat up to 300k vectors, HNSW beyond), at 100k and 1M vectors; index build time;
and the time to open a 100k-record library from disk.

Vectors are synthetic but shaped like embeddings: 256-d, L2-normalised, drawn around 5,000 "species"
centres (queries are fresh draws around random centres), so neighbourhoods are tight as in real
libraries. One query at a time (what the app does), 2 threads.

    .venv/bin/python bench/library_search.py [--sizes 100000 1000000]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.library import build
from clibd_core.library.indexes import new_index
from clibd_core.library.store import Library

DIM = 256
QUERIES = 300


def vectors(n: int, centres: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    picked = centres[rng.integers(len(centres), size=n)]
    out = picked + rng.normal(0, 0.35 / np.sqrt(DIM), size=picked.shape).astype(np.float32)
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def latency(index: faiss.Index, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, dict]:
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        _, ids = index.search(query[None, :], k)
        times.append(1000 * (time.perf_counter() - started))
        found.append(ids[0])
    return np.array(found), {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def recall(found: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact, strict=True)]))


def open_time(n: int, rng: np.random.Generator, centres: np.ndarray) -> dict:
    """Write a library of ``n`` records (vectors as above, a plausible metadata table) and time opening it."""
    species = rng.integers(5000, size=n)
    metadata = pd.DataFrame(
        {
            "id": [f"R{i:07d}" for i in range(n)],
            "order": [f"Order{s % 20}" for s in species],
            "family": [f"Family{s % 300}" for s in species],
            "subfamily": "not_classified",
            "genus": [f"Genus{s % 1500}" for s in species],
            "species": [f"Genus{s % 1500} sp{s}" for s in species],
            "bin": "not_classified",
            "split": None,
            "barcode": ["ACGT" * 164] * n,
            "country": "Canada",
            "latitude": None,
            "longitude": None,
            "source": "bench",
        }
    )
    # Image-like vectors: their calibration needs no model (a barcode library's re-embeds partial reads).
    embedded = build._Embedded(
        {"image": vectors(n, centres, rng)}, {"image": np.arange(n, dtype=np.int64)}, thumbnails={}, skipped=[]
    )
    with tempfile.TemporaryDirectory() as work:
        started = time.time()
        build._write_version(
            Path(work) / "lib", None, {"model_fingerprint": "bench"}, metadata, embedded, None, lambda *a: None
        )
        written = time.time() - started
        started = time.time()
        library = Library.open(Path(work) / "lib")
        opened = time.time() - started
        assert len(library.metadata) == n
    return {"records": n, "write_s": written, "open_s": opened}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--out", default="docs/bench_library_search.json")
    args = parser.parse_args()
    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5000, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    queries = vectors(QUERIES, centres, rng)
    report = {"open": open_time(100_000, rng, centres), "sizes": {}}
    print(report["open"], flush=True)
    for size in args.sizes:
        keys = vectors(size, centres, rng)
        exact = faiss.IndexFlatIP(DIM)
        exact.add(keys)
        truth, flat_latency = latency(exact, queries)
        entry = {"flat": flat_latency}
        chosen = new_index(DIM, size)
        if isinstance(chosen, faiss.IndexHNSW):
            started = time.time()
            chosen.add(keys)
            entry["hnsw_build_s"] = time.time() - started
            for ef in (64, 128, 256):
                chosen.hnsw.efSearch = ef
                found, timing = latency(chosen, queries)
                entry[f"hnsw_ef{ef}"] = {**timing, "recall_at_10": recall(found, truth)}
        entry["chosen"] = type(chosen).__name__
        report["sizes"][str(size)] = entry
        print(size, json.dumps(entry), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
