"""Reference libraries on disk: metadata, one FAISS index per modality, thumbnails, provenance.

A library directory holds numbered versions and a ``CURRENT`` file naming the live one::

    LIB_DIR/CURRENT             "v000002"
    LIB_DIR/v000002/library.json       format, model fingerprint, counts, index facts, provenance, calibration
    LIB_DIR/v000002/metadata.parquet   one row per reference record (id, ranks, bin, country, ...)
    LIB_DIR/v000002/barcodes.txt, barcodes_offsets.npy  the records' barcodes, read by row
                                       (library/barcode_file.py; format 1 kept them in the metadata)
    LIB_DIR/v000002/{modality}.faiss   the vectors of that modality (Flat, HNSW or IVF-PQ: library/indexes.py);
                                       "kmer" holds the barcodes' 5-mer profiles (library/kmers.py)
                                       when the model's DNA tower does not embed them itself
    LIB_DIR/v000002/{modality}_rows.npy  metadata row of each index entry
    LIB_DIR/v000002/{modality}_vectors.npy  float16 vectors beside an IVF-PQ index (exact re-ranking),
                                       read row by row (library/vector_file.py)
    LIB_DIR/v000002/thumbnails.parquet  small JPEGs of the reference images (for galleries)
    LIB_DIR/v000002/seeds_*.npy         the barcodes' seed index (library/seeds.py), memory-mapped

A build or an append (library/build.py) writes a complete new version beside the live one and then
replaces ``CURRENT`` with one atomic rename, so a process killed at any moment leaves the previous
library intact and loadable; leftovers of killed writes are removed by the next write. This module
reads and searches libraries; it knows nothing of identification.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.data.records import Record
from clibd_core.library.barcode_file import FILES as BARCODE_FILES
from clibd_core.library.barcode_file import BarcodeColumn, BarcodeFile
from clibd_core.library.indexes import (
    FEW_QUERIES,
    HNSW_EF_SEARCH,
    IVF_NPROBE,
    IVF_RERANK,
    flat_search_few,
    flat_vectors,
    read_index,
    ties_by_position,
)
from clibd_core.library.seeds import SeedIndex
from clibd_core.library.vector_file import VectorFile
from clibd_core.taxonomy import ALL_RANKS, MISSING

FORMAT = "clibd-library"
FORMAT_VERSION = 2  # 2: barcodes beside the metadata (format 1 libraries are still read)
METADATA_COLUMNS = ("id", *ALL_RANKS, "bin", "split", "country", "latitude", "longitude", "source")
CURRENT = "CURRENT"
SUSPECT_OVERFETCH = 4  # up to 4 k more neighbours fetched, for a query near a batch of mislabelled references


class LibraryError(ValueError):
    """A library that cannot be opened, written or used as asked."""


class ModelMismatchError(LibraryError):
    """Queries embedded by a model other than the library's: their vectors are not comparable."""


