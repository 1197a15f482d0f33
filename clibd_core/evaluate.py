"""The CLIBD evaluation protocol: cosine 1-NN from queries to one pool of keys, top-1 per rank.

Queries are the seen-species test records (``test``) and the unseen-species ones (``test_unseen``);
keys are ``key_seen`` ∪ ``key_unseen``. For each pair of modalities (DNA→DNA, image→image, image→DNA,
image→text) and each rank, micro top-1 (per record) and macro top-1 (mean of per-class accuracy) are
reported for seen and unseen queries and their harmonic mean. Validation uses ``val`` / ``val_unseen``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence

import faiss
import numpy as np

from clibd_core.data.records import Record
from clibd_core.taxonomy import MISSING, RANKS, Taxonomy

PAIRS = (("dna", "dna"), ("image", "image"), ("image", "dna"), ("image", "text"))
QUERY_SPLITS = {"test": ("test", "test_unseen"), "val": ("val", "val_unseen")}
KEY_SPLITS = ("key_seen", "key_unseen")


def nearest_neighbours(queries: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each query's cosine nearest key (inner product of L2-normalised float32 vectors)."""
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(np.ascontiguousarray(keys, dtype=np.float32))
    _, neighbours = index.search(np.ascontiguousarray(queries, dtype=np.float32), 1)
    return neighbours[:, 0]


def top1_per_rank(predicted: Sequence[Taxonomy], truth: Sequence[Taxonomy]) -> dict[str, dict[str, float]]:
    """Micro and macro top-1 accuracy per rank; queries whose true rank is unknown are left out."""
    result = {}
    for rank in RANKS:
        per_class: dict[str, list[bool]] = defaultdict(list)
        for guess, true in zip(predicted, truth, strict=True):
            if true.get(rank) != MISSING:
                per_class[true.get(rank)].append(guess.get(rank) == true.get(rank))
        hits = [hit for outcomes in per_class.values() for hit in outcomes]
        result[rank] = {
            "micro": float(np.mean(hits)) if hits else float("nan"),
            "macro": float(np.mean([np.mean(v) for v in per_class.values()])) if per_class else float("nan"),
            "queries": len(hits),
        }
    return result


