"""The synthetic demo: `clibd demo` end to end on a tiny world, and the shipped reference_db/demo itself."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from clibd_core import load_model
from clibd_core.data.synthetic import WorldConfig
from clibd_core.demo import build_demo, targets
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.library.store import Library

REFERENCE_DB = Path(__file__).resolve().parents[1] / "reference_db" / "demo"


@pytest.mark.slow
def test_demo_builds_model_library_and_report(tmp_path):
    report = build_demo(
        tmp_path / "db", WorldConfig(n_records=300, n_orders=3, species_per_genus=2.0, seed=10), epochs=2, batch_size=16
    )
    out = tmp_path / "db"
    model = load_model(out / "model", device="cpu")
    library = Library.open(out / "library")
    library.check_model(model)
    assert library.model_path == (out / "model").resolve()
    metadata = library.metadata
    for modality in ("image", "dna"):
        assert library.vectors(modality).shape == (len(metadata), 256)
    assert library.vectors("text").shape[0] == len(set(zip(metadata["genus"], metadata["species"], strict=True)))
    assert not set(metadata["split"]) & {"test", "test_unseen", "val", "val_unseen"}
    assert set(report["trained"]) == {"dna->dna", "image->image", "image->dna", "image->text"}
    assert set(report["targets"]) >= {"image_dna_genus_unseen", "dna_dna_species_seen", "met"}
    assert 0.0 <= report["targets"]["image_dna_genus_unseen"] <= 1.0  # this world has unseen test species
    assert (out / "demo_report.md").read_text().startswith("# Demo model report")
    assert sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) < 50e6


def test_shipped_reference_db_identifies_its_demo_queries():
    if not (REFERENCE_DB / "model").is_dir():
        pytest.skip("reference_db/ has not been built (clibd demo)")
    library = Library.open(REFERENCE_DB / "library")
    model = load_model(library.model_path, device="cpu")
    queries = pd.read_parquet(REFERENCE_DB / "demo_queries.parquet")
    seen = queries[queries["split"] == "test"].head(100)
    results = identify(library, model, [Query(row.id, barcode=row.barcode) for row in seen.itertuples()])
    predicted_genus = [result.ranks["genus"].name for result in results]
    true_genus = [text.split()[2] for text in seen["text"]]
    assert np.mean(np.array(predicted_genus) == np.array(true_genus)) >= 0.9
    assert library.thumbnails([results[0].neighbours[0].row])  # the gallery has the reference photo
    report = json.loads((REFERENCE_DB / "demo_report.json").read_text())
    recomputed = targets(report["trained"], report["no_alignment"])  # the code's verdict on the shipped tables
    assert recomputed == report["targets"] and recomputed["met"], recomputed
