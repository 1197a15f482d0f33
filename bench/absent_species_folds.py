"""Species missing from the library, over leave-species-out folds of the real BOLD set, against blastn
(megablast, and the sensitive `-task blastn` on a sample), VSEARCH and SINTAX on the same folds.

Folds: the evaluable species of ../shared/data/bold/bold_insects_dev.tsv.gz (≥ 10 records) are shuffled
once and cut in five; fold f holds out the f-th fifth (``assign_splits(..., fold=f)``). A DNA model is
trained per fold by the documented recipe (``clibd train --data BOLD --modalities dna,text``: 2 epochs,
batch 256) with ``split_fold=f``, so it never sees a held-out species. Half the held-out species are put
in the library untrained-on (their key records; queries: their other records): "never-trained". The
other half are in neither the training nor the library: "absent". "Seen": the trained species' test
records. Every method answers by its choice (clibd: identify's defaults; blastn and VSEARCH: their top
hit; SINTAX, ``vsearch --sintax``: its prediction at each rank).

Per fold and as mean ± sd over folds, per method: top-1 at every rank (seen / never-trained); absent
species' genus (genus in the library) and family (family in the library); for absent species, the share
of queries with a stated rank, that rank's precision, the share with a genus or species stated and with a
species named (clibd: the deepest rank at confidence ≥ 0.8; SINTAX: bootstrap support ≥ 0.8; blastn and
VSEARCH: BOLDigger3's identity thresholds, 97 / 95 / 90 / 85 % for species / genus / family / order);
novelty AUROC (absent vs never-trained; baselines: minus the top identity, SINTAX: 1 - its species
support); time per query. Short reads (fold 0 and up): the 313-bp Leray fragment (the 3' end of
the Folmer region), a 130-bp mini-barcode (its 5' end), and a 200-bp window anywhere.

Models and libraries are kept under runs/folds/ and reused; each fold's figures are written to
runs/folds/f{F}/results.json, the aggregate to docs/bench_absent_folds.json.

    .venv/bin/python bench/absent_species_folds.py --folds 0 1 2 [--queries 500] [--sensitive 40]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from baselines import blastn_top_hits, sintax_calls, sintax_stated_rank, vsearch_top_hits
from sklearn.metrics import roc_auc_score

from clibd_core.data.bold import read_bold_tsv
from clibd_core.data.splits import assign_splits
from clibd_core.library.build import build_library, recalibrate
from clibd_core.library.identification import Query
from clibd_core.library.search import identify
from clibd_core.library.store import Library
from clibd_core.models.clibd import load_model
from clibd_core.taxonomy import MISSING, RANKS
from clibd_core.train.config import TrainConfig
from clibd_core.train.loop import train

BOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bold" / "bold_insects_dev.tsv.gz"
WORK = Path("runs/folds")
BOLDIGGER = (("species", 97.0), ("genus", 95.0), ("family", 90.0), ("order", 85.0))  # BOLDigger3's % identity
FRAGMENTS = {
    "leray_313": lambda s, rng: s[-313:] if len(s) >= 600 else None,
    "mini_130": lambda s, rng: s[:130] if len(s) >= 400 else None,
    "window_200": lambda s, rng: _window(s, 200, rng),
}


def _window(sequence: str, length: int, rng: np.random.Generator) -> str | None:
    if len(sequence) < length + 50:
        return None
    start = int(rng.integers(0, len(sequence) - length + 1))
    return sequence[start : start + length]


def fold_groups(records: list, fold: int, queries: int) -> tuple[list, dict[str, list]]:
    """The library's references and the three query groups of a fold (sampled, seed 0)."""
    assign_splits(records, seed=0, keep_existing=False, fold=fold)
    untrained_in_library = {r.taxonomy.species for r in records if r.split == "val_unseen"}
    references = [
        r
        for r in records
        if r.split in ("train", "val", "key_seen", "pretrain")
        or (r.split == "key_unseen" and r.taxonomy.species in untrained_in_library)
    ]
    members = {
        "seen": [r for r in records if r.split == "test"],
        "never_trained": [r for r in records if r.split == "val_unseen"],
        "absent": [
            r
            for r in records
            if r.split in ("test_unseen", "key_unseen") and r.taxonomy.species not in untrained_in_library
        ],
    }
    rng = np.random.default_rng(0)
    groups = {
        name: [group[i] for i in sorted(rng.choice(len(group), min(queries, len(group)), replace=False))]
        for name, group in members.items()
    }
    return references, groups


