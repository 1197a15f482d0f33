"""The DNA tower's number format for a long build on the CPU, chosen by measurement on the build's own
barcodes.

The official CLIBD DNA tower (BarcodeBERT size) embeds about 7 barcodes a second in fp32 on 2 cores: the
shipped BOLD library takes hours. bf16 autocast and int8 dynamic quantisation of the linear layers are
2-2.5 x faster, but whether they keep the answers depends on the weights (weights that put barcodes
within bf16's rounding of each other shuffle their neighbours). So an ``auto`` build embeds a probe of its
own barcodes, in clusters of one species as a library holds them, in every format and keeps the fastest
whose nearest neighbours are fp32's: the answers come from those neighbours.
"""

from __future__ import annotations

import copy
import json
import random
import threading
import time
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from clibd_core.fileio import write_json
from clibd_core.library.build_status import Progress, no_progress
from clibd_core.taxonomy import MISSING

if TYPE_CHECKING:  # the CLI reads PRECISIONS before anything imports torch
    from clibd_core.data.records import Record

PRECISIONS = ("fp32", "bf16", "int8")
AUTO_FROM = 10_000  # barcodes: below this a CPU build is short in any format, and the probe is not worth it
PROBE_SPECIES, PROBE_PER_SPECIES = 32, 8  # 256 barcodes, each with up to 7 of its own species beside it
KEEPS = 0.99  # share of probe barcodes whose nearest neighbour must stay of fp32's species
OVERLAP = 0.95  # mean share of each probe barcode's 10 nearest that must stay the same
WARM_UP = 8  # barcodes embedded untimed in each format first (the first call pays one-off costs)
CHOICE_FILE = "dna_precision.json"  # in a build's work folder: a resumed build goes on in its format


_INT8_TOWERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # fp32 DNA tower -> its int8 copy
_INT8_SWAP = threading.Lock()  # an int8 block swaps the model's tower: one block at a time (served users)


@contextmanager
def dna_tower_in(model, precision: str) -> Iterator[None]:
    """Within the block, ``model.encode_barcodes`` runs its DNA tower in ``precision``.

    The int8 copy of a tower is made once (about 50 ms) and kept while the tower lives: a served library
    embeds one barcode at a time. A tower's weights must not change after it has been used in int8, and
    int8 blocks do not nest.
    """
    import torch

    if precision not in PRECISIONS:
        raise ValueError(f"unknown DNA precision {precision!r}: choose one of {', '.join(PRECISIONS)} or auto")
    if precision == "fp32":
        yield
    elif precision == "bf16":
        with torch.autocast(model.device.type, dtype=torch.bfloat16):
            yield
    else:
        with _INT8_SWAP:
            fp32_tower = model.dna_encoder
            if fp32_tower not in _INT8_TOWERS:
                with warnings.catch_warnings():  # torch 2.14 calls its own quantised tensors deprecated
                    warnings.simplefilter("ignore", UserWarning)
                    _INT8_TOWERS[fp32_tower] = torch.ao.quantization.quantize_dynamic(
                        copy.deepcopy(fp32_tower), {torch.nn.Linear}, dtype=torch.qint8
                    )
            model.dna_encoder = _INT8_TOWERS[fp32_tower]
            try:
                yield
            finally:
                model.dna_encoder = fp32_tower


def probe_barcodes(records: Sequence[Record]) -> tuple[list[str], list[str]]:
    """Up to 8 barcodes of each of up to 32 species (a fixed draw), with their species: a library's
    neighbours are mostly of one species, where a number format's rounding matters most."""
    by_species: dict[str, list[str]] = {}
    for record in records:
        if record.barcode and record.taxonomy.species != MISSING:
            by_species.setdefault(record.taxonomy.species, []).append(record.barcode)
    draw = random.Random(0)
    species = sorted(name for name, barcodes in by_species.items() if len(barcodes) >= 2)
    species = draw.sample(species, min(PROBE_SPECIES, len(species)))
    barcodes, labels = [], []
    for name in species:
        picked = draw.sample(by_species[name], min(PROBE_PER_SPECIES, len(by_species[name])))
        barcodes += picked
        labels += [name] * len(picked)
    return barcodes, labels