@dataclass
class Library:
    """An opened library version. Vectors stay inside the FAISS indexes (no second copy in memory)."""

    path: Path
    version_dir: Path
    facts: dict
    metadata: pd.DataFrame
    indexes: dict[str, faiss.Index] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    seeds: SeedIndex | None = None  # shared 12-mers of the barcodes (absent from older libraries)
    stored: dict[str, VectorFile] = field(default_factory=dict)  # vectors beside IVF-PQ indexes, on disk
    barcodes: BarcodeFile | BarcodeColumn = field(default_factory=lambda: BarcodeColumn(np.zeros(0)))
    _columns: dict[str, object] = field(default_factory=dict, repr=False)  # what derived() made

    @classmethod
    def open(cls, path: str | Path, with_indexes: bool = True) -> Library:
        """Open the live version; ``with_indexes=False`` reads only facts and metadata (for listings)."""
        path = Path(path)
        version_dir = _current_version(path)
        facts = _read_file(version_dir / "library.json", _read_facts)
        metadata = _read_file(version_dir / "metadata.parquet", pd.read_parquet)
        library = cls(path, version_dir, facts, metadata)
        if "barcode" in metadata:  # format 1
            library.barcodes = BarcodeColumn(metadata.pop("barcode").to_numpy(dtype=object))
        else:
            library.barcodes = _read_file(version_dir / BARCODE_FILES[0], lambda file: BarcodeFile(file.parent))
        for modality in facts["modalities"] if with_indexes else ():
            compressed = facts["index"].get(modality, {}).get("type", "").startswith("IndexIVF")
            index = _read_file(version_dir / f"{modality}.faiss", partial(read_index, compressed=compressed))
            library.rows[modality] = _read_file(version_dir / f"{modality}_rows.npy", np.load)
            if index.ntotal != len(library.rows[modality]):
                raise LibraryError(f"{version_dir / f'{modality}.faiss'} does not match its rows file: damaged")
            if compressed:
                stored = version_dir / f"{modality}_vectors.npy"
                library.stored[modality] = _read_file(stored, VectorFile)
            library.indexes[modality] = index
        if with_indexes:
            library.seeds = SeedIndex.open(version_dir, len(metadata))
        return library

    def column(self, name: str) -> np.ndarray:
        """A metadata column as a NumPy object array, made once (per-query pandas access is slow). Each
        distinct value is one string shared by its rows: a rank column of 5M records costs 40 MB this
        way, 0.35 GB as a string per row. (Columns of distinct values, like ids, are better read by
        row.)"""

        def made():
            codes, uniques = pd.factorize(self.metadata[name], use_na_sentinel=False)
            return np.asarray(uniques, dtype=object)[codes]

        return self.derived(name, made)

    def derived(self, key: str, make):
        """A value derived from this opened version (a column, a lookup table), made once on first use."""
        if key not in self._columns:
            self._columns[key] = make()
        return self._columns[key]

    @property
    def modalities(self) -> list[str]:
        return list(self.facts["modalities"])

    @property
    def fingerprint(self) -> str:
        return self.facts["model_fingerprint"]

    @property
    def name(self) -> str:
        return self.facts.get("name") or self.path.name

    @property
    def dna_precision(self) -> str:
        """The DNA tower's number format the barcodes were embedded in (fp32 for libraries that predate
        the choice): queries and appended barcodes are embedded in it too, as the references were."""
        return self.facts.get("build", {}).get("dna_precision", {}).get("chosen", "fp32")

    @property
    def model_path(self) -> Path | None:
        """The model directory the library was built with (a relative path is relative to the library)."""
        recorded = self.facts.get("model", {}).get("path")
        return (self.path / recorded).resolve() if recorded else None

    def check_model(self, model) -> None:
        """Refuse a model whose embeddings are not those of this library."""
        if model.fingerprint != self.fingerprint:
            raise ModelMismatchError(
                f"the library {self.name} was built with model {self.fingerprint[:12]} "
                f"({self.facts.get('model', {}).get('path', 'unknown path')}), but the query model is "
                f"{(model.fingerprint or 'unsaved')[:12]}: embeddings of different models cannot be compared. "
                "Use the library's model, or build a library with this model (clibd build-library)."
            )

    def positions(self, modality: str, rows: np.ndarray) -> np.ndarray:
        """Index positions of metadata rows in one modality's index (-1 where the row has none)."""
        return self.derived(f"positions:{modality}", lambda: pd.Index(self.rows[modality])).get_indexer(rows)

    def vectors(self, modality: str) -> np.ndarray:
        """All vectors of one modality (reconstructed from its index, or read), in index order."""
        if modality in self.stored:
            return self.stored[modality].all()
        index = self.indexes[modality]
        return index.reconstruct_n(0, index.ntotal)

    def vectors_at(self, modality: str, positions: np.ndarray) -> np.ndarray:
        """The vectors at some index positions."""
        if modality in self.stored:
            return self.stored[modality].take(positions)
        return self.indexes[modality].reconstruct_batch(np.asarray(positions, dtype=np.int64))

    def row_mask(self, rows: np.ndarray) -> np.ndarray:
        """A boolean mask over the metadata rows, True at ``rows`` (built in one pass)."""
        mask = np.zeros(len(self.metadata), dtype=bool)
        mask[rows] = True
        return mask

    @property
    def suspect_records(self) -> list[dict]:
        """The references the build found filed under the wrong species (library/suspects.py): never
        voted with; none in libraries built before the check."""
        return self.facts.get("suspect_labels", {}).get("records", [])

    @property
    def suspect_rows(self) -> np.ndarray:
        """Metadata rows of :attr:`suspect_records`."""
        return self.derived("suspect rows", lambda: np.array([r["row"] for r in self.suspect_records], dtype=np.int64))

    @property
    def suspect_mask(self) -> np.ndarray:
        """A boolean mask over the metadata rows, True at :attr:`suspect_rows`."""
        return self.derived("suspect mask", lambda: self.row_mask(self.suspect_rows))

    def search(
        self, modality: str, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and metadata rows of each query's ``k`` nearest references (-1 = none),
        passing over the suspect references (enough more are fetched that k others remain)."""
        suspects = self.suspect_rows
        if not len(suspects):
            return self._search(modality, queries, k, allowed_rows)
        fetched = k + min(len(suspects), SUSPECT_OVERFETCH * k)
        similarities, rows = self._search(modality, queries, fetched, allowed_rows)
        suspect = self.suspect_mask[np.maximum(rows, 0)] & (rows >= 0)
        keep = np.argsort(suspect, axis=1, kind="stable")[:, :k]  # the others first, in their order
        return np.take_along_axis(similarities, keep, axis=1), np.take_along_axis(rows, keep, axis=1)

    def _search(
        self, modality: str, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        index = self.indexes[modality]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        allowed = None if allowed_rows is None else self.row_mask(allowed_rows)[self.rows[modality]]
        selector = _selector(allowed)  # FAISS reads it during the search: held here till then
        if isinstance(index, faiss.IndexFlatIP) and len(queries) < FEW_QUERIES and allowed is None and index.ntotal:
            vectors = self.derived(f"flat vectors:{modality}", lambda: flat_vectors(index))
            similarities, positions = flat_search_few(vectors, queries, min(k, index.ntotal))
        elif modality in self.stored:
            similarities, positions = self._reranked(modality, queries, k, selector)
        else:
            params = _params(index, selector, k)
            similarities, positions = index.search(queries, min(k, max(index.ntotal, 1)), params=params)
        similarities, positions = ties_by_position(similarities, positions)  # the missing (-1) stay last
        rows = np.where(positions >= 0, self.rows[modality][np.maximum(positions, 0)], -1)
        return similarities, rows

    def _reranked(self, modality: str, queries: np.ndarray, k: int, selector) -> tuple[np.ndarray, np.ndarray]:
        """A compressed index's shortlist, re-ranked by exact similarity with the stored vectors."""
        params = faiss.SearchParametersIVF(nprobe=IVF_NPROBE, sel=selector)
        _, shortlist = self.indexes[modality].search(queries, max(IVF_RERANK, k), params=params)
        stored = self.stored[modality]
        similarities = np.full(shortlist.shape, -np.inf, dtype=np.float32)
        for i, (query, found) in enumerate(zip(queries, shortlist, strict=True)):
            usable = found >= 0
            shortlist[i, usable] = np.sort(found[usable])  # rows read in file order
            similarities[i, usable] = stored.take(shortlist[i, usable]) @ query
        order = np.argsort(-similarities, axis=1)[:, :k]
        positions = np.take_along_axis(shortlist, order, axis=1)
        similarities = np.take_along_axis(similarities, order, axis=1)
        return similarities, np.where(np.isfinite(similarities), positions, -1)

    def select_rows(self, taxon: str | None = None, country: str | None = None) -> np.ndarray | None:
        """Metadata rows whose lineage names ``taxon`` (at any rank) and whose country is ``country``
        (case-insensitive); None when nothing restricts."""
        if not taxon and not country:
            return None
        keep = np.ones(len(self.metadata), dtype=bool)
        if taxon:
            wanted = taxon.strip().lower()
            keep &= np.any([self.metadata[rank].str.lower().to_numpy() == wanted for rank in ALL_RANKS], axis=0)
        if country:
            keep &= self.metadata["country"].fillna("").str.lower().to_numpy() == country.strip().lower()
        return np.flatnonzero(keep)

    def thumbnails(self, rows: Sequence[int]) -> dict[int, bytes]:
        """JPEG thumbnails of the given metadata rows, where the reference has an image."""
        path = self.version_dir / "thumbnails.parquet"
        if not path.exists() or not len(rows):
            return {}
        table = pd.read_parquet(path, filters=[("row", "in", [int(r) for r in rows])])
        return dict(zip(table["row"].tolist(), table["jpeg"].tolist(), strict=True))

    def summary(self) -> dict:
        """Counts and provenance, as `clibd` and the app list them."""
        meta = self.metadata
        return {
            "name": self.name,
            "path": str(self.path),
            "version": self.version_dir.name,
            "records": len(meta),
            **{f"{rank}_count": int((meta[rank] != MISSING).groupby(meta[rank]).any().sum()) for rank in ALL_RANKS},
            "vectors": {m: facts["vectors"] for m, facts in self.facts["index"].items()},
            "index": self.facts["index"],
            "model_fingerprint": self.fingerprint,
            "model": self.facts.get("model", {}),
            "created": self.facts.get("created"),
            "sources": self.facts.get("sources", []),
            "description": self.facts.get("description", ""),
            "orders": sorted(set(meta["order"]) - {MISSING}),
            # references whose barcode lies nearer another species than their own (library/suspects.py): not voted with
            "suspect_labels": self.suspect_records,
        }


def metadata_table(records: Sequence[Record]) -> pd.DataFrame:
    """The metadata rows of ``records`` as a library stores them (their barcodes go beside)."""
    return pd.DataFrame(
        {
            "id": [r.id for r in records],
            **{rank: [r.taxonomy.get(rank) for r in records] for rank in (*ALL_RANKS, "bin")},
            "split": [r.split for r in records],
            "country": [r.country for r in records],
            "latitude": [r.latitude for r in records],
            "longitude": [r.longitude for r in records],
            "source": [r.source for r in records],
        },
        columns=list(METADATA_COLUMNS),
    )


def _selector(allowed: np.ndarray | None) -> faiss.IDSelector | None:
    """A FAISS selector of the allowed index positions (a bitmap: built in one pass, cheap to test; at
    millions of references a set of ids is not); None when all are allowed."""
    if allowed is None:
        return None
    bitmap = np.packbits(allowed, bitorder="little")
    selector = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bitmap))
    selector.bitmap_array = bitmap  # the selector reads it: keep it alive as long as the selector
    return selector


