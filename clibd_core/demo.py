"""``clibd demo``: the embedded default, built from a seed on a CPU in minutes.

It generates the synthetic world, trains the lite preset on it (backbones frozen), evaluates the best
checkpoint and the untrained (no-alignment) model with the paper's protocol, and writes
``reference_db/demo/``: the model (about 4 MB: frozen backbones are references to their packages), the
demo reference library (library/store.py: metadata, FAISS indexes, thumbnails, calibration) and the report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch

from clibd_core.data.records import record_texts
from clibd_core.data.sources import read_source
from clibd_core.data.synthetic import WorldConfig, generate_world
from clibd_core.encoding import FeatureCache, record_encoder
from clibd_core.evaluate import evaluate_records, mean_results, table_sections
from clibd_core.fileio import atomic_directory, write_json
from clibd_core.library.build import build_library
from clibd_core.library.projection import VIEWS, projection
from clibd_core.models.clibd import build_model, load_model
from clibd_core.train.config import TrainConfig
from clibd_core.train.loop import train

QUERY_SPLITS = ("val", "val_unseen", "test", "test_unseen")
DEMO_LIBRARY_NAME = "Demo library (synthetic world, not real insects)"
BASELINE_SEEDS = 5
DEMO_WORLD = WorldConfig(
    n_records=3000, n_orders=4, families_per_order=4.0, genera_per_family=3.0, species_per_genus=2.5, seed=0
)


def build_demo(
    out_dir: str | Path = "reference_db/demo", world: WorldConfig = DEMO_WORLD, epochs: int = 30, batch_size: int = 64
) -> dict:
    """Build the demo end to end; returns the report (also written to ``out_dir/demo_report.json``)."""
    started = time.time()
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="clibd-demo-") as work:
        work = Path(work)
        print(f"[1/4] generating the synthetic world ({world.n_records} records)", flush=True)
        generate_world(work / "world", world)
        print(f"[2/4] training the lite preset ({epochs} epochs, batch {batch_size})", flush=True)
        config = TrainConfig(
            data=str(work / "world"), out=str(work / "run"), epochs=epochs, batch_size=batch_size, seed=world.seed
        ).resolved()
        train(config)
        trained = json.loads((work / "run" / "results.json").read_text())
        print(f"[3/4] evaluating the no-alignment baseline over {BASELINE_SEEDS} random initialisations", flush=True)
        records = read_source(work / "world").records
        baseline = no_alignment_baseline(records, config.freeze)
        print("[4/4] writing the model and the demo library", flush=True)
        model = load_model(work / "run" / "best", device="cpu")
        references = [r for r in records if r.split not in QUERY_SPLITS]
        with atomic_directory(out_dir) as staging:
            shutil.copytree(work / "run" / "best", staging / "model")
            built = build_library(model, references, staging / "library", name=DEMO_LIBRARY_NAME, model_path="../model")
            for view in VIEWS:  # the app's map opens at once
                projection(built, view)
            library = built.summary()
            library["path"] = str(out_dir / "library")
            queries = [r for r in records if r.split in ("test", "test_unseen")]
            pd.DataFrame(
                {
                    "id": [r.id for r in queries],
                    "split": [r.split for r in queries],
                    "barcode": [r.barcode for r in queries],
                    "text": record_texts(queries),
                }
            ).to_parquet(staging / "demo_queries.parquet", index=False)
            report = {
                "world": world.__dict__,
                "epochs": epochs,
                "batch_size": batch_size,
                "build_seconds": round(time.time() - started, 1),
                "library": library,
                "trained": trained,
                "no_alignment": baseline,
                "targets": targets(trained, baseline),
            }
            write_json(staging / "demo_report.json", report)
            (staging / "demo_report.md").write_text(report_markdown(report))
    print(f"done in {report['build_seconds']:.0f} s -> {out_dir}", flush=True)
    return report


def no_alignment_baseline(records: list, freeze: list[str]) -> dict:
    """The paper's no-alignment model (pretrained backbones, untrained heads and DNA tower), averaged
    over several random initialisations: one draw is mostly luck (every query may fall on the same
    hub key, whose genus is then right for a whole group of queries)."""
    runs, cache = [], None
    for seed in range(BASELINE_SEEDS):
        torch.manual_seed(seed)
        model = build_model("lite")
        cache = cache or FeatureCache(model, [r for r in records if r.split not in ("train", "pretrain")], freeze, 0)
        runs.append(evaluate_records(records, record_encoder(model, cache), model.config.modalities, "test"))
    return mean_results(runs)


def targets(trained: dict, baseline: dict) -> dict:
    """The issue's acceptance figures: image→DNA genus on unseen species, DNA→DNA species on seen."""

    def micro(results: dict, pair: str, rank: str, group: str) -> float:  # nan where the split has no queries
        return results.get(pair, {}).get(rank, {}).get(group, {}).get("micro", float("nan"))

    image_dna = micro(trained, "image->dna", "genus", "unseen")
    no_alignment = micro(baseline, "image->dna", "genus", "unseen")
    dna_dna = micro(trained, "dna->dna", "species", "seen")
    return {
        "image_dna_genus_unseen": image_dna,
        "image_dna_genus_unseen_no_alignment": no_alignment,
        "image_dna_ratio": image_dna / no_alignment if no_alignment else float("inf"),
        "dna_dna_species_seen": dna_dna,
        "met": image_dna >= 0.30 and image_dna >= 3 * no_alignment and dna_dna >= 0.95,
    }


def report_markdown(report: dict) -> str:
    t = report["targets"]
    return "\n".join(
        [
            f"# Demo model report (built in {report['build_seconds']:.0f} s)",
            "",
            f"Image→DNA genus accuracy on unseen species: {100 * t['image_dna_genus_unseen']:.1f} % "
            f"(no alignment: {100 * t['image_dna_genus_unseen_no_alignment']:.1f} %, ×{t['image_dna_ratio']:.1f}); "
            f"DNA→DNA species accuracy on seen species: {100 * t['dna_dna_species_seen']:.1f} %.",
            "",
            *table_sections(report["trained"], "Trained"),
            *table_sections(
                report["no_alignment"],
                f"No alignment: pretrained backbones, untrained heads, mean of {BASELINE_SEEDS} draws",
            ),
        ]
    )