def trained_model(fold: int):
    run = WORK / f"f{fold}" / "run"
    if not (run / "best" / "config.json").exists():
        config = TrainConfig(data=str(BOLD), out=str(run), modalities=["dna", "text"], split_fold=fold).resolved()
        started = time.time()
        train(config)
        (WORK / f"f{fold}" / "train_seconds.txt").write_text(f"{time.time() - started:.0f}\n")
    return load_model(run / "best", device="cpu")


def fold_library(fold: int, model, references: list) -> Library:
    """The fold's library, built once; recalibrated (no re-embedding) when it predates the seed index."""
    path = WORK / f"f{fold}" / "library"
    if not (path / "CURRENT").exists():
        build_library(model, references, path, name=f"BOLD dev, fold {fold}", maps=False)
    library = Library.open(path)
    return library if library.seeds is not None else recalibrate(path, model)


def lineage(record) -> dict:
    return {rank: record.taxonomy.get(rank) for rank in RANKS}


def top1(answers: list[dict], truths: list[dict], rank: str, keep: list[bool] | None = None) -> float:
    keep = keep or [True] * len(truths)
    pairs = [(a.get(rank), t[rank]) for a, t, k in zip(answers, truths, keep, strict=True) if k and t[rank] != MISSING]
    return float(np.mean([a == t for a, t in pairs])) if pairs else float("nan")


def clibd_answers(library: Library, model, sequences: dict[str, list[str]]) -> tuple[dict, dict, dict, float]:
    """Per group: the lineage answered, novelty, the deepest stated rank (confidence ≥ 0.8); ms per query."""
    answers, novelty, stated, seconds = {}, {}, {}, 0.0
    for group, barcodes in sequences.items():
        queries = [Query(f"q{i}", barcode=s) for i, s in enumerate(barcodes)]
        started = time.perf_counter()
        results = identify(library, model, queries, batch_size=256)
        seconds += time.perf_counter() - started
        answers[group] = [{rank: c.name for rank, c in r.ranks.items()} for r in results]
        novelty[group] = [r.novelty for r in results]
        stated[group] = [r.deepest_rank for r in results]  # the deepest rank at confidence ≥ 0.8
    return answers, novelty, stated, 1000 * seconds / sum(map(len, sequences.values()))


def baseline_answers(search, references: list, sequences: dict[str, list[str]]) -> tuple[dict, dict, dict, float]:
    """A top-hit method's lineages and novelty, its stated rank by BOLDigger3's identity thresholds."""
    keys = [r.barcode for r in references]
    answers, novelty, stated, seconds = {}, {}, {}, 0.0
    for group, barcodes in sequences.items():
        hits, identities, spent = search(barcodes, keys)
        seconds += spent
        answers[group] = [lineage(references[i]) if i >= 0 else {} for i in hits]
        novelty[group] = list(-identities)
        stated[group] = [next((rank for rank, bar in BOLDIGGER if identity >= bar), None) for identity in identities]
    return answers, novelty, stated, 1000 * seconds / sum(map(len, sequences.values()))


