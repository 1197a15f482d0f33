"""A library of a million real-like barcodes, built end to end on this machine, opened and searched;
and a BIOSCAN-5M-sized table read as a stream.

The source is a BIOSCAN-5M metadata CSV written here from the real BOLD barcodes of the shipped dev
set (86k records, 839 species): each made-up species descends from a real barcode of a real genus by
3-12 % substitutions (so genera, families and orders stay real), and each specimen differs from its
species by up to 1.5 %, about 60 specimens a species. It is as long, as AT-rich and as
codon-structured as real COI, without the indels. No image files exist, so records are barcodes only.

Measured, each command in a fresh process under GNU time (wall time and peak resident memory):
- ``clibd build-library`` with the shipped DNA model (the documented command, one process): the whole
  build, the stages it reports, the library's size on disk;
- opening the library and answering 1,000 barcodes from the same made-up species (``clibd identify``);
- ``clibd inspect`` of a 5M-row table of the same kind (read row by row: bounded memory).

    .venv/bin/python bench/million_library.py [--records 1000000] [--inspect-rows 5000000] [--work /tmp/clibd-million]
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from clibd_core.data.bold import read_bold_tsv
from clibd_core.reference import DEFAULT_MODEL, DEFAULT_SOURCE
from clibd_core.taxonomy import MISSING

PER_SPECIES = 60
COLUMNS = [
    "processid", "sampleid", "dna_barcode", "split", "chunk", "order", "family", "subfamily",
    "genus", "species", "dna_bin", "country", "coord-lat", "coord-lon",
]  # fmt: skip
BASES = np.frombuffer(b"ACGT", dtype=np.uint8)
CLI = [sys.executable, "-m", "clibd_core.cli"]


def write_source(path: Path, rows: int, seed: int, queries: Path | None = None) -> dict:
    """A BIOSCAN-5M CSV of ``rows`` specimens (and, if asked, a FASTA of one more specimen of each of
    the first 1,000 species, with their true species in ``queries.json``)."""
    rng = np.random.default_rng(seed)
    parents = [r for r in read_bold_tsv(DEFAULT_SOURCE).records if r.taxonomy.genus != MISSING]
    species_count = -(-rows // PER_SPECIES)
    written, truth = 0, {}
    with open(path, "w", newline="") as out, open(queries or "/dev/null", "w") as fasta:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for number in range(species_count):
            parent = parents[rng.integers(len(parents))]
            ancestor = np.frombuffer(parent.barcode.encode(), dtype=np.uint8)[None]
            consensus = _mutate(ancestor, rng.uniform(0.03, 0.12), rng)
            count = min(PER_SPECIES, rows - written)
            specimens = _mutate(np.repeat(consensus, count + 1, axis=0), rng.uniform(0.0, 0.015), rng)
            taxonomy = parent.taxonomy
            name = f"{taxonomy.genus} sp{number:06d}"
            for sequence in specimens[:count]:
                written += 1
                writer.writerow([
                    f"MIL{written:08d}", f"S{written:08d}", sequence.tobytes().decode(), "pretrain", str(written % 100),
                    taxonomy.order, taxonomy.family, "", taxonomy.genus, name, f"BOLD:MIL{number:06d}",
                    "Canada", f"{rng.uniform(42, 60):.4f}", f"{rng.uniform(-130, -60):.4f}",
                ])  # fmt: skip
            if number < 1000:
                truth[f"Q{number:04d}"] = name
                fasta.write(f">Q{number:04d}\n{specimens[count].tobytes().decode()}\n")
    if queries:
        queries.with_suffix(".json").write_text(json.dumps(truth))
    return {"rows": written, "species": species_count, "bytes": path.stat().st_size}


def _mutate(sequences: np.ndarray, rate: float, rng: np.random.Generator) -> np.ndarray:
    changed = sequences.copy()
    where = rng.random(changed.shape) < rate
    changed[where] = BASES[rng.integers(4, size=int(where.sum()))]
    return changed


def timed(command: list[str]) -> dict:
    """Wall seconds and peak resident memory (GNU time) of a command in a fresh process."""
    started = time.time()
    done = subprocess.run(["/usr/bin/time", "-v", *command], capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    peak = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr).group(1))
    return {"seconds": round(time.time() - started, 1), "peak_resident_mb": round(peak / 1024), "stdout": done.stdout}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--inspect-rows", type=int, default=5_000_000, help="0: no inspect step")
    parser.add_argument("--work", default="/tmp/clibd-million")
    parser.add_argument("--out", default="docs/bench_million_library.json")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    report: dict = {"machine": "2 CPU cores, no GPU"}
    source, queries, library = work / "million.csv", work / "queries.fasta", work / "library"
    report["source"] = write_source(source, args.records, seed=0, queries=queries)
    print(json.dumps(report), flush=True)
    command = ["build-library", "--model", str(DEFAULT_MODEL), "--data", str(source), "--out", str(library)]
    build = timed([*CLI, *command, "--overwrite"])
    facts = json.loads((library / (library / "CURRENT").read_text().strip() / "library.json").read_text())
    report["build"] = {
        "seconds": build["seconds"],
        "peak_resident_mb": build["peak_resident_mb"],
        "index": facts["index"],
        "records": facts["records"],
        "on_disk_mb": round(sum(f.stat().st_size for f in library.rglob("*") if f.is_file()) / 2**20),
    }
    print(json.dumps(report["build"]), flush=True)
    command = ["identify", "--library", str(library), "--fasta", str(queries), "--out", str(work / "answers.csv")]
    answered = timed([*CLI, *command])
    report["identify_1000"] = {k: answered[k] for k in ("seconds", "peak_resident_mb")}
    report["identify_1000"]["species_top1"] = _species_top1(work / "answers.csv", queries.with_suffix(".json"))
    print(json.dumps(report["identify_1000"]), flush=True)
    if args.inspect_rows:
        big = work / "five_million.csv"
        report["inspect_source"] = write_source(big, args.inspect_rows, seed=1)
        inspected = timed([*CLI, "inspect", str(big), "--json"])
        report["inspect"] = {k: inspected[k] for k in ("seconds", "peak_resident_mb")}
        report["inspect"]["records"] = json.loads(inspected["stdout"])["records"]
        big.unlink()
        print(json.dumps(report["inspect"]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))


def _species_top1(answers: Path, truth: Path) -> float:
    import pandas as pd

    table = pd.read_csv(answers, comment="#")
    expected = table["query_id"].map(json.loads(truth.read_text()))
    return round(float((table["species"] == expected).mean()), 4)


if __name__ == "__main__":
    main()
