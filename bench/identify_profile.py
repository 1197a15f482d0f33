"""Where a barcode query's time goes: a whole `clibd identify` run on the real default library, timed
end to end (start-up included), and the same queries profiled stage by stage in-process.

Queries: --queries real BOLD barcodes of the shipped dev set (seed 0): a third as they are, a third
cut to the 313-bp Leray fragment, a third from species left out of nothing (all are in the default
library, so most answer at the species; the hard-query path is measured by
bench/absent_species_folds.py). Stages: hygiene (dna.inspect_barcode), embedding (tokenise + DNA
tower), vector search (FAISS), seed candidates, alignment (edlib), votes and confidence, writing.

    .venv/bin/python bench/identify_profile.py [--queries 5000] [--library PATH] [--keep-answers CSV]

``--library``: another build of the default model (e.g. ``build-library --dna-precision bf16``);
``--keep-answers``: the whole run's results CSV, kept to compare two runs' answers.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from clibd_core.data.bold import read_bold_tsv
from clibd_core.library.identification import Query
from clibd_core.library.results import write_bundle
from clibd_core.library.search import identify
from clibd_core.library.store import Library
from clibd_core.models.clibd import load_model
from clibd_core.reference import DEFAULT_LIBRARY, DEFAULT_MODEL, DEFAULT_SOURCE

STAGES = {  # stage: (module file, function) whose cumulative time it is
    "hygiene": ("dna.py", "inspect_barcode"),
    "embedding (tokenise + DNA tower)": ("clibd.py", "encode_barcodes"),
    "vector search (FAISS)": ("store.py", "search"),
    "seed candidates": ("seeds.py", "candidates"),
    "alignment (edlib)": ("identity.py", "percent_identity"),
    "votes, confidence, honesty rules": ("naming.py", "answer"),
}


def queries(count: int) -> list[Query]:
    records = read_bold_tsv(DEFAULT_SOURCE).records
    rng = np.random.default_rng(0)
    picked = [records[i] for i in rng.choice(len(records), count, replace=False)]
    return [
        Query(r.id, barcode=r.barcode[-313:] if i % 3 == 1 and len(r.barcode) >= 600 else r.barcode)
        for i, r in enumerate(picked)
    ]


def whole_run(batch: list[Query], work: Path, library: Path) -> float:
    fasta = work / "queries.fasta"
    fasta.write_text("".join(f">{q.id}\n{q.barcode}\n" for q in batch))
    started = time.time()
    subprocess.run(
        [sys.executable, "-m", "clibd_core.cli", "identify", "--library", str(library), "--fasta", str(fasta)]
        + ["--out", str(work / "results.csv")],
        check=True,
        capture_output=True,
    )
    return time.time() - started


def stage_times(batch: list[Query], work: Path, path: Path) -> dict:
    library = Library.open(path)
    model = load_model(DEFAULT_MODEL, device="cpu")
    identify(library, model, batch[:50])  # warm
    profile = cProfile.Profile()
    started = time.perf_counter()
    profile.enable()
    results = identify(library, model, batch, batch_size=256)
    profile.disable()
    total = time.perf_counter() - started
    written = time.perf_counter()
    write_bundle(results, work / "profile.csv", library, model)
    writing = time.perf_counter() - written
    stats = pstats.Stats(profile).stats
    out = {
        stage: sum(
            cumulative
            for (file, _, name), (_, _, _, cumulative, _) in stats.items()
            if file.endswith(f"/{module}") and name == function
        )
        for stage, (module, function) in STAGES.items()
    }
    out = {stage: 1000 * seconds / len(batch) for stage, seconds in out.items()}
    out["writing the bundle"] = 1000 * writing / len(batch)
    out["identify total (profiled)"] = 1000 * total / len(batch)
    return {name: round(value, 3) for name, value in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--library", type=Path, default=DEFAULT_LIBRARY)
    parser.add_argument("--keep-answers", type=Path, help="copy the whole run's results CSV here")
    parser.add_argument("--out", default="docs/bench_identify_profile.json")
    args = parser.parse_args()
    batch = queries(args.queries)
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        seconds = whole_run(batch, work, args.library)
        if args.keep_answers:
            shutil.copy(work / "results.csv", args.keep_answers)
        report = {
            "queries": len(batch),
            "library": str(args.library),
            "dna_precision": Library.open(args.library, with_indexes=False).dna_precision,
            "whole_clibd_identify_run_s": round(seconds, 2),
            "whole_run_ms_per_query": round(1000 * seconds / len(batch), 3),
            "ms_per_query_by_stage": stage_times(batch, work, args.library),
        }
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