def measure_precisions(
    model, barcodes: Sequence[str], species: Sequence[str], progress: Progress = no_progress
) -> dict:
    """Each format's speed on ``barcodes`` and how far it keeps fp32's neighbours among them; ``chosen``
    is the fastest that keeps them and is faster than fp32 (``fp32`` if none)."""
    report: dict = {"probe": len(barcodes)}
    vectors = {}
    for done, precision in enumerate(PRECISIONS):
        progress(f"measuring the DNA tower in {', '.join(PRECISIONS)}", done, len(PRECISIONS))
        with dna_tower_in(model, precision):
            model.encode_barcodes(barcodes[:WARM_UP])
            started = time.perf_counter()
            vectors[precision] = model.encode_barcodes(barcodes)
        report[precision] = {"barcodes_per_s": round(len(barcodes) / (time.perf_counter() - started), 2)}
    progress(f"measuring the DNA tower in {', '.join(PRECISIONS)}", len(PRECISIONS), len(PRECISIONS))
    labels = np.asarray(species)
    truth = _neighbours(vectors["fp32"])
    for precision in PRECISIONS[1:]:
        found = _neighbours(vectors[precision])
        same = np.mean(labels[found[:, 0]] == labels[truth[:, 0]])
        overlap = np.mean([len(set(t) & set(f)) / len(t) for t, f in zip(truth, found, strict=True)])
        report[precision].update(same_nearest_species=round(float(same), 4), overlap_10=round(float(overlap), 4))
    fast = [p for p in PRECISIONS[1:] if report[p]["barcodes_per_s"] > report["fp32"]["barcodes_per_s"]]
    kept = [p for p in fast if report[p]["same_nearest_species"] >= KEEPS and report[p]["overlap_10"] >= OVERLAP]
    report["chosen"] = max(kept, key=lambda p: report[p]["barcodes_per_s"], default="fp32")
    return report


def _neighbours(vectors: np.ndarray) -> np.ndarray:
    """Each probe barcode's 10 nearest others, nearest first."""
    similarity = vectors @ vectors.T
    np.fill_diagonal(similarity, -np.inf)
    return np.argsort(-similarity, axis=1, kind="stable")[:, : min(10, len(vectors) - 1)]


def build_choice(
    work: Path,
    model,
    requested: str,
    n_records: int,
    first_records: Callable[[], Sequence[Record]],
    processes,
    progress: Progress = no_progress,
) -> dict:
    """The format a build embeds its barcodes in, with why: ``requested``, or for ``auto`` fp32 where the
    build is short or on a GPU and otherwise what :func:`measure_precisions` chose on a probe of
    ``first_records()``. Decided once, by the main process, and kept in ``work``."""
    file = work / CHOICE_FILE
    if processes.is_main_process and not file.is_file():
        write_json(file, {**_choice(model, requested, n_records, first_records, progress), "asked": requested})
    processes.wait_for_everyone()
    return json.loads(file.read_text())


def _choice(model, requested: str, n_records: int, first_records: Callable[[], Sequence[Record]], progress) -> dict:
    if requested in PRECISIONS:
        return {"chosen": requested, "why": "asked for"}
    if requested != "auto":
        raise ValueError(f"unknown DNA precision {requested!r}: choose one of {', '.join(PRECISIONS)} or auto")
    if "dna" not in model.config.modalities:
        return {"chosen": "fp32", "why": "no DNA tower"}
    if model.device.type != "cpu":
        return {"chosen": "fp32", "why": f"on {model.device.type}, fp32 is fast enough"}
    if n_records < AUTO_FROM:
        return {"chosen": "fp32", "why": f"fewer than {AUTO_FROM:,} barcodes"}
    barcodes, species = probe_barcodes(first_records())
    if len(set(species)) < 2:
        return {"chosen": "fp32", "why": "too few named species to measure the formats on"}
    report = measure_precisions(model, barcodes, species, progress)
    return {**report, "why": f"measured on {len(barcodes)} of its barcodes"}
