"""`clibd identify` on real BOLD barcodes against blastn, VSEARCH and 5-mer 1-NN, for species in the
library and species absent from it; novelty AUROC; time per query.

Split: the CLIBD protocol on ../shared/data/bold/bold_insects_dev.tsv.gz, seed 0 (as bench/real_dna.py,
whose DNA model, runs/bold_dna/best, was trained on the seen species' train records only).
- Library / blast database / VSEARCH database / k-mer keys: every record of the seen species except
  their test records (train, val, key_seen, plus pretrain records without a species).
- "in library" queries: the seen species' test records; "absent" queries: all records of the unseen
  species (never trained on, not in the library). Both are subsampled (--queries each, seed 0).
  identify also answers them cut to 60 % partial reads (random place, seed 1).
Every method answers every rank by its choice: ours by identify's per-rank votes (k=10, identity
reranked), the others by their top hit. Novelty AUROC: how well each method's score (ours: the
calibrated novelty; others: minus the top hit's identity or similarity) separates absent from in-library.

    .venv/bin/python bench/real_identify.py [--queries 2000] [--run runs/bold_dna]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from baselines import blastn_top_hits, kmer_profiles, vsearch_top_hits
from sklearn.metrics import roc_auc_score

from clibd_core.data.bold import read_bold_tsv
from clibd_core.data.splits import assign_splits
from clibd_core.evaluate import nearest_neighbours
from clibd_core.library.build import build_library
from clibd_core.library.calibration import partial_read
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.library.store import Library
from clibd_core.models.clibd import load_model
from clibd_core.taxonomy import MISSING, RANKS

BOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bold" / "bold_insects_dev.tsv.gz"
UNSEEN = ("val_unseen", "test_unseen", "key_unseen")


def accuracy(predicted: list[dict], truth: list, ranks=RANKS) -> dict:
    """Micro accuracy per rank over queries whose rank is known."""
    out = {}
    for rank in ranks:
        pairs = [(p.get(rank), t.get(rank)) for p, t in zip(predicted, truth, strict=True) if t.get(rank) != MISSING]
        out[rank] = float(np.mean([p == t for p, t in pairs])) if pairs else float("nan")
    return out


def confidence_honesty(results: list, truth: list) -> dict:
    """What the confidences claim, per group: monotone answers, species named (deepest rank species),
    novelty flags, stated ranks that are wrong, and answers whose confidence was capped."""
    wrong = [
        r.ranks[r.deepest_rank].name != t.get(r.deepest_rank)
        for r, t in zip(results, truth, strict=True)
        if r.deepest_rank
    ]
    return {
        "monotone": float(np.mean([monotone(r) for r in results])),
        "species_named": float(np.mean([r.deepest_rank == "species" for r in results])),
        "flagged_novel": float(np.mean([r.novel for r in results])),
        "stated_rank_wrong": float(np.mean(wrong)) if wrong else float("nan"),
        "capped": float(np.mean([any("no rank" in w for w in r.warnings) for r in results])),
    }


def monotone(result) -> bool:
    confidences = [result.ranks[rank].confidence for rank in RANKS if rank in result.ranks]
    return all(a >= b for a, b in zip(confidences, confidences[1:], strict=False))


def lineage(record) -> dict:
    return {rank: record.taxonomy.get(rank) for rank in RANKS}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=2000, help="queries per group")
    parser.add_argument("--run", default="runs/bold_dna")
    parser.add_argument("--library", default="runs/bold_library")
    parser.add_argument("--out", default="docs/bench_real_identify.json")
    parser.add_argument(
        "--only-clibd", action="store_true", help="rerun only clibd identify; keep the baselines' figures in --out"
    )
    args = parser.parse_args()
    if not BOLD.exists():
        raise SystemExit(f"{BOLD} is absent")
    records = read_bold_tsv(BOLD).records
    assign_splits(records, seed=0)
    references = [r for r in records if r.split not in ("test", *UNSEEN)]
    rng = np.random.default_rng(0)
    groups = {}
    for name, splits in (("in_library", ("test",)), ("absent", UNSEEN)):
        members = [r for r in records if r.split in splits]
        groups[name] = [members[i] for i in rng.choice(len(members), min(args.queries, len(members)), replace=False)]
    reference_genera = {r.taxonomy.genus for r in references}
    truth = {g: [r.taxonomy for r in m] for g, m in groups.items()}
    timing: dict[str, float] = {}
    model = load_model(Path(args.run) / "best", device="cpu")
    if not Path(args.library, "CURRENT").exists():
        started = time.time()
        build_library(model, references, args.library, name="BOLD dev (seen species)")
        timing["library_build_s"] = time.time() - started
    started = time.time()
    library = Library.open(args.library)
    timing["library_open_s"] = time.time() - started

    answers, novelty, honesty = {}, {}, {}
    cut_rng = np.random.default_rng(1)
    clibd_methods = {  # method: (align, queries cut to a 60 % partial read)
        "clibd_identify": (True, False),
        "clibd_identify_no_alignment": (False, False),
        "clibd_identify_partial_reads": (True, True),
    }
    for method, (align, partial) in clibd_methods.items():
        answers[method], novelty[method], seconds = {}, {}, 0.0
        for group, members in groups.items():
            queries = [
                Query(r.id, barcode=partial_read(r.barcode, cut_rng, 0.6, 0.6) if partial else r.barcode)
                for r in members
            ]
            started = time.time()
            results = identify(library, model, queries, align=align, batch_size=256)
            seconds += time.time() - started
            answers[method][group] = [{rank: c.name for rank, c in r.ranks.items()} for r in results]
            novelty[method][group] = [r.novelty for r in results]
            honesty.setdefault(method, {})[group] = confidence_honesty(results, truth[group])
        timing[f"{method}_ms_per_query"] = 1000 * seconds / sum(map(len, groups.values()))

    previous = json.loads(Path(args.out).read_text()) if args.only_clibd else None
    key_sequences = [r.barcode for r in references]
    key_profiles = kmer_profiles(key_sequences) if not previous else None
    answers["kmer5_cosine_1nn"], novelty["kmer5_cosine_1nn"] = {}, {}
    for group, members in groups.items() if not previous else ():
        profiles = kmer_profiles([r.barcode for r in members])
        nearest = nearest_neighbours(profiles, key_profiles)
        answers["kmer5_cosine_1nn"][group] = [lineage(references[i]) for i in nearest]
        novelty["kmer5_cosine_1nn"][group] = list(-np.sum(profiles * key_profiles[nearest], axis=1))

    baselines = (("blastn_top_hit", blastn_top_hits), ("vsearch_top_hit", vsearch_top_hits))
    for method, search in baselines if not previous else ():
        answers[method], novelty[method], seconds = {}, {}, 0.0
        for group, members in groups.items():
            hits, identities, spent = search([r.barcode for r in members], key_sequences)
            seconds += spent
            answers[method][group] = [lineage(references[i]) if i >= 0 else {} for i in hits]
            novelty[method][group] = list(-identities)
        timing[f"{method}_ms_per_query"] = 1000 * seconds / sum(map(len, groups.values()))

    results = {}
    genus_known = [r.taxonomy.genus in reference_genera for r in groups["absent"]]
    for method in (m for m in answers if answers[m]):
        absent_known = [a for a, keep in zip(answers[method]["absent"], genus_known, strict=True) if keep]
        absent_truth = [t for t, keep in zip(truth["absent"], genus_known, strict=True) if keep]
        scores = np.r_[novelty[method]["in_library"], novelty[method]["absent"]]
        labels = np.r_[np.zeros(len(groups["in_library"])), np.ones(len(groups["absent"]))]
        results[method] = {
            "in_library": accuracy(answers[method]["in_library"], truth["in_library"]),
            "absent": accuracy(answers[method]["absent"], truth["absent"], RANKS[:3]),
            "absent_genus_in_library": accuracy(absent_known, absent_truth, RANKS[:3]),
            "novelty_auroc": float(roc_auc_score(labels, scores)),
        }
        if method in clibd_methods:  # calibrated probabilities: how often the flag is raised wrongly
            results[method]["in_library_flagged_novel"] = float(np.mean(np.asarray(scores[labels == 0]) >= 0.5))
            results[method]["confidence"] = honesty[method]
    if previous:
        results = {**previous["results"], **results}
        timing = {**previous["timing"], **timing}  # what this run measured replaces the old figures
    summary = {
        "queries": {g: len(m) for g, m in groups.items()},
        "absent_with_genus_in_library": int(sum(genus_known)),
        "references": len(references),
        "timing": timing,
        "results": results,
        "library_calibration": library.facts["calibration"].get("dna->dna", {}).get("novelty"),
    }
    Path(args.out).write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