def _params(index: faiss.Index, selector: faiss.IDSelector | None, k: int) -> faiss.SearchParameters | None:
    if selector is None:
        return None
    if isinstance(index, faiss.IndexHNSW):
        return faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
    return faiss.SearchParameters(sel=selector)


def _current_version(path: Path) -> Path:
    if not path.is_dir():
        raise LibraryError(f"{path}: no such library directory")
    pointer = path / CURRENT
    if not pointer.exists():
        raise LibraryError(f"{path} is not a CLIBD library (no {CURRENT} file); build one with clibd build-library")
    version = path / pointer.read_text().strip()
    if not re.fullmatch(r"v\d{6}", version.name) or not version.is_dir():
        raise LibraryError(f"{path}: {CURRENT} names a missing version ({version.name})")
    return version


def _read_facts(file: Path) -> dict:
    facts = json.loads(file.read_text())
    if facts.get("format") != FORMAT or facts.get("format_version", 0) > FORMAT_VERSION:
        raise LibraryError(f"{file.parent}: not a library this version of clibd reads ({facts.get('format')})")
    return facts


def _read_file(file: Path, read: Callable[[Path], object]):
    """``read(file)``, with any failure (missing, truncated, damaged) as a LibraryError naming the file."""
    try:
        return read(file)
    except LibraryError:
        raise
    except Exception as error:  # noqa: BLE001 - FAISS, Arrow and NumPy each raise their own kinds
        raise LibraryError(
            f"{file} cannot be read ({type(error).__name__}: {str(error)[:200]}): the library is damaged; "
            "rebuild it (clibd build-library --overwrite) or restore it from a backup"
        ) from error
