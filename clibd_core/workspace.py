"""The user's workspace: their libraries, models and training runs, and the active library/model pair.

One folder (``$CLIBD_HOME``, default ``./workspace``)::

    libraries/<name>/   reference libraries (library/store.py)
    models/<name>/      imported model directories (e.g. an official CLIBD checkpoint)
    runs/<name>/        training runs started from the app (best/ is a model directory)
    active.json         the active library and model
    job.json            the training job started last (train/jobs.py)

The embedded libraries (``reference_db/``, clibd_core/reference.py) are always listed: the real BOLD
barcode library with its DNA model, active until the user chooses another pair, and the synthetic demo
world (the only place image → DNA is shown end to end).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

from clibd_core.fileio import write_json
from clibd_core.reference import DEFAULT_LIBRARY, DEFAULT_MODEL, DEMO_LIBRARY, DEMO_MODEL

EMBEDDED_LIBRARIES = (DEFAULT_LIBRARY, DEMO_LIBRARY)
EMBEDDED_MODELS = (DEFAULT_MODEL, DEMO_MODEL)


class WorkspaceError(ValueError):
    """A request the workspace cannot honour, with what to do instead."""


def workspace_root() -> Path:
    return Path(os.environ.get("CLIBD_HOME", "workspace")).resolve()


def safe_name(name: str) -> str:
    """A folder name from user text: letters, digits, dot, dash and underscore."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]+", "_", name.strip()).strip("._")
    if not cleaned:
        raise WorkspaceError(f"'{name}' is not usable as a name: use letters, digits, - or _")
    return cleaned[:80]


def model_fingerprint(model_dir: str | Path) -> str:
    """The fingerprint recorded in a model directory (without loading its weights)."""
    config = Path(model_dir) / "config.json"
    if not config.is_file():
        raise WorkspaceError(f"{model_dir} is not a model directory (no config.json)")
    return json.loads(config.read_text())["fingerprint"]


class Workspace:
    def __init__(self, root: str | Path | None = None) -> None:
        self.root = Path(root).resolve() if root else workspace_root()

    @property
    def libraries_dir(self) -> Path:
        return self.root / "libraries"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def library_paths(self) -> list[Path]:
        found = [*EMBEDDED_LIBRARIES, *sorted(self.libraries_dir.glob("*"))]
        return [p for p in found if (p / "CURRENT").exists()]

    def model_paths(self) -> list[Path]:
        candidates = [*EMBEDDED_MODELS, *sorted(self.models_dir.glob("*")), *sorted(self.runs_dir.glob("*/best"))]
        return [p for p in candidates if (p / "config.json").is_file()]

    def libraries(self) -> list[dict]:
        """Summary and provenance of every library, with the models that can query it."""
        from clibd_core.library.store import Library, LibraryError

        fingerprints = {str(p): model_fingerprint(p) for p in self.model_paths()}
        listed = []
        for path in self.library_paths():
            try:
                summary = Library.open(path, with_indexes=False).summary()
            except (LibraryError, OSError) as error:
                listed.append({"path": str(path), "error": str(error)})
                continue
            summary["models"] = [m for m, f in fingerprints.items() if f == summary["model_fingerprint"]]
            listed.append(summary)
        return listed

    def models(self) -> list[dict]:
        listed = []
        for path in self.model_paths():
            description = json.loads((path / "config.json").read_text())
            listed.append(
                {
                    "path": str(path),
                    "preset": description["model"].get("preset"),
                    "modalities": description["model"].get("modalities"),
                    "fingerprint": description["fingerprint"],
                    "provenance": description.get("provenance", {}),
                }
            )
        return listed

    def active(self) -> tuple[Path, Path]:
        """The active (library, model): the user's choice, else the real BOLD library (once built),
        else the synthetic demo."""
        chosen = self.root / "active.json"
        if chosen.is_file():
            pair = json.loads(chosen.read_text())
            library, model = Path(pair["library"]), Path(pair["model"])
            if (library / "CURRENT").exists() and (model / "config.json").is_file():
                return library, model
        if (DEFAULT_LIBRARY / "CURRENT").exists():
            return DEFAULT_LIBRARY, DEFAULT_MODEL
        return DEMO_LIBRARY, DEMO_MODEL

    def set_active(self, library: str | Path, model: str | Path | None = None) -> tuple[Path, Path]:
        """Make a library (and a model that produced it) active; the model defaults to the library's own."""
        from clibd_core.library.store import Library

        opened = Library.open(library, with_indexes=False)
        model = Path(model) if model else opened.model_path
        if model is None or not (model / "config.json").is_file():
            raise WorkspaceError(f"the model of {opened.name} is not here: choose its model directory")
        if model_fingerprint(model) != opened.fingerprint:
            raise WorkspaceError(
                f"{model} did not build {opened.name} (fingerprints differ): choose the library's own model"
            )
        self.root.mkdir(parents=True, exist_ok=True)
        write_json(self.root / "active.json", {"library": str(Path(library).resolve()), "model": str(model.resolve())})
        return Path(library).resolve(), model.resolve()

    def import_library(
        self,
        source: str | Path,
        name: str,
        model: str | Path | None = None,
        fmt: str | None = None,
        progress: Callable[[str, int, int], None] | None = None,
    ):
        """Read a data source and build a new library from it with ``model`` (refuses an existing name);
        without one, barcodes only (BOLD, FASTA) are embedded by the real BOLD DNA model and anything
        with images by the active model."""
        from clibd_core.data.sources import read_source, source_facts
        from clibd_core.library.build import build_library

        target = self.libraries_dir / safe_name(name)
        if target.exists():
            raise WorkspaceError(f"a library named {target.name} exists: choose another name")
        result = read_source(source, fmt)
        if not result.records:
            reasons = "; ".join(f"{s.row}: {s.reason}" for s in result.skipped[:3])
            raise WorkspaceError(f"{source} holds no usable record ({reasons or 'empty'})")
        if model is None:
            barcodes_only = not any(record.has_image for record in result.records)
            model = DEFAULT_MODEL if barcodes_only and DEFAULT_MODEL.is_dir() else self.active()[1]
        kwargs = {"progress": progress} if progress else {}
        library = build_library(
            load_cached_model(str(Path(model).resolve())),
            result.records,
            target,
            sources=[source_facts(result)],
            name=name,
            **kwargs,
        )
        return library, result


@lru_cache(maxsize=2)
def load_cached_model(path: str):
    """Models are loaded once per process (the app reuses them across requests)."""
    from clibd_core.models.clibd import load_model

    return load_model(path, device="cpu")


@lru_cache(maxsize=2)
def _cached_library(path: str, version: str):
    from clibd_core.library.store import Library

    return Library.open(path)


def load_cached_library(path: str | Path):
    """The library's current version, reopened only when a build or append changed it."""
    path = Path(path)
    return _cached_library(str(path.resolve()), (path / "CURRENT").read_text().strip())
