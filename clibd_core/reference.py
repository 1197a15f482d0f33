"""The embedded default: a library of real public BOLD insect barcodes, built once on each machine.

What ships in git is its source (``reference_db/bold/bold_insects_dev.tsv.gz``, 86k BOLD public records,
2.4 MB) and the DNA + text model trained on it by the documented recipe (``reference_db/bold_model``,
about 4 MB). ``clibd build-default`` (run once by ``make run`` / ``make test``) embeds the barcodes into
``reference_db/bold_library``, in a few minutes on two cores with a progress bar; it does nothing when
the library is already built from the same source with the same model. Its barcodes are embedded in the
DNA tower's number format chosen by measurement (``auto``: bf16 for the shipped tower on a CPU with bf16
support, the same names as fp32 on 5,000 real queries, docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
from pathlib import Path

from clibd_core.fileio import file_sha256

REFERENCE_DB = Path(__file__).resolve().parents[1] / "reference_db"
DEFAULT_SOURCE = REFERENCE_DB / "bold" / "bold_insects_dev.tsv.gz"
DEFAULT_MODEL = REFERENCE_DB / "bold_model"
DEFAULT_LIBRARY = REFERENCE_DB / "bold_library"
DEMO_LIBRARY = REFERENCE_DB / "demo" / "library"
DEMO_MODEL = REFERENCE_DB / "demo" / "model"
DEFAULT_NAME = "BOLD insect barcodes (real public records)"
DEFAULT_PRECISION = "auto"  # the DNA tower's number format for the default build (library/dna_precision.py)
ATTRIBUTION = (
    "BOLD Systems public records (boldsystems.org; Ratnasingham & Hebert 2007), as exported in the GitHub "
    "repository matteodegobbi/InsectClassification. Cite BOLD when you publish results from this library."
)
COVERAGE_NOTE = (
    "Only these orders and species are here: an insect of another group or region is at best placed at a "
    "higher rank. For other taxa or regions, import a BOLD export or BIOSCAN data in the Libraries tab."
)


def default_library_is_current() -> bool:
    """Whether the default library exists, was built by the shipped model from the shipped source, and has
    the parts today's search uses (the seed index, barcodes beside the metadata, its labels checked by
    today's rule), and its barcodes in the number format the default build measures for (``DEFAULT_PRECISION``)."""
    from clibd_core.library.barcode_file import FILES as BARCODE_FILES
    from clibd_core.library.seeds import FILES as SEED_FILES
    from clibd_core.library.store import Library, LibraryError
    from clibd_core.library.suspects import RULE as SUSPECT_RULE

    try:
        library = Library.open(DEFAULT_LIBRARY, with_indexes=False)
    except (LibraryError, OSError):
        return False
    model = json.loads((DEFAULT_MODEL / "config.json").read_text())["fingerprint"]
    source_sha = [s.get("sha256") for s in library.facts.get("sources", [])]
    complete = all((library.version_dir / name).exists() for name in (*SEED_FILES, *BARCODE_FILES))
    complete = complete and library.facts.get("suspect_labels", {}).get("rule") == SUSPECT_RULE
    complete = complete and library.facts.get("build", {}).get("dna_precision", {}).get("asked") == DEFAULT_PRECISION
    return complete and library.fingerprint == model and source_sha == [file_sha256(DEFAULT_SOURCE)]


def build_default_library(progress=None) -> Path:
    """Build (or rebuild) the default library; returns its path (`clibd build-default` skips a current one)."""
    from clibd_core.data.bold import read_bold_tsv
    from clibd_core.data.sources import source_facts
    from clibd_core.library.build import build_library
    from clibd_core.models.clibd import load_model

    result = read_bold_tsv(DEFAULT_SOURCE)
    facts = {**source_facts(result), "path": "reference_db/bold/bold_insects_dev.tsv.gz"}
    kwargs = {"progress": progress} if progress else {}
    build_library(
        load_model(DEFAULT_MODEL, device="cpu"),
        result.records,
        DEFAULT_LIBRARY,
        sources=[{**facts, "attribution": ATTRIBUTION}],
        name=DEFAULT_NAME,
        model_path="../bold_model",
        overwrite=True,
        description=COVERAGE_NOTE,
        dna_precision=DEFAULT_PRECISION,
        **kwargs,
    )
    return DEFAULT_LIBRARY