def harmonic_mean(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b > 0 else 0.0


def evaluate_records(
    records: Sequence[Record],
    encode: Callable[[str, Sequence[Record]], np.ndarray],
    modalities: Sequence[str],
    stage: str = "test",
) -> dict:
    """The protocol on ``records`` (with splits assigned); ``encode(modality, records)`` embeds them.

    Returns ``{"image->dna": {rank: {"seen": {...}, "unseen": {...}, "harmonic_mean": {...}}}, ...}``
    for every pair whose modalities the model and the records have.
    """
    seen_split, unseen_split = QUERY_SPLITS[stage]
    groups = {
        "seen": [r for r in records if r.split == seen_split],
        "unseen": [r for r in records if r.split == unseen_split],
        "keys": [r for r in records if r.split in KEY_SPLITS],
    }
    cache: dict[tuple[str, str], tuple[np.ndarray, list[Record]]] = {}

    def embedded(modality: str, group: str) -> tuple[np.ndarray, list[Record]]:
        if (modality, group) not in cache:
            usable = [r for r in groups[group] if _has(r, modality)]
            cache[modality, group] = (encode(modality, usable) if usable else np.zeros((0, 1), np.float32), usable)
        return cache[modality, group]

    results = {}
    for query_modality, key_modality in PAIRS:
        if query_modality not in modalities or key_modality not in modalities:
            continue
        keys, key_records = embedded(key_modality, "keys")
        if not key_records:
            continue
        table = {}
        for group in ("seen", "unseen"):
            queries, query_records = embedded(query_modality, group)
            if not query_records:
                continue
            neighbours = nearest_neighbours(queries, keys)
            table[group] = top1_per_rank(
                [key_records[i].taxonomy for i in neighbours], [r.taxonomy for r in query_records]
            )
        if not table:
            continue
        results[f"{query_modality}->{key_modality}"] = {
            rank: {
                **{group: table[group][rank] for group in table},
                "harmonic_mean": {
                    metric: harmonic_mean(table["seen"][rank][metric], table["unseen"][rank][metric])
                    for metric in ("micro", "macro")
                }
                if {"seen", "unseen"} <= table.keys()
                else {},
            }
            for rank in RANKS
        }
    return results


def _has(record: Record, modality: str) -> bool:
    if modality == "image":
        return record.has_image
    if modality == "dna":
        return record.barcode is not None
    return True  # every record has a taxonomy text


def mean_top1(results: dict) -> float:
    """The model-selection score of the paper: the mean of all reported top-1 accuracies."""
    values = [
        value[metric]
        for pair in results.values()
        for rank in pair.values()
        for group, value in rank.items()
        if group in ("seen", "unseen")
        for metric in ("micro", "macro")
        if not np.isnan(value[metric])
    ]
    return float(np.mean(values)) if values else 0.0


def mean_results(runs: list[dict]) -> dict:
    """Element-wise mean of several result dicts of the same shape (e.g. over random initialisations)."""
    first = runs[0]
    if isinstance(first, dict):
        return {key: mean_results([run[key] for run in runs]) for key in first}
    return float(np.mean(runs))


def markdown_table(results: dict, metric: str = "macro") -> str:
    """One Markdown table: rows = pair × rank, columns = seen / unseen / harmonic mean (in %)."""
    lines = [f"| pair | rank | seen ({metric}) | unseen ({metric}) | H.M. |", "|---|---|---|---|---|"]
    for pair, ranks in results.items():
        for rank in RANKS:
            values = ranks[rank]
            cells = [
                f"{100 * values[group][metric]:.1f}" if group in values and not np.isnan(values[group][metric]) else "–"
                for group in ("seen", "unseen")
            ]
            hm = values.get("harmonic_mean", {}).get(metric)
            lines.append(f"| {pair} | {rank} | {cells[0]} | {cells[1]} | {'–' if hm is None else f'{100 * hm:.1f}'} |")
    return "\n".join(lines)


def novelty_auroc(
    records: Sequence[Record],
    encode: Callable[[str, Sequence[Record]], np.ndarray],
    modalities: Sequence[str],
    stage: str = "test",
) -> dict[str, float]:
    """How well the best cosine similarity tells queries of species absent from the keys from the others.

    Keys are ``key_seen`` only, so unseen-species queries really have no same-species key; the score is
    minus the top-1 similarity; 1.0 = perfectly separated, 0.5 = chance.
    """
    from sklearn.metrics import roc_auc_score

    seen_split, unseen_split = QUERY_SPLITS[stage]
    keys = [r for r in records if r.split == "key_seen"]
    result = {}
    for query_modality, key_modality in PAIRS:
        if key_modality == "text" or not {query_modality, key_modality} <= set(modalities):
            continue
        key_records = [r for r in keys if _has(r, key_modality)]
        groups = [
            [r for r in records if r.split == split and _has(r, query_modality)] for split in (seen_split, unseen_split)
        ]
        if not key_records or not all(groups):
            continue
        index = faiss.IndexFlatIP(encode(key_modality, key_records).shape[1])
        index.add(np.ascontiguousarray(encode(key_modality, key_records), dtype=np.float32))
        best = [
            index.search(np.ascontiguousarray(encode(query_modality, g), dtype=np.float32), 1)[0][:, 0] for g in groups
        ]
        absent = np.r_[np.zeros(len(best[0])), np.ones(len(best[1]))]
        result[f"{query_modality}->{key_modality}"] = float(roc_auc_score(absent, -np.concatenate(best)))
    return result


def evaluate_model(model, records: Sequence[Record], stage: str = "test") -> dict:
    """`clibd evaluate`: the protocol table and the novelty AUROC for a model on split records."""
    from clibd_core.encoding import FeatureCache, record_encoder  # torch: only when a model is evaluated

    encode = record_encoder(model, FeatureCache(model, [], [], 0))
    modalities = model.config.modalities
    return {
        "stage": stage,
        "queries": {split: sum(r.split == split for r in records) for split in QUERY_SPLITS[stage]},
        "keys": sum(r.split in KEY_SPLITS for r in records),
        "results": evaluate_records(records, encode, modalities, stage),
        "novelty_auroc": novelty_auroc(records, encode, modalities, stage),
    }


def table_sections(results: dict, title: str) -> list[str]:
    """Markdown lines: a micro and a macro top-1 table of one result dict, each under a heading."""
    lines = []
    for metric in ("micro", "macro"):
        lines += [f"## {title} ({metric} top-1, %)", markdown_table(results, metric), ""]
    return lines


def markdown_report(report: dict) -> str:
    lines = [
        f"# Evaluation ({report['stage']} split; queries {report['queries']}, keys {report['keys']})",
        "",
        *table_sections(report["results"], "Protocol"),
        "## Novelty AUROC (species absent from the keys vs present; score = best similarity)",
        "",
        *[f"- {pair}: {value:.3f}" for pair, value in report["novelty_auroc"].items()],
        "",
    ]
    return "\n".join(lines)
