"""Reference libraries on disk: metadata, one FAISS index per modality, thumbnails, provenance.

A library directory holds numbered versions and a ``CURRENT`` file naming the live one::

    LIB_DIR/CURRENT             "v000002"
    LIB_DIR/v000002/library.json       format, model fingerprint, counts, index facts, provenance, calibration
    LIB_DIR/v000002/metadata.parquet   one row per reference record (id, ranks, bin, barcode, country, ...)
    LIB_DIR/v000002/{modality}.faiss   the vectors of that modality (Flat, or HNSW for large libraries);
                                       "kmer" holds the barcodes' 5-mer profiles (library/kmers.py)
                                       when the model's DNA tower does not embed them itself
    LIB_DIR/v000002/{modality}_rows.npy  metadata row of each index entry
    LIB_DIR/v000002/thumbnails.parquet  small JPEGs of the reference images (for galleries)

A build or an append writes a complete new version beside the live one and then replaces ``CURRENT``
with one atomic rename, so a process killed at any moment leaves the previous library intact and
loadable; leftovers of killed writes are removed by the next write.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.data.records import Record
from clibd_core.data.transforms import ImageError
from clibd_core.fileio import fsync_tree, write_json
from clibd_core.library.domain import fit_domain
from clibd_core.library.kmers import kmer_profiles
from clibd_core.taxonomy import ALL_RANKS, MISSING, RANKS, Taxonomy, taxonomy_text

FORMAT = "clibd-library"
FORMAT_VERSION = 1
CURRENT = "CURRENT"
EXACT_LIMIT = 300_000  # vectors per modality searched exactly; beyond, HNSW (bench/library_search.py)
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 256  # recall@10 0.993 at 1M vectors (128: 0.986), bench/library_search.py
THUMBNAIL_SIZE = 160
METADATA_COLUMNS = ("id", *ALL_RANKS, "bin", "split", "barcode", "country", "latitude", "longitude", "source")

DOMAIN_SAMPLE = 20_000  # image backbone features kept for fitting the library's image domain
VECTOR_CACHES = "umap_*.parquet"  # files derived from the vectors only (library/projection.py)
Progress = Callable[[str, int, int], None]  # (stage, done, total)


class LibraryError(ValueError):
    """A library that cannot be opened, written or used as asked."""


class ModelMismatchError(LibraryError):
    """Queries embedded by a model other than the library's: their vectors are not comparable."""


def _no_progress(stage: str, done: int, total: int) -> None:  # noqa: ARG001 - the Progress signature
    return None


@dataclass
class Library:
    """An opened library version. Vectors stay inside the FAISS indexes (no second copy in memory)."""

    path: Path
    version_dir: Path
    facts: dict
    metadata: pd.DataFrame
    indexes: dict[str, faiss.Index] = field(default_factory=dict)
    rows: dict[str, np.ndarray] = field(default_factory=dict)
    _columns: dict[str, object] = field(default_factory=dict, repr=False)  # caches of column() and positions()

    @classmethod
    def open(cls, path: str | Path, with_indexes: bool = True) -> Library:
        """Open the live version; ``with_indexes=False`` reads only facts and metadata (for listings)."""
        path = Path(path)
        version_dir = _current_version(path)
        facts = _read_file(version_dir / "library.json", _read_facts)
        metadata = _read_file(version_dir / "metadata.parquet", pd.read_parquet)
        library = cls(path, version_dir, facts, metadata)
        for modality in facts["modalities"] if with_indexes else ():
            index = _read_file(version_dir / f"{modality}.faiss", lambda file: faiss.read_index(str(file)))
            library.rows[modality] = _read_file(version_dir / f"{modality}_rows.npy", np.load)
            if index.ntotal != len(library.rows[modality]):
                raise LibraryError(f"{version_dir / f'{modality}.faiss'} does not match its rows file: damaged")
            if isinstance(index, faiss.IndexHNSW):
                index.hnsw.efSearch = HNSW_EF_SEARCH
            library.indexes[modality] = index
        return library

    def column(self, name: str) -> np.ndarray:
        """A metadata column as a NumPy object array, made once (per-query pandas access is slow)."""
        if name not in self._columns:
            self._columns[name] = self.metadata[name].to_numpy(dtype=object)
        return self._columns[name]

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
        key = f"positions:{modality}"
        if key not in self._columns:
            self._columns[key] = pd.Index(self.rows[modality])
        return self._columns[key].get_indexer(rows)

    def vectors(self, modality: str) -> np.ndarray:
        """All vectors of one modality (reconstructed from its index), in index order."""
        index = self.indexes[modality]
        return index.reconstruct_n(0, index.ntotal)

    def search(
        self, modality: str, queries: np.ndarray, k: int, allowed_rows: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Cosine similarities and metadata rows of each query's ``k`` nearest references (-1 = none)."""
        index = self.indexes[modality]
        queries = np.ascontiguousarray(queries, dtype=np.float32)
        params = None
        if allowed_rows is not None:
            positions = np.flatnonzero(np.isin(self.rows[modality], allowed_rows)).astype(np.int64)
            selector = faiss.IDSelectorBatch(positions)
            params = (
                faiss.SearchParametersHNSW(sel=selector, efSearch=max(HNSW_EF_SEARCH, k))
                if isinstance(index, faiss.IndexHNSW)
                else faiss.SearchParameters(sel=selector)
            )
        similarities, positions = index.search(queries, min(k, max(index.ntotal, 1)), params=params)
        rows = np.where(positions >= 0, self.rows[modality][np.maximum(positions, 0)], -1)
        return similarities, rows

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
        }


