"""Libraries of millions on a laptop: the index the budget chooses for 5M vectors, built, opened and
searched as the app does, at the lite dimension (256) and the paper's (768).

Vectors are synthetic and embedding-like: L2-normalised points around 50,000 "species" centres that
nest like a taxonomy (20 orders → 300 families → 1,500 genera → species, each a perturbation of its
parent, as a trained model places related species near each other), generated in chunks straight to
a float16 file: the file a compressed library keeps for exact
re-ranking. The index is chosen by library/indexes.py under the default 4 GB budget, trained and
filled as library/build.py does, written, then opened and searched in a fresh process (so its
resident memory is the searcher's alone): open time, resident memory and its peak, single-query p50/p99
latency and recall@10 against exact search over the same stored vectors, with a taxon-like
restriction to a tenth of the references as well.

    .venv/bin/python bench/library_scale.py [--sizes 5000000] [--dims 256 768] [--work /tmp/clibd-scale]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.library.indexes import INDEX_MEMORY, describe, index_kind, new_index, train

CENTRES = 50_000
CHUNK = 250_000
QUERIES = 300


def write_vectors(path: Path, size: int, dim: int) -> None:
    """``size`` embedding-like unit vectors as a float16 .npy file, chunk by chunk (bounded memory)."""
    rng = np.random.default_rng(dim)
    centres = _taxonomy_centres(dim, rng)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(size, dim))
    for start in range(0, size, CHUNK):
        out[start : start + CHUNK] = _around(centres, min(CHUNK, size - start), rng)
    out.flush()
    np.save(path.with_name(f"queries_{dim}.npy"), _around(centres, QUERIES, np.random.default_rng(dim + 1)))


def _taxonomy_centres(dim: int, rng: np.random.Generator) -> np.ndarray:
    level = rng.normal(size=(20, dim)).astype(np.float32)
    for count, spread in ((300, 0.9), (1500, 0.7), (CENTRES, 0.5)):
        parents = level[rng.integers(len(level), size=count)]
        level = parents + rng.normal(scale=spread, size=(count, dim)).astype(np.float32) * np.linalg.norm(
            parents, axis=1, keepdims=True
        ) / np.sqrt(dim)
        level /= np.linalg.norm(level, axis=1, keepdims=True)
    return level


def _around(centres: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    points = centres[rng.integers(len(centres), size=count)] + rng.normal(
        scale=0.3 / np.sqrt(centres.shape[1]), size=(count, centres.shape[1])
    ).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def exact_top10(vectors: np.ndarray, queries: np.ndarray, allowed: np.ndarray | None = None) -> np.ndarray:
    best_scores = np.full((len(queries), 10), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(queries), 10), dtype=np.int64)
    for start in range(0, len(vectors), CHUNK):
        ids = np.arange(start, min(start + CHUNK, len(vectors)))
        if allowed is not None:
            ids = ids[allowed[ids]]
        scores = queries @ np.asarray(vectors[ids[0] : ids[-1] + 1], dtype=np.float32)[ids - ids[0]].T
        ids = np.broadcast_to(ids, scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        top = np.argsort(-merged_scores, axis=1)[:, :10]
        best_scores = np.take_along_axis(merged_scores, top, axis=1)
        best_ids = np.take_along_axis(merged_ids, top, axis=1)
    return best_ids


def build(work: Path, size: int, dim: int, memory: int) -> dict:
    vectors_file = work / f"dna_vectors_{dim}.npy"
    started = time.time()
    write_vectors(vectors_file, size, dim)
    generated = time.time() - started
    stored = np.load(vectors_file, mmap_mode="r")
    index = new_index(dim, size, memory)
    started = time.time()
    train(index, stored)
    trained = time.time() - started
    for start in range(0, size, CHUNK):
        index.add(np.asarray(stored[start : start + CHUNK], dtype=np.float32))
    faiss.write_index(index, str(work / f"dna_{dim}.faiss"))
    built = time.time() - started
    queries = np.load(work / f"queries_{dim}.npy")
    allowed = np.arange(size) % 10 == 3  # a restriction to a tenth of the library, spread through it
    np.save(work / f"truth_{dim}.npy", exact_top10(stored, queries))
    np.save(work / f"truth_restricted_{dim}.npy", exact_top10(stored, queries, allowed))
    return {
        "kind": index_kind(size, dim, memory),
        "index": describe(index, memory),
        "generate_s": round(generated, 1),
        "train_s": round(trained, 1),
        "build_s": round(built, 1),
        "index_file_mb": round((work / f"dna_{dim}.faiss").stat().st_size / 2**20),
        "vectors_file_mb": round(vectors_file.stat().st_size / 2**20),
    }


def search(work: Path, dim: int) -> dict:
    """In a fresh process: open as Library.open does, then single queries as identify sends them."""
    from clibd_core.library.indexes import read_index
    from clibd_core.library.store import Library
    from clibd_core.library.vector_file import VectorFile

    started = time.time()
    index = read_index(work / f"dna_{dim}.faiss", compressed=True)
    stored = VectorFile(work / f"dna_vectors_{dim}.npy")
    metadata = pd.DataFrame(index=range(index.ntotal))  # searching reads only the number of rows
    library = Library(work, work, {}, metadata, {"dna": index}, {"dna": np.arange(index.ntotal)}, None, {"dna": stored})
    opened = time.time() - started
    queries = np.load(work / f"queries_{dim}.npy")
    result = {"open_s": round(opened, 2), "resident_after_open_mb": resident_memory()}
    allowed = np.flatnonzero(np.arange(index.ntotal) % 10 == 3)
    for name, rows, truth in (
        ("all", None, np.load(work / f"truth_{dim}.npy")),
        ("restricted_to_a_tenth", allowed, np.load(work / f"truth_restricted_{dim}.npy")),
    ):
        times, found = [], []
        for query in queries:
            began = time.perf_counter()
            found.append(library.search("dna", query[None, :], 10, rows)[1][0])
            times.append(1000 * (time.perf_counter() - began))
        result[name] = {
            "p50_ms": round(float(np.percentile(times[10:], 50)), 2),
            "p99_ms": round(float(np.percentile(times[10:], 99)), 2),
            "recall_at_10": round(
                float(np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])), 4
            ),
        }
    result["resident_after_searches_mb"] = resident_memory()
    return result


def resident_memory() -> dict:
    """Resident memory now, split into anonymous (the process's own) and file-backed pages (the
    memory-mapped index: page cache the kernel can drop and re-read), and its peak (VmHWM: this
    process's own; getrusage's ru_maxrss would report the parent's peak, inherited across exec)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[name] = round(int(value.split()[0]) / 1024)
    return fields


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5_000_000])
    parser.add_argument("--dims", type=int, nargs="+", default=[256, 768])
    parser.add_argument("--work", default="/tmp/clibd-scale")
    parser.add_argument("--out", default="docs/bench_library_scale.json")
    parser.add_argument("--index-memory", type=float, default=INDEX_MEMORY / 2**30, help="budget, GB")
    parser.add_argument("--search-only", type=int, help=argparse.SUPPRESS)  # the fresh searching process
    args = parser.parse_args()
    work = Path(args.work)
    if args.search_only:
        print(json.dumps(search(work, args.search_only)))
        return
    work.mkdir(parents=True, exist_ok=True)
    report = {}
    for size in args.sizes:
        for dim in args.dims:
            entry = build(work, size, dim, int(args.index_memory * 2**30))
            if entry["kind"] != "ivfpq":
                raise SystemExit(
                    f"{size} x {dim} gets a {entry['kind']} index under this budget: nothing to measure here"
                )
            searched = subprocess.run(
                [sys.executable, __file__, "--work", str(work), "--search-only", str(dim)],
                check=True,
                capture_output=True,
                text=True,
            )
            entry.update(json.loads(searched.stdout.strip().splitlines()[-1]))
            report[f"{size}x{dim}"] = entry
            print(json.dumps({f"{size}x{dim}": entry}, indent=2), flush=True)
            for leftover in work.glob(f"*_{dim}.*"):
                leftover.unlink()
    Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
