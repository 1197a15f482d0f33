"""Which FAISS index a library's vectors get, chosen by their number and a memory budget.

- ``flat``: exact search, up to ``EXACT_LIMIT`` vectors when they fit the budget;
- ``hnsw``: a graph over the full vectors (recall@10 ≥ 0.99 at 1M, bench/library_search.py), while
  vectors and graph fit the budget;
- ``ivfpq``: beyond, an inverted file of product-quantised codes (``dim / 8`` bytes a vector), read
  memory-mapped from disk; its shortlist of ``IVF_RERANK`` is re-ranked exactly against the full
  vectors, kept as float16 in a memory-mapped ``{modality}_vectors.npy`` beside it.

The budget (bytes per modality, default ``INDEX_MEMORY``) is set at build time (``clibd build-library
--index-memory GB``) and recorded in library.json, so appends keep choosing by it.
"""

from __future__ import annotations

import math
from pathlib import Path

import faiss
import numpy as np
import torch

INDEX_MEMORY = 4 * 2**30
EXACT_LIMIT = 300_000  # vectors per modality searched exactly; beyond, HNSW (bench/library_search.py)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # recall@10 0.993 at 1M vectors (128: 0.986), bench/library_search.py
IVF_NPROBE = 64  # inverted lists visited per query
IVF_RERANK = 200  # shortlist re-ranked exactly (bench/library_scale.py measures recall and latency)
IVF_TRAIN = 100_000  # vectors the coarse quantiser and the product quantiser are trained on
IVF_MIN = 512  # fewer vectors than this are never compressed (the quantisers need ≥ 256 to train)

# The number of queries from which FAISS searches a flat index with BLAS. As installed (FAISS 1.15),
# batches below about 500 queries took the other path: 4.4 ms a query for a batch of 256 barcodes
# against the default library's 86k vectors, 0.28 ms with BLAS (bench/identify_profile.py). Fewer
# queries than this are searched by torch's matrix product instead (flat_search_few).
FEW_QUERIES = 20
faiss.cvar.distance_compute_blas_threshold = FEW_QUERIES


def index_kind(size: int, dim: int, memory: int = INDEX_MEMORY) -> str:
    """``flat``, ``hnsw`` or ``ivfpq`` for ``size`` vectors of ``dim`` floats under ``memory`` bytes."""
    if size <= EXACT_LIMIT and size * dim * 4 <= memory:
        return "flat"
    if size * (dim * 4 + HNSW_M * 2 * 4) <= memory or size < IVF_MIN:
        return "hnsw"
    return "ivfpq"


def new_index(dim: int, size: int, memory: int = INDEX_MEMORY) -> faiss.Index:
    """An empty index of the kind :func:`index_kind` chooses (an ``ivfpq`` one still needs training)."""
    kind = index_kind(size, dim, memory)
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        index.hnsw.efSearch = HNSW_EF_SEARCH
        return index
    lists = int(np.clip(2 ** round(math.log2(4 * math.sqrt(size))), 64, 65536))
    codes = max(m for m in range(1, dim // 8 + 1) if dim % m == 0)  # bytes per vector, dividing dim
    index = faiss.index_factory(dim, f"IVF{lists}_HNSW32,PQ{codes}", faiss.METRIC_INNER_PRODUCT)
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    ivf.cp.niter = 10
    # Polysemous training (on by default) orders the codes for Hamming filtering, which the search
    # never uses (polysemous_ht stays 0): 27 s of every build on 2 cores for nothing.
    ivf.do_polysemous_training = False
    return index


def flat_vectors(index: faiss.IndexFlat) -> torch.Tensor:
    """A flat index's vectors, as a tensor sharing the index's memory (no copy); valid while it lives."""
    return torch.from_numpy(faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d))


def flat_search_few(vectors: torch.Tensor, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner products and positions of each query's ``k`` nearest ``vectors``, for fewer than
    ``FEW_QUERIES`` queries: one barcode against the default library's 86k × 256 vectors takes 6 ms
    here, 12 ms in FAISS's flat search (what the app meets: one query at a time). Torch's product, not
    numpy's: numpy's BLAS threads would contend with torch's for the 2 cores. (A search among some rows
    only stays with FAISS, which skips the others.)"""
    with torch.inference_mode():
        similarities, positions = (torch.from_numpy(queries) @ vectors.T).topk(k, dim=1)
    return similarities.numpy(), positions.numpy()


def ties_by_position(similarities: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each query's results best first, equal similarities by index position: the same order whichever
    search found them (the references of one haplotype tie, and the first of them is shown as the top hit)."""
    order = np.lexsort((positions, -similarities), axis=-1)
    return np.take_along_axis(similarities, order, axis=1), np.take_along_axis(positions, order, axis=1)


def is_compressed(index: faiss.Index) -> bool:
    return isinstance(index, faiss.IndexIVF)


def train(index: faiss.Index, vectors: np.ndarray, seed: int = 0) -> None:
    """Train an ``ivfpq`` index on at most ``IVF_TRAIN`` of ``vectors`` (others need no training)."""
    if index.is_trained:
        return
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(vectors), min(IVF_TRAIN, len(vectors)), replace=False)
    index.train(np.ascontiguousarray(vectors[np.sort(picked)], dtype=np.float32))


def add_vectors(index: faiss.Index, vectors: np.ndarray, report, chunk: int = 16_384) -> None:
    """``index.add`` in chunks, calling ``report(vectors added)`` after each: an HNSW graph of a large
    library takes minutes to grow, and the progress bar moves while it does."""
    report(0)
    for start in range(0, len(vectors), chunk):
        index.add(np.ascontiguousarray(vectors[start : start + chunk], dtype=np.float32))
        report(min(start + chunk, len(vectors)))


def read_index(file: Path, compressed: bool) -> faiss.Index:
    """An index file; a compressed one memory-mapped (its lists stay on disk until searched)."""
    if compressed:
        index = faiss.read_index(str(file), faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
        faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
        return index
    index = faiss.read_index(str(file))
    if isinstance(index, faiss.IndexHNSW):
        index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def describe(index: faiss.Index, memory: int) -> dict:
    """The facts library.json records about an index."""
    facts = {"type": type(index).__name__, "vectors": int(index.ntotal), "dim": int(index.d), "memory_budget": memory}
    if isinstance(index, faiss.IndexHNSW):
        facts.update(M=HNSW_M, efConstruction=HNSW_EF_CONSTRUCTION, efSearch=HNSW_EF_SEARCH)
    if is_compressed(index):
        ivf = faiss.extract_index_ivf(index)
        facts.update(lists=int(ivf.nlist), code_bytes=int(ivf.code_size), nprobe=IVF_NPROBE, rerank=IVF_RERANK)
    return facts