# -- building -------------------------------------------------------------------------------------
def build_library(
    model,
    records: Sequence[Record],
    out: str | Path,
    sources: Sequence[dict] = (),
    name: str | None = None,
    model_path: str | None = None,
    overwrite: bool = False,
    progress: Progress = _no_progress,
    batch_size: int = 64,
    description: str = "",
) -> Library:
    """Embed every record's barcode, image and taxonomy text (those the model has) into a new library.

    ``model_path`` is recorded so the library can reopen its model (default: where the model was
    loaded from; a relative path is taken relative to the library directory).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / CURRENT).exists():
            raise LibraryError(f"{out} exists and is not a library: choose an empty or new directory")
        if not overwrite:
            raise LibraryError(f"{out} is already a library: add to it (clibd add-to-library) or pass --overwrite")
    records = _unique_records(records)
    parts = _embed_records(model, records, 0, progress, batch_size)
    facts = {
        "name": name or out.name,
        "description": description,
        "model_fingerprint": model.fingerprint,
        "model": {"path": model_path or str(Path(model.source_dir).resolve()), "preset": model.config.preset},
        "sources": list(sources),
    }
    return _write_version(out, model, facts, _metadata(records), parts, previous=None, progress=progress)


def add_to_library(
    path: str | Path,
    model,
    records: Sequence[Record],
    sources: Sequence[dict] = (),
    progress: Progress = _no_progress,
    batch_size: int = 64,
) -> tuple[Library, list[str]]:
    """Append records to a library (as a new version); returns it and the ids left out as duplicates."""
    library = Library.open(path)
    library.check_model(model)
    known = set(library.metadata["id"])
    duplicates = [r.id for r in records if r.id in known]
    fresh = _unique_records([r for r in records if r.id not in known])
    if not fresh:
        return library, duplicates
    known_texts = set()
    if "text" in library.rows:
        lineages = library.metadata.loc[library.rows["text"], list(RANKS)]
        known_texts = {taxonomy_text(Taxonomy(*values)) for values in lineages.itertuples(index=False)}
    parts = _embed_records(model, fresh, len(library.metadata), progress, batch_size, known_texts)
    metadata = pd.concat([library.metadata, _metadata(fresh)], ignore_index=True)
    facts = {**library.facts, "sources": [*library.facts.get("sources", []), *sources]}
    return (
        _write_version(Path(path), model, facts, metadata, parts, previous=library, progress=progress),
        duplicates,
    )


def recalibrate(path: str | Path, model, progress: Progress = _no_progress) -> Library:
    """A new version with the same vectors and a fresh calibration and domain (e.g. after a change of
    the calibration method); nothing is re-embedded, and caches derived from the vectors alone (maps)
    are kept."""
    library = Library.open(path)
    library.check_model(model)
    facts = {key: value for key, value in library.facts.items() if key != "calibration"}
    nothing = _Embedded({}, {}, {}, [])
    return _write_version(
        Path(path), model, facts, library.metadata, nothing, library, progress, keep=VECTOR_CACHES
    )


@dataclass
class _Embedded:
    """Vectors of new records per modality, the metadata rows they belong to, and thumbnails."""

    vectors: dict[str, np.ndarray]
    rows: dict[str, np.ndarray]
    thumbnails: dict[int, bytes]
    skipped: list[dict]
    image_features: np.ndarray | None = None  # image backbone features of some new records (domain)


def _unique_records(records: Sequence[Record]) -> list[Record]:
    seen: set[str] = set()
    unique = []
    for record in records:
        if record.id not in seen:
            seen.add(record.id)
            unique.append(record)
    return unique


def _embed_records(
    model,
    records: list[Record],
    first_row: int,
    progress: Progress,
    batch_size: int,
    known_texts: set[str] = frozenset(),
) -> _Embedded:
    vectors: dict[str, list[np.ndarray]] = {}
    rows: dict[str, list[int]] = {}
    thumbnails: dict[int, bytes] = {}
    skipped: list[dict] = []
    domain_features: list[np.ndarray] = []  # image backbone features of about DOMAIN_SAMPLE images, spread
    modalities = model.config.modalities
    if "dna" in modalities:
        with_dna = [i for i, r in enumerate(records) if r.barcode]
        kmer_index = not model.dna_reads_kmer_profiles
        for start in range(0, len(with_dna), batch_size):
            chunk = with_dna[start : start + batch_size]
            vectors.setdefault("dna", []).append(model.encode_barcodes([records[i].barcode for i in chunk]))
            rows.setdefault("dna", []).extend(first_row + i for i in chunk)
            if kmer_index:
                vectors.setdefault("kmer", []).append(kmer_profiles([records[i].barcode for i in chunk]))
                rows.setdefault("kmer", []).extend(first_row + i for i in chunk)
            progress("barcodes", min(start + batch_size, len(with_dna)), len(with_dna))
    if "image" in modalities:
        with_image = [i for i, r in enumerate(records) if r.has_image]
        for start in range(0, len(with_image), batch_size):
            images, chunk = [], []
            for i in with_image[start : start + batch_size]:
                try:
                    images.append(records[i].load_image())
                except ImageError as error:
                    skipped.append({"id": records[i].id, "reason": str(error)})
                    continue
                chunk.append(i)
                thumbnails[first_row + i] = _thumbnail(images[-1])
            if chunk:
                embeddings, backbones = model.encode_images_with_backbone(images)
                vectors.setdefault("image", []).append(embeddings)
                rows.setdefault("image", []).extend(first_row + i for i in chunk)
                domain_features.append(backbones[:: -(-len(with_image) // DOMAIN_SAMPLE)])
            progress("images", min(start + batch_size, len(with_image)), len(with_image))
    if "text" in modalities:
        first_of_text: dict[str, int] = {}
        for i, record in enumerate(records):
            if (text := taxonomy_text(record.taxonomy)) not in known_texts:
                first_of_text.setdefault(text, i)
        texts = list(first_of_text)
        for start in range(0, len(texts), batch_size):
            vectors.setdefault("text", []).append(model.encode_texts(texts[start : start + batch_size]))
            progress("taxonomy texts", min(start + batch_size, len(texts)), len(texts))
        rows["text"] = [first_row + first_of_text[text] for text in texts]
    return _Embedded(
        {m: np.concatenate(v) for m, v in vectors.items()},
        {m: np.asarray(r, dtype=np.int64) for m, r in rows.items()},
        thumbnails,
        skipped,
        np.concatenate(domain_features) if domain_features else None,
    )


def _thumbnail(image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _metadata(records: Sequence[Record]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [r.id for r in records],
            **{rank: [r.taxonomy.get(rank) for r in records] for rank in (*ALL_RANKS, "bin")},
            "split": [r.split for r in records],
            "barcode": [r.barcode for r in records],
            "country": [r.country for r in records],
            "latitude": [r.latitude for r in records],
            "longitude": [r.longitude for r in records],
            "source": [r.source for r in records],
        },
        columns=list(METADATA_COLUMNS),
    )


def new_index(dim: int, size: int) -> faiss.Index:
    """Exact inner-product search up to ``EXACT_LIMIT`` vectors, HNSW beyond (recall@10 ≥ 0.99, bench/)."""
    if size <= EXACT_LIMIT:
        return faiss.IndexFlatIP(dim)
    index = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
    index.hnsw.efSearch = HNSW_EF_SEARCH
    return index


def _index_with(previous: Library | None, modality: str, new: np.ndarray | None) -> tuple[faiss.Index, np.ndarray]:
    """The previous version's index of a modality with the new vectors added, and its rows so far.

    The previous index is copied and grown while its kind still fits the total size; only when the
    library crosses ``EXACT_LIMIT`` (or the modality is new) is an index built from all vectors.
    """
    old = previous.indexes.get(modality) if previous else None
    old_rows = previous.rows[modality] if old is not None else np.zeros(0, np.int64)
    dim = old.d if old is not None else new.shape[1]
    new = np.ascontiguousarray(new if new is not None else np.zeros((0, dim)), dtype=np.float32)
    total = (old.ntotal if old is not None else 0) + len(new)
    if old is not None and type(new_index(dim, total)) is type(old):
        index = faiss.clone_index(old)  # keeps its kind and search settings
    else:
        index = new_index(dim, total)
        if old is not None:
            index.add(previous.vectors(modality))
    if len(new):
        index.add(new)
    return index, old_rows


def _write_version(
    path: Path,
    model,
    facts: dict,
    metadata: pd.DataFrame,
    new: _Embedded,
    previous: Library | None,
    progress: Progress,
    keep: str = "",
) -> Library:
    """Write a complete version beside the live one, then switch ``CURRENT`` to it atomically; files of
    the previous version matching the glob ``keep`` are copied into it."""
    path.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    number = 1 + max((int(p.name[1:]) for p in path.glob("v[0-9]*") if p.name[1:].isdigit()), default=0)
    staging = path / f".tmp-v{number:06d}-{os.getpid()}"
    staging.mkdir()
    try:
        _stage(path, staging, model, facts, metadata, new, previous, progress, keep)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)  # a full disk gets its space back at once
        raise
    final = path / f"v{number:06d}"
    os.replace(staging, final)
    pointer = path / f".{CURRENT}.{os.getpid()}"
    pointer.write_text(final.name)
    os.replace(pointer, path / CURRENT)  # the commit point
    _remove_leftovers(path)
    return Library.open(path)


def _stage(
    path: Path,
    staging: Path,
    model,
    facts: dict,
    metadata: pd.DataFrame,
    new: _Embedded,
    previous: Library | None,
    progress: Progress,
    keep: str,
) -> None:
    """Every file of the new version, written into ``staging``."""
    from clibd_core.library.calibration import calibrate  # calibration searches libraries: import late

    modalities = sorted({*(previous.modalities if previous else []), *new.vectors})
    indexes, rows, index_facts = {}, {}, {}
    for modality in modalities:
        progress(f"indexing {modality}", 0, 1)
        index, old_rows = _index_with(previous, modality, new.vectors.get(modality))
        indexes[modality] = index
        rows[modality] = np.concatenate([old_rows, new.rows.get(modality, [])]).astype(np.int64)
        _write_index(index, staging / f"{modality}.faiss")
        np.save(staging / f"{modality}_rows.npy", rows[modality])
        index_facts[modality] = {"type": type(index).__name__, "vectors": int(index.ntotal), "dim": int(index.d)}
        if isinstance(index, faiss.IndexHNSW):
            index_facts[modality].update(M=HNSW_M, efConstruction=HNSW_EF_CONSTRUCTION, efSearch=HNSW_EF_SEARCH)
    metadata.to_parquet(staging / "metadata.parquet", index=False)
    _write_thumbnails(staging, previous, new.thumbnails)
    for cached in previous.version_dir.glob(keep) if previous and keep else ():
        shutil.copy2(cached, staging / cached.name)
    facts = {
        **facts,
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "modalities": modalities,
        "records": len(metadata),
        "index": index_facts,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "skipped": [*(previous.facts.get("skipped", []) if previous else []), *new.skipped],
        "versions": _versions(),
    }
    progress("calibrating confidence", 0, 1)
    staged = Library(path, staging, facts, metadata, indexes, rows)
    facts["calibration"] = calibrate(staged, model)
    facts["domain"] = _domains(facts, staged, new.image_features)
    write_json(staging / "library.json", facts)
    fsync_tree(staging)


def _write_index(index: faiss.Index, file: Path) -> None:
    """FAISS reports a failed write (a full disk) as a RuntimeError; it is an OSError like any other."""
    try:
        faiss.write_index(index, str(file))
    except RuntimeError as error:
        raise OSError(f"could not write {file}: {str(error).rsplit(': ', 1)[-1]}") from error


def _domains(facts: dict, library: Library, image_features: np.ndarray | None) -> dict:
    """Image queries are checked on the image backbone's features, fitted when a library's images are
    first embedded (appends and recalibrations keep that fit: they hold no features of the old images);
    barcode queries on the library's DNA vectors, refitted at every write."""
    domains = {}
    if "image" in facts.get("domain", {}):
        domains["image"] = facts["domain"]["image"]
    elif image_features is not None and len(image_features):
        domains["image"] = fit_domain(image_features)
    if "dna" in library.indexes:
        domains["dna"] = fit_domain(library.vectors("dna"))
    return {modality: domain for modality, domain in domains.items() if domain}


def _write_thumbnails(staging: Path, previous: Library | None, new: dict[int, bytes]) -> None:
    frames = []
    if previous and (previous.version_dir / "thumbnails.parquet").exists():
        frames.append(pd.read_parquet(previous.version_dir / "thumbnails.parquet"))
    if new:
        frames.append(pd.DataFrame({"row": list(new), "jpeg": list(new.values())}))
    if frames:
        pd.concat(frames, ignore_index=True).to_parquet(staging / "thumbnails.parquet", index=False)


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


def _remove_leftovers(path: Path) -> None:
    """Versions that are not current and staging folders of killed writes."""
    live = (path / CURRENT).read_text().strip() if (path / CURRENT).exists() else None
    for child in path.iterdir():
        stale_version = re.fullmatch(r"v\d{6}", child.name) and child.name != live
        if stale_version or child.name.startswith(".tmp-v") or child.name.startswith(f".{CURRENT}."):
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _versions() -> dict:
    import torch

    from clibd_core import __version__

    return {"clibd": __version__, "faiss": faiss.__version__, "torch": torch.__version__}