def sintax_answers(references: list, sequences: dict[str, list[str]]) -> tuple[dict, dict, dict, float]:
    """SINTAX's prediction at every rank, novelty as 1 - its species support, its stated rank (≥ 0.8)."""
    keys, lineages = [r.barcode for r in references], [lineage(r) for r in references]
    answers, novelty, stated, seconds = {}, {}, {}, 0.0
    for group, barcodes in sequences.items():
        calls, spent = sintax_calls(barcodes, keys, lineages)
        seconds += spent
        answers[group] = [{rank: name for rank, (name, _) in called.items()} for called in calls]
        novelty[group] = [1 - called.get("species", ("", 0.0))[1] for called in calls]
        stated[group] = [sintax_stated_rank(called) for called in calls]
    return answers, novelty, stated, 1000 * seconds / sum(map(len, sequences.values()))


def stated_measures(answers: list[dict], stated: list[str | None], truths: list[dict]) -> dict:
    """Absent queries: the share with a stated rank, that rank's precision, a genus or a species stated."""
    calls = [(rank, a.get(rank) == t[rank]) for a, rank, t in zip(answers, stated, truths, strict=True) if rank]
    return {
        "absent_stated_share": len(calls) / len(truths),
        "absent_stated_right": float(np.mean([right for _, right in calls])) if calls else float("nan"),
        "absent_genus_stated_share": sum(rank in ("genus", "species") for rank, _ in calls) / len(truths),
        "absent_named_species": sum(rank == "species" for rank, _ in calls) / len(truths),
    }


def measures(answers: dict, novelty: dict, stated: dict, truths: dict, known: dict) -> dict:
    labels = np.r_[np.zeros(len(novelty["never_trained"])), np.ones(len(novelty["absent"]))]
    return {
        **{
            f"{group}_{rank}": top1(answers[group], truths[group], rank)
            for group in ("seen", "never_trained")
            for rank in RANKS
        },  # fmt: skip
        **stated_measures(answers["absent"], stated["absent"], truths["absent"]),
        "absent_genus": top1(answers["absent"], truths["absent"], "genus", known["genus"]),
        "absent_family": top1(answers["absent"], truths["absent"], "family", known["family"]),
        "novelty_auroc": float(roc_auc_score(labels, np.r_[novelty["never_trained"], novelty["absent"]])),
    }


