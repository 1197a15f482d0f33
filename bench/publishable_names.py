"""Names a lab can publish: species held out of a real BOLD library, and what the naming rules do.

For each fold f (0-4), the species of ../shared/data/bold/bold_insects_dev.tsv.gz are cut in five
(species with ≥ 3 records, shuffled once); fold f's fifth is left out of the library ("absent"), the
rest go in (at most ``--per-species`` references each, as many BOLD species have no more). Queries:
records of absent species, and records of library species left out of the library ("present").
The shipped default model embeds them. It was trained on every species of the set, absent ones
included, so this measures the naming rules, not the DNA tower on unseen species
(bench/absent_species_folds.py trains one model per fold for that).

Each fold is answered three times: with the BIN rule on the library's own BINs only; with a BIN registry
(the whole set's BINs and names, as BOLD knows them: `clibd bins LIBRARY EXPORT`); and with a checklist
(the set's own species list, as a regional checklist would hold them); beside them SINTAX (``vsearch --sintax``, cutoff
0.8) on the same references and queries, its deepest supported rank as its stated rank. Reported per
fold: absent queries named at species (wrong by construction), absent queries whose deepest stated rank
is right, the genus stated for absent queries, present queries named right / wrong at species, and what
each rule withheld.

    .venv/bin/python bench/publishable_names.py [--folds 0 1 2 3 4] [--queries 300] [--per-species 40]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import time
from pathlib import Path

from baselines import sintax_calls, sintax_stated_rank

from clibd_core.data.bold import read_bold_tsv
from clibd_core.library.build import build_library
from clibd_core.library.coverage import BIN_REGISTRY_FILE, CHECKLIST_FILE, attach_bin_registry, attach_checklist
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.library.store import Library
from clibd_core.models.clibd import load_model
from clibd_core.reference import DEFAULT_MODEL, DEFAULT_SOURCE
from clibd_core.taxonomy import MISSING, RANKS

WORK = Path("runs/publishable")
OUT = Path("docs/bench_publishable_names.json")


def folds_of(records, seed: int = 0) -> dict[str, int]:
    by_species: dict[str, int] = {}
    for record in records:
        by_species[record.taxonomy.species] = by_species.get(record.taxonomy.species, 0) + 1
    species = sorted(name for name, count in by_species.items() if count >= 3)
    random.Random(seed).shuffle(species)
    return {name: i % 5 for i, name in enumerate(species)}


def answers_of(results) -> list[tuple[str, str | None, dict[str, str], list[str]]]:
    """identify's results as (query id, deepest stated rank, name per rank, warnings)."""
    return [(r.query_id, r.deepest_rank, {rank: c.name for rank, c in r.ranks.items()}, r.warnings) for r in results]


def sintax_answers(queries, references) -> tuple[list, float]:
    """SINTAX's calls (stated from its cutoff, 0.8) against the same references, in the same form, and ms per query."""
    lineages = [{rank: r.taxonomy.get(rank) for rank in RANKS} for r in references]
    calls, seconds = sintax_calls([r.barcode for r in queries], [r.barcode for r in references], lineages)
    answers = []
    for record, called in zip(queries, calls, strict=True):
        names = {rank: name for rank, (name, _) in called.items()}
        answers.append((record.id, sintax_stated_rank(called), names, []))
    return answers, 1000 * seconds / len(queries)


