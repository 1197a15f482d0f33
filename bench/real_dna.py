"""DNA→DNA identification on real BOLD barcodes: the trained lite DNA tower against blastn and 5-mer 1-NN.

The BOLD dev set (../shared/data/bold/bold_insects_dev.tsv.gz) is split with the CLIBD protocol
(seed 0): 80 % of the species with ≥ 10 records are seen (their train records train the towers,
their test records are queries), 20 % are unseen (never trained on; half their records are queries,
half keys). All three methods answer from the same key pool (key_seen ∪ key_unseen) by their top hit:
- CLIBD lite DNA (+ text) towers trained here (`clibd train --modalities dna,text`), cosine 1-NN;
- blastn (Debian `ncbi-blast+`, its default megablast task, e-value 1e-5), best bit score (`-task blastn`
  with word size 11 took over 16 minutes for the first 7,400 queries on the 2 cores and was stopped);
- 5-mer frequency vectors, cosine 1-NN.
Results: docs/bench_real_dna.json and the table printed (copied into docs/BENCHMARKS.md).

    .venv/bin/python bench/real_dna.py [--epochs 2] [--run runs/bold_dna]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from baselines import blastn_top_hits, kmer_profiles

from clibd_core.data.bold import read_bold_tsv
from clibd_core.data.splits import KEY_SPLITS, assign_splits
from clibd_core.evaluate import harmonic_mean, markdown_table, nearest_neighbours, top1_per_rank
from clibd_core.models.clibd import load_model
from clibd_core.train.config import TrainConfig
from clibd_core.train.loop import train

BOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "bold" / "bold_insects_dev.tsv.gz"


def table(predicted_for: dict[str, list], truth_for: dict[str, list]) -> dict:
    parts = {group: top1_per_rank(predicted_for[group], truth_for[group]) for group in ("seen", "unseen")}
    return {
        rank: {
            "seen": parts["seen"][rank],
            "unseen": parts["unseen"][rank],
            "harmonic_mean": {
                m: harmonic_mean(parts["seen"][rank][m], parts["unseen"][rank][m]) for m in ("micro", "macro")
            },
        }
        for rank in parts["seen"]
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--run", default="runs/bold_dna")
    parser.add_argument("--out", default="docs/bench_real_dna.json")
    parser.add_argument(
        "--only-clibd", action="store_true", help="rerun only the CLIBD tower; keep the baselines' figures in --out"
    )
    args = parser.parse_args()
    if not BOLD.exists():
        raise SystemExit(f"{BOLD} is absent")
    if not (Path(args.run) / "best").is_dir():
        config = TrainConfig(
            data=str(BOLD), out=args.run, modalities=["dna", "text"], epochs=args.epochs, batch_size=args.batch_size
        ).resolved()
        train(config, resume=(Path(args.run) / "last").is_dir())
    records = read_bold_tsv(BOLD).records
    assign_splits(records, seed=0)
    keys = [r for r in records if r.split in KEY_SPLITS]
    groups = {
        "seen": [r for r in records if r.split == "test"],
        "unseen": [r for r in records if r.split == "test_unseen"],
    }
    truth = {g: [r.taxonomy for r in rs] for g, rs in groups.items()}
    results, timing = {}, {}

    model = load_model(Path(args.run) / "best", device="cpu")
    started = time.time()
    key_vectors = model.encode_barcodes([r.barcode for r in keys], batch_size=256)
    timing["clibd_embed_keys_s"] = time.time() - started
    predicted, query_seconds = {}, 0.0
    for group, members in groups.items():
        started = time.time()
        vectors = model.encode_barcodes([r.barcode for r in members], batch_size=256)
        predicted[group] = [keys[i].taxonomy for i in nearest_neighbours(vectors, key_vectors)]
        query_seconds += time.time() - started
    timing["clibd_ms_per_query"] = 1000 * query_seconds / sum(map(len, groups.values()))
    results["clibd_lite_dna"] = table(predicted, truth)
    if args.only_clibd:
        previous = json.loads(Path(args.out).read_text())
        results = {**previous["results"], **results}
        timing = {**previous["timing"], **timing}
    else:
        results.update(baseline_results(keys, groups, truth, timing))
    write_summary(args.out, groups, keys, timing, results)


def baseline_results(keys: list, groups: dict[str, list], truth: dict[str, list], timing: dict) -> dict:
    """blastn's top hit and 5-mer cosine 1-NN on the same keys and queries (``timing`` gets blastn's)."""
    results = {}
    key_profiles = kmer_profiles([r.barcode for r in keys])
    results["kmer5_cosine_1nn"] = table(
        {
            g: [keys[i].taxonomy for i in nearest_neighbours(kmer_profiles([r.barcode for r in m]), key_profiles)]
            for g, m in groups.items()
        },
        truth,
    )

    predicted, blast_seconds = {}, 0.0
    empty = type(keys[0].taxonomy)()
    for group, members in groups.items():
        hits, _, seconds = blastn_top_hits([r.barcode for r in members], [r.barcode for r in keys])
        predicted[group] = [keys[i].taxonomy if i >= 0 else empty for i in hits]
        blast_seconds += seconds
    timing["blastn_ms_per_query"] = 1000 * blast_seconds / sum(map(len, groups.values()))
    results["blastn_top_hit"] = table(predicted, truth)
    return results


def write_summary(out: str, groups: dict[str, list], keys: list, timing: dict, results: dict) -> None:
    summary = {
        "queries": {g: len(m) for g, m in groups.items()},
        "keys": len(keys),
        "timing": timing,
        "results": results,
    }
    Path(out).write_text(json.dumps(summary, indent=2))
    for method, values in results.items():
        print(
            f"\n## {method}\n"
            + markdown_table({"dna->dna": values}, "micro")
            + "\n\n"
            + markdown_table({"dna->dna": values}, "macro")
        )
    print(json.dumps(timing, indent=2))


if __name__ == "__main__":
    main()