def run_fold(fold: int, records: list, args: argparse.Namespace) -> dict:
    """One fold's figures; the baselines' are taken from an earlier run of the same fold when asked
    (``--reuse-baselines``: they do not change with clibd's code, and blastn takes most of the time)."""
    references, groups = fold_groups(records, fold, args.queries)
    earlier = WORK / f"f{fold}" / "results.json"
    previous = json.loads(earlier.read_text()) if args.reuse_baselines and earlier.exists() else None
    model = trained_model(fold)
    library = fold_library(fold, model, references)
    truths = {g: [lineage(r) for r in members] for g, members in groups.items()}
    in_library = {rank: {r.taxonomy.get(rank) for r in references} for rank in ("genus", "family")}
    known = {rank: [t[rank] in in_library[rank] for t in truths["absent"]] for rank in in_library}
    sequences = {g: [r.barcode for r in members] for g, members in groups.items()}

    results = {"queries": {g: len(m) for g, m in groups.items()}, "references": len(references)}
    results["absent_species"] = len({r.taxonomy.species for r in groups["absent"]})
    answers, novelty, stated, ms = clibd_answers(library, model, sequences)
    results["clibd_identify"] = {**measures(answers, novelty, stated, truths, known), "ms_per_query": ms}
    baselines = {
        "blastn_megablast": lambda: baseline_answers(blastn_top_hits, references, sequences),
        "vsearch": lambda: baseline_answers(vsearch_top_hits, references, sequences),
        "sintax": lambda: sintax_answers(references, sequences),
    }
    for method, run in baselines.items():
        if previous and method in previous:
            results[method] = previous[method]
            continue
        base_answers, base_novelty, base_stated, ms = run()
        results[method] = {**measures(base_answers, base_novelty, base_stated, truths, known), "ms_per_query": ms}

    # The sensitive blastn on a sample of absent queries whose genus is in the library, clibd beside it.
    sample = [i for i, keep in enumerate(known["genus"]) if keep][: args.sensitive]
    truth = [truths["absent"][i] for i in sample]
    results["sensitive_sample"] = {"clibd_identify_genus": top1([answers["absent"][i] for i in sample], truth, "genus")}
    if previous:
        results["sensitive_sample"] = {**previous["sensitive_sample"], **results["sensitive_sample"]}
    else:
        sample_sequences = [sequences["absent"][i] for i in sample]
        hits, _, spent = blastn_top_hits(sample_sequences, [r.barcode for r in references], task="blastn")
        results["sensitive_sample"].update(
            queries=len(sample),
            blastn_task_blastn_genus=top1([lineage(references[h]) if h >= 0 else {} for h in hits], truth, "genus"),
            blastn_task_blastn_ms_per_query=1000 * spent / max(len(sample), 1),
        )

    rng = np.random.default_rng(1)
    results["fragments"] = {}
    for name, cut in FRAGMENTS.items():
        chosen = {g: [(i, cut(s, rng)) for i, s in enumerate(sequences[g])] for g in ("seen", "absent")}
        chosen = {g: [(i, s) for i, s in pairs if s] for g, pairs in chosen.items()}
        cut_sequences = {g: [s for _, s in pairs] for g, pairs in chosen.items()}
        cut_truths = {g: [truths[g][i] for i, _ in pairs] for g, pairs in chosen.items()}
        cut_known = [known["genus"][i] for i, _ in chosen["absent"]]
        ours, _, stated, _ = clibd_answers(library, model, cut_sequences)
        methods = [("clibd", ours)]
        if not previous:
            methods.append(("blastn", baseline_answers(blastn_top_hits, references, cut_sequences)[0]))
            methods.append(("sintax", sintax_answers(references, cut_sequences)[0]))
        results["fragments"][name] = {
            **(previous["fragments"][name] if previous else {}),
            "queries": {g: len(s) for g, s in cut_sequences.items()},
            **{
                f"{method}_{measure}": value
                for method, found in methods
                for measure, value in (
                    ("seen_species", top1(found["seen"], cut_truths["seen"], "species")),
                    ("seen_genus", top1(found["seen"], cut_truths["seen"], "genus")),
                    ("absent_genus", top1(found["absent"], cut_truths["absent"], "genus", cut_known)),
                )
            },
            "clibd_absent_named_species": float(np.mean([r == "species" for r in stated["absent"]]))
            if stated["absent"]
            else float("nan"),
        }
    return results


def summarise(per_fold: dict[int, dict]) -> dict:
    """Mean and sample sd over folds of every number found at the same place in each fold's results."""

    def walk(values: list):
        if isinstance(values[0], dict):
            return {key: walk([v[key] for v in values]) for key in values[0]}
        numbers = np.asarray(values, dtype=float)
        return {"mean": float(numbers.mean()), "sd": float(numbers.std(ddof=1)) if len(numbers) > 1 else 0.0}

    return walk(list(per_fold.values()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--queries", type=int, default=500, help="queries per group and fold")
    parser.add_argument("--sensitive", type=int, default=40, help="absent queries for blastn -task blastn")
    parser.add_argument("--out", default="docs/bench_absent_folds.json")
    parser.add_argument("--reuse-baselines", action="store_true", help="take blastn/VSEARCH from an earlier run")
    args = parser.parse_args()
    if not BOLD.exists():
        raise SystemExit(f"{BOLD} is absent")
    records = read_bold_tsv(BOLD).records
    per_fold = {}
    for fold in args.folds:
        per_fold[fold] = run_fold(fold, records, args)
        (WORK / f"f{fold}" / "results.json").write_text(json.dumps(per_fold[fold], indent=2))
        print(json.dumps({fold: per_fold[fold]}, indent=2), flush=True)
    report = {"folds": per_fold, "summary": summarise(per_fold)}
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report["summary"], indent=2))


if __name__ == "__main__":
    main()
