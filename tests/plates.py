"""A season's plates made from the shipped real BOLD records (reference_db/bold): a sample sheet with
BOLD's column names, 96-well plates (H12 a control), and the barcodes as FASTA keyed by sample id.
Used by the project tests and bench/project_scale.py."""

from __future__ import annotations

import csv
import gzip
import random
from pathlib import Path

from clibd_core.reference import DEFAULT_SOURCE

PLATE_ROWS = "ABCDEFGH"


def bold_rows(count: int, seed: int = 0) -> list[dict]:
    with gzip.open(DEFAULT_SOURCE, "rt", encoding="utf-8") as handle:
        rows = [r for r in csv.DictReader(handle, delimiter="\t") if r["species_name"] and r["nucleotides"]]
    return random.Random(seed).sample(rows, count)


def write_plates(folder: Path, plates: int = 2, seed: int = 0, prefix: str = "LAB") -> dict:
    """``plates`` 96-well plates (95 specimens and the H12 control each): sheet.csv, barcodes.fasta,
    and the truth (sample id → the BOLD record's lineage)."""
    folder.mkdir(parents=True, exist_ok=True)
    wells = [f"{row}{col:02d}" for row in PLATE_ROWS for col in range(1, 13)]
    rows = bold_rows(plates * 95, seed)
    sheet, fasta, truth = [], [], {}
    for plate in range(plates):
        for index, well in enumerate(wells):
            sample = f"{prefix}{plate + 1:05d}-{well}"
            if well == "H12":
                sheet.append({"Sample ID": sample, "Field ID": "", "Museum ID": "", "Collection Date": "",
                              "Country/Ocean": "", "Exact Site": "", "Lat": "", "Lon": "", "Collectors": "",
                              "Notes": "negative control"})  # fmt: skip
                continue
            record = rows[plate * 95 + index]
            sheet.append({
                "Sample ID": sample, "Field ID": record["processid"], "Museum ID": record["sampleid"],
                "Collection Date": f"2026-07-{1 + index % 28:02d}", "Country/Ocean": record["country"],
                "Exact Site": f"trap {1 + index % 4}", "Lat": record["lat"] or "45.5", "Lon": record["lon"] or "-73.5",
                "Collectors": "A. Field; B. Lab", "Notes": f"night {index % 3}",
            })  # fmt: skip
            fasta.append(f">{sample}|{record['processid']}\n{record['nucleotides']}\n")
            truth[sample] = {
                "order": record["order_name"], "family": record["family_name"],
                "genus": record["genus_name"], "species": record["species_name"],
            }  # fmt: skip
    with open(folder / "sheet.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(sheet[0]))
        writer.writeheader()
        writer.writerows(sheet)
    (folder / "barcodes.fasta").write_text("".join(fasta))
    return {"sheet": folder / "sheet.csv", "fasta": folder / "barcodes.fasta", "truth": truth}