def score(records_by_id, answers, absent: set[str]) -> dict:
    out = {"absent": 0, "absent_named_species": 0, "absent_deepest_right": 0, "absent_stated": 0,
           "absent_genus_stated": 0, "absent_genus_stated_right": 0, "present": 0, "present_species_right": 0,
           "present_species_wrong": 0,
           "withheld_bin": 0, "withheld_checklist": 0, "withheld_right": 0, "withheld_wrong": 0}  # fmt: skip
    per_species: dict[str, list[bool]] = {}  # absent queries' stated ranks, right or not, by species
    for query_id, deepest, names, warnings in answers:
        truth = records_by_id[query_id].taxonomy
        withheld = [w for w in warnings if "species not named" in w and ("BIN" in w or "checklist" in w)]
        if withheld:
            out["withheld_bin" if "BIN" in withheld[0] else "withheld_checklist"] += 1
            out["withheld_right" if names.get("species") == truth.species else "withheld_wrong"] += 1
        if truth.species in absent:
            out["absent"] += 1
            out["absent_named_species"] += deepest == "species"
            if deepest:
                out["absent_stated"] += 1
                out["absent_genus_stated"] += deepest in ("genus", "species")
                out["absent_genus_stated_right"] += deepest == "genus" and names["genus"] == truth.genus
                out["absent_deepest_right"] += names[deepest] == truth.get(deepest)
                per_species.setdefault(truth.species, []).append(names[deepest] == truth.get(deepest))
        else:
            out["present"] += 1
            if deepest == "species":
                right = names["species"] == truth.species
                out["present_species_right" if right else "present_species_wrong"] += 1
    # Queries are drawn by record, so abundant species weigh most; each species counted once:
    out["absent_deepest_right_per_species"] = round(
        sum(sum(v) / len(v) for v in per_species.values()) / max(len(per_species), 1), 4
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--per-species", type=int, default=40)
    args = parser.parse_args()
    records = [r for r in read_bold_tsv(DEFAULT_SOURCE).records if r.taxonomy.species != MISSING and r.barcode]
    fold_of = folds_of(records)
    model = load_model(DEFAULT_MODEL, device="cpu")
    WORK.mkdir(parents=True, exist_ok=True)
    checklist = WORK / "checklist.csv"
    with open(checklist, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["scientificName", "taxonRank"])
        writer.writerows([name, "species"] for name in sorted(fold_of))
    report = {}
    for fold in args.folds:
        absent = {name for name, f in fold_of.items() if f == fold}
        kept: dict[str, list] = {}
        left: list = []
        for record in records:
            if record.taxonomy.species not in fold_of:
                continue
            members = kept.setdefault(record.taxonomy.species, [])
            if record.taxonomy.species in absent or len(members) >= args.per_species:
                left.append(record)
            else:
                members.append(record)
        references = [r for name, members in kept.items() if name not in absent for r in members]
        rng = random.Random(fold)
        absent_queries = rng.sample([r for r in left if r.taxonomy.species in absent], args.queries)
        present_queries = rng.sample([r for r in left if r.taxonomy.species not in absent], args.queries)
        queries = absent_queries + present_queries
        path = WORK / f"f{fold}"
        started = time.time()
        if not (path / "CURRENT").exists():
            build_library(model, references, path, maps=False)  # never explored
        built = time.time() - started
        (path / CHECKLIST_FILE).unlink(missing_ok=True)
        (path / BIN_REGISTRY_FILE).unlink(missing_ok=True)
        by_id = {r.id: r for r in queries}
        figures = {"references": len(references), "absent_species": len(absent), "build_s": round(built, 1)}
        for case in ("bin rule only", "bin rule + bin registry", "bin rule + checklist"):
            if case.endswith("registry"):
                attach_bin_registry(path, [DEFAULT_SOURCE])
            if case.endswith("checklist"):
                (path / BIN_REGISTRY_FILE).unlink()
                attach_checklist(path, checklist)
            library = Library.open(path)
            started = time.time()
            results = identify(library, model, [Query(r.id, barcode=r.barcode) for r in queries])
            elapsed_ms = 1000 * (time.time() - started) / len(queries)
            figures[case] = {**score(by_id, answers_of(results), absent), "ms_per_query": round(elapsed_ms, 2)}
        answers, elapsed_ms = sintax_answers(queries, references)
        figures["sintax 0.8"] = {**score(by_id, answers, absent), "ms_per_query": round(elapsed_ms, 2)}
        report[f"f{fold}"] = figures
        print(json.dumps({f"f{fold}": figures}, indent=1), flush=True)
    OUT.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
