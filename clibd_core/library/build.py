"""Building a library: embed → index → calibrate → commit, above the store (format, versions, indexes)
and the engine (search, calibration), so a library can be recalibrated without re-embedding.

A build or an append writes a complete new version beside the live one and then replaces ``CURRENT``
with one atomic rename (library/store.py describes the layout).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from clibd_core.data.records import Record
from clibd_core.data.transforms import ImageError
from clibd_core.dna import to_acgtn
from clibd_core.fileio import fsync_tree, write_json
from clibd_core.library.barcode_file import BarcodeFile, write_barcodes
from clibd_core.library.build_status import Progress, no_progress
from clibd_core.library.calibration import calibrate
from clibd_core.library.dna_precision import build_choice, dna_tower_in
from clibd_core.library.domain import MAX_FIT, fit_domain
from clibd_core.library.indexes import INDEX_MEMORY, add_vectors, describe, is_compressed, new_index, train
from clibd_core.library.kmers import kmer_profiles
from clibd_core.library.projection import map_views, projection
from clibd_core.library.seeds import SeedIndex
from clibd_core.library.shards import (
    SHARD_RECORDS,
    Processes,
    embed_shards,
    load_shards,
    read_barcodes,
    read_metadata,
    read_records,
    spool,
    work_folder,
)
from clibd_core.library.store import (
    CURRENT,
    FORMAT,
    FORMAT_VERSION,
    METADATA_COLUMNS,
    Library,
    LibraryError,
    metadata_table,
)
from clibd_core.library.suspects import find_suspect_labels
from clibd_core.library.vector_file import write_vector_file
from clibd_core.taxonomy import RANKS, Taxonomy, taxonomy_text

THUMBNAIL_SIZE = 160

DOMAIN_SAMPLE = 20_000  # image backbone features kept for fitting the library's image domain
# Libraries above this many records get no seed index: it is built in memory (about 1.5 kB a barcode
# while building) and is unmeasured beyond the 86k-record default library; their hard queries and
# short reads are answered from the embedding's candidates alone.
SEED_LIMIT = 2_000_000
VECTOR_CACHES = "umap_*.parquet"  # files derived from the vectors only (library/projection.py)


# -- building -------------------------------------------------------------------------------------
def build_library(
    model,
    records: Iterable[Record],
    out: str | Path,
    sources: Sequence[dict] | Callable[[], Sequence[dict]] = (),
    name: str | None = None,
    model_path: str | None = None,
    overwrite: bool = False,
    progress: Progress = no_progress,
    batch_size: int = 64,
    description: str = "",
    processes: Processes = Processes(),  # noqa: B008 - a frozen value
    shard_records: int = SHARD_RECORDS,
    index_memory: int = INDEX_MEMORY,
    dna_precision: str = "fp32",
    maps: bool = True,
) -> Library | None:
    """Embed every record's barcode, image and taxonomy text (those the model has) into a new library.

    ``records`` may be a stream (data.sources.SourceStream): it is read once, by the main process, and
    never held whole (library/shards.py). ``sources`` is the provenance recorded; a callable is asked
    once the records have been read (a stream knows its counts only then). ``model_path`` is recorded
    so the library can reopen its model (default: where the model was loaded from; a relative path is
    taken relative to the library directory). Under ``accelerate
    launch`` pass ``processes=PartialState()``: every process embeds its shards (library/shards.py),
    the main one assembles and commits the library and returns it; the others return None. A build
    that was killed resumes from its finished shards. ``dna_precision`` is fp32, bf16, int8 or ``auto``
    (measured on the build's own barcodes: library/dna_precision.py). ``maps=False`` leaves the Explore
    maps to be drawn when first opened (a library only a pipeline or a benchmark searches).
    """
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / CURRENT).exists():
            raise LibraryError(f"{out} exists and is not a library: choose an empty or new directory")
        if not overwrite:
            raise LibraryError(f"{out} is already a library: add to it (clibd add-to-library) or pass --overwrite")
    started = time.time()
    work = work_folder(out)
    plan = spool(work, model.fingerprint, records, processes, shard_records, progress)
    if not plan["records"]:  # every process has the plan: all stop here
        if processes.is_main_process:
            shutil.rmtree(work, ignore_errors=True)
        raise LibraryError("the source holds no usable record to build a library from (clibd inspect says why)")
    stride = _domain_stride(plan["with_image"])
    precision = build_choice(
        work, model, dna_precision, plan["records"], lambda: read_records(work, 0), processes, progress
    )

    def embed(shard: int) -> _Embedded:
        chunk, first = read_records(work, shard), shard * shard_records
        parts = _embed_records(model, chunk, first, no_progress, batch_size, stride, precision["chosen"])
        progress("embedding records", min(first + len(chunk), plan["records"]), plan["records"])
        return parts

    embed_shards(work, plan["shards"], processes, embed)
    processes.wait_for_everyone()
    if not processes.is_main_process:
        return None
    parts = _Embedded(**load_shards(work, plan["shards"]))
    metadata = read_metadata(work, plan["shards"], METADATA_COLUMNS)
    if "text" in model.config.modalities:
        parts.vectors["text"], parts.rows["text"] = _embed_texts(model, metadata, 0, progress, batch_size)
    facts = {
        "name": name or out.name,
        "description": description,
        "model_fingerprint": model.fingerprint,
        "model": {"path": model_path or str(Path(model.source_dir).resolve()), "preset": model.config.preset},
        "sources": list(sources() if callable(sources) else sources),
        "index_memory": index_memory,
    }
    facts["build"] = {
        "processes": processes.num_processes,
        "shards": plan["shards"],
        "shard_records": shard_records,
        "device": str(model.device),
        "dna_precision": precision,
        "seconds": round(time.time() - started, 1),
    }
    barcodes = read_barcodes(work, plan["shards"])
    library = _write_version(out, model, facts, metadata, barcodes, parts, previous=None, progress=progress, maps=maps)
    shutil.rmtree(work, ignore_errors=True)
    return library


def add_to_library(
    path: str | Path,
    model,
    records: Sequence[Record],
    sources: Sequence[dict] = (),
    progress: Progress = no_progress,
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
    parts = _embed_records(
        model, fresh, len(library.metadata), progress, batch_size, dna_precision=library.dna_precision
    )
    added = metadata_table(fresh)
    if "text" in model.config.modalities:
        lineages = library.metadata.loc[library.rows["text"]] if "text" in library.rows else library.metadata[:0]
        texts = _embed_texts(model, added, len(library.metadata), progress, batch_size, set(_lineage_texts(lineages)))
        parts.vectors["text"], parts.rows["text"] = texts
    metadata = pd.concat([library.metadata, added], ignore_index=True)
    facts = {**library.facts, "sources": [*library.facts.get("sources", []), *sources]}
    barcodes = chain(chain.from_iterable(library.barcodes.chunks()), (record.barcode for record in fresh))
    return (
        _write_version(Path(path), model, facts, metadata, barcodes, parts, previous=library, progress=progress),
        duplicates,
    )


def recalibrate(path: str | Path, model, progress: Progress = no_progress) -> Library:
    """A new version with the same vectors and a fresh calibration and domain (e.g. after a change of
    the calibration method); nothing is re-embedded, and caches derived from the vectors alone (maps)
    are kept."""
    library = Library.open(path)
    library.check_model(model)
    facts = {key: value for key, value in library.facts.items() if key != "calibration"}
    nothing = _Embedded({}, {}, {}, [])
    barcodes = chain.from_iterable(library.barcodes.chunks())
    return _write_version(
        Path(path), model, facts, library.metadata, barcodes, nothing, library, progress, keep=VECTOR_CACHES
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
    domain_stride: int | None = None,
    dna_precision: str = "fp32",
) -> _Embedded:
    """The barcodes' and images' vectors of ``records`` (taxonomy texts are embedded by the caller,
    once per lineage across the whole library); barcodes with the DNA tower in ``dna_precision``."""
    vectors: dict[str, list[np.ndarray]] = {}
    rows: dict[str, list[int]] = {}
    thumbnails: dict[int, bytes] = {}
    skipped: list[dict] = []
    domain_features: list[np.ndarray] = []  # image backbone features of about DOMAIN_SAMPLE images, spread
    modalities = model.config.modalities
    if "dna" in modalities:
        with_dna = [i for i, r in enumerate(records) if r.barcode]
        kmer_index = not model.dna_reads_kmer_profiles
        with dna_tower_in(model, dna_precision):
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
        stride = domain_stride or _domain_stride(len(with_image))
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
                domain_features.append(backbones[::stride])
            progress("images", min(start + batch_size, len(with_image)), len(with_image))
    return _Embedded(
        {m: np.concatenate(v) for m, v in vectors.items()},
        {m: np.asarray(r, dtype=np.int64) for m, r in rows.items()},
        thumbnails,
        skipped,
        np.concatenate(domain_features) if domain_features else None,
    )


def _embed_texts(
    model, metadata: pd.DataFrame, first_row: int, progress: Progress, batch_size: int, known_texts=frozenset()
) -> tuple[np.ndarray, np.ndarray]:
    """One vector per taxonomy text not yet known, with the row of its first record."""
    first_of_text: dict[str, int] = {}
    for i, text in enumerate(_lineage_texts(metadata)):
        if text not in known_texts:
            first_of_text.setdefault(text, i)
    texts = list(first_of_text)
    vectors = [np.zeros((0, model.config.embed_dim), dtype=np.float32)]
    for start in range(0, len(texts), batch_size):
        vectors.append(model.encode_texts(texts[start : start + batch_size]))
        progress("taxonomy texts", min(start + batch_size, len(texts)), len(texts))
    return np.concatenate(vectors), np.asarray([first_row + first_of_text[t] for t in texts], dtype=np.int64)


def _lineage_texts(metadata: pd.DataFrame) -> list[str]:
    """Each metadata row's taxonomy text, as the text tower reads it."""
    lineages = metadata[list(RANKS)].itertuples(index=False)
    return [taxonomy_text(Taxonomy(**dict(zip(RANKS, values, strict=True)))) for values in lineages]


def _domain_stride(with_image: int) -> int:
    """Keep every n-th image's backbone features, about ``DOMAIN_SAMPLE`` in all, for the image domain."""
    return max(1, -(-with_image // DOMAIN_SAMPLE))


def _thumbnail(image) -> bytes:
    small = image.convert("RGB")
    small.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    buffer = io.BytesIO()
    small.save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def _index_with(
    previous: Library | None, modality: str, new: np.ndarray | None, memory: int, progress: Progress = no_progress
) -> tuple[faiss.Index, np.ndarray, np.ndarray | None]:
    """The previous version's index of a modality with the new vectors added, its rows so far, and (for
    a compressed index) all its vectors, which are written beside it for exact re-ranking.

    A flat or HNSW index is copied and grown while its kind still fits the total size and the memory
    budget (library/indexes.py); otherwise, or for a compressed index, one is built from all vectors.
    """
    old = previous.indexes.get(modality) if previous else None
    old_rows = previous.rows[modality] if old is not None else np.zeros(0, np.int64)
    dim = old.d if old is not None else new.shape[1]
    new = np.ascontiguousarray(new if new is not None else np.zeros((0, dim)), dtype=np.float32)
    total = (old.ntotal if old is not None else 0) + len(new)
    index = new_index(dim, total, memory)
    stage = f"indexing {modality}"
    if old is not None and type(index) is type(old) and not is_compressed(old):
        index = faiss.clone_index(old)  # keeps its kind and search settings
        add_vectors(index, new, lambda done: progress(stage, old.ntotal + done, total))
        return index, old_rows, None
    everything = new if old is None else np.concatenate([previous.vectors(modality), new])
    progress(stage, 0, total)
    train(index, everything)
    add_vectors(index, everything, lambda done: progress(stage, done, total))
    return index, old_rows, everything if is_compressed(index) else None


def _write_version(
    path: Path,
    model,
    facts: dict,
    metadata: pd.DataFrame,
    barcodes: Iterable[str | None],
    new: _Embedded,
    previous: Library | None,
    progress: Progress,
    keep: str = "",
    maps: bool = True,
) -> Library:
    """Write a complete version beside the live one, then switch ``CURRENT`` to it atomically; files of
    the previous version matching the glob ``keep`` are copied into it. ``barcodes``: every metadata
    row's, in order. ``maps``: draw the Explore maps before the commit."""
    path.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(path)
    number = 1 + max((int(p.name[1:]) for p in path.glob("v[0-9]*") if p.name[1:].isdigit()), default=0)
    with _staging(path / f".tmp-v{number:06d}-{os.getpid()}") as staging:
        modalities = sorted({*(previous.modalities if previous else []), *new.vectors})
        indexes, rows, index_facts, stored = {}, {}, {}, {}
        memory = facts.get("index_memory", INDEX_MEMORY)
        for modality in modalities:
            index, old_rows, everything = _index_with(previous, modality, new.vectors.get(modality), memory, progress)
            indexes[modality] = index
            rows[modality] = np.concatenate([old_rows, new.rows.get(modality, [])]).astype(np.int64)
            _write_index(index, staging / f"{modality}.faiss")
            np.save(staging / f"{modality}_rows.npy", rows[modality])
            if everything is not None:
                stored[modality] = write_vector_file(staging / f"{modality}_vectors.npy", everything)
            index_facts[modality] = describe(index, memory)
        metadata.to_parquet(staging / "metadata.parquet", index=False)
        if write_barcodes(staging, barcodes) != len(metadata):
            raise LibraryError("the barcodes written do not match the metadata rows (a bug): nothing was changed")
        stored_barcodes = BarcodeFile(staging)
        seeds = None
        if "dna" in modalities and len(metadata) <= SEED_LIMIT:
            seeds = _seed_index(stored_barcodes, lambda done: progress("indexing seeds", done, len(metadata)))
            seeds.save(staging)
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
        staged = Library(path, staging, facts, metadata, indexes, rows, seeds, stored, stored_barcodes)
        facts["suspect_labels"] = find_suspect_labels(staged, progress)  # before calibration: it votes without them
        facts["calibration"] = calibrate(staged, model, progress=progress)
        facts["domain"] = _domains(facts, staged, new.image_features)
        views = map_views(modalities) if maps else []
        for done, view in enumerate(views):  # the Explore maps, so the first Explore reads a file
            progress("drawing the maps", done, len(views))
            projection(staged, view)
        if views:
            progress("drawing the maps", len(views), len(views))
        write_json(staging / "library.json", facts)
        fsync_tree(staging)
    final = path / f"v{number:06d}"
    os.replace(staging, final)
    pointer = path / f".{CURRENT}.{os.getpid()}"
    pointer.write_text(final.name)
    os.replace(pointer, path / CURRENT)  # the commit point
    _remove_leftovers(path)
    return Library.open(path)


@contextmanager
def _staging(staging: Path) -> Iterator[Path]:
    """A fresh staging folder, removed if anything fails inside (a full disk gets its space back)."""
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _seed_index(barcodes: BarcodeFile, report: Callable[[int], None]) -> SeedIndex:
    """The seed index of every barcode in the library (library/seeds.py)."""
    every = enumerate(chain.from_iterable(barcodes.chunks()))
    index = SeedIndex.build(((row, to_acgtn(barcode)) for row, barcode in every if barcode), len(barcodes), report)
    report(len(barcodes))
    return index


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
        size = library.indexes["dna"].ntotal  # fit_domain uses at most 2 × MAX_FIT vectors: read no more
        rng = np.random.default_rng(0)
        picked = np.arange(size) if size <= 2 * MAX_FIT else np.sort(rng.choice(size, 2 * MAX_FIT, replace=False))
        domains["dna"] = fit_domain(library.vectors_at("dna", picked))
    return {modality: domain for modality, domain in domains.items() if domain}


def _write_thumbnails(staging: Path, previous: Library | None, new: dict[int, bytes]) -> None:
    frames = []
    if previous and (previous.version_dir / "thumbnails.parquet").exists():
        frames.append(pd.read_parquet(previous.version_dir / "thumbnails.parquet"))
    if new:
        frames.append(pd.DataFrame({"row": list(new), "jpeg": list(new.values())}))
    if frames:
        pd.concat(frames, ignore_index=True).to_parquet(staging / "thumbnails.parquet", index=False)


def _versions() -> dict:
    import torch

    from clibd_core import __version__

    return {"clibd": __version__, "faiss": faiss.__version__, "torch": torch.__version__}


def _remove_leftovers(path: Path) -> None:
    """Versions that are not current and staging folders of killed writes."""
    live = (path / CURRENT).read_text().strip() if (path / CURRENT).exists() else None
    for child in path.iterdir():
        stale_version = re.fullmatch(r"v\d{6}", child.name) and child.name != live
        if stale_version or child.name.startswith(".tmp-v") or child.name.startswith(f".{CURRENT}."):
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)
