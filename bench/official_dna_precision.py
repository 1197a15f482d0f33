"""The official CLIBD DNA tower (BarcodeBERT size: 12 layers, 768 wide) on this CPU: fp32, bf16 autocast
and int8 dynamic quantisation of its linear layers, on real BOLD barcodes. Reported: barcodes/s, the
hours the shipped 86,238 barcodes would take, and how far each precision moves the embeddings and the
nearest neighbours from fp32 (cosine to the fp32 vector; share of queries whose 10 nearest references
are the same set). Official weights cannot be fetched here: the tower holds weights drawn at random
over the official key list (../shared/design/clibd_official_state_dict_keys.json), so the numerics are
real but the agreement figures say little: random weights embed every barcode almost alike, so the
nearest neighbours are separated by less than bf16's rounding. With the real checkpoint, run it with
``--model`` to decide.

    .venv/bin/python bench/official_dna_precision.py [--records 512] [--model MODEL_DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from clibd_core import import_official_checkpoint, load_model
from clibd_core.dna import to_acgtn
from clibd_core.reference import DEFAULT_SOURCE

KEYS = Path(__file__).resolve().parents[2] / "shared" / "design" / "clibd_official_state_dict_keys.json"
SHIPPED = 86_238


def official_model(work: Path):
    if not (work / "model" / "config.json").is_file():
        generator = torch.Generator().manual_seed(0)
        state = {}
        for name, shape in json.loads(KEYS.read_text()).items():
            tensor = torch.randn(shape, generator=generator) * 0.02
            if name.endswith(("LayerNorm.weight", "norm.weight", "norm1.weight", "norm2.weight")):
                tensor += 1.0
            state[name] = tensor
        state["logit_scale"] = torch.tensor(2.659)
        work.mkdir(parents=True, exist_ok=True)
        torch.save(state, work / "best.pth")
        import_official_checkpoint(work / "best.pth", work / "model")
    return load_model(work / "model", device="cpu")


def embed(model, sequences: list[str], precision: str) -> tuple[np.ndarray, float]:
    started = time.time()
    if precision == "bf16":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            vectors = model.encode_barcodes(sequences, clean=False)
    else:
        vectors = model.encode_barcodes(sequences, clean=False)
    return vectors, time.time() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=512)
    parser.add_argument("--work", default="runs/official_dna")
    parser.add_argument("--model", help="a real official model (clibd fetch-official); default: random weights")
    parser.add_argument("--out", default="docs/bench_official_dna.json")
    args = parser.parse_args()
    table = pd.read_csv(DEFAULT_SOURCE, sep="\t", dtype=str, keep_default_na=False, usecols=["nucleotides"])
    sequences = [to_acgtn(s) for s in table["nucleotides"].sample(args.records, random_state=0)]
    model = load_model(args.model, device="cpu") if args.model else official_model(Path(args.work))
    report = {"records": args.records, "threads": torch.get_num_threads()}
    reference, seconds = embed(model, sequences, "fp32")
    report["fp32"] = {"barcodes_per_s": args.records / seconds}
    similarities = reference @ reference.T
    truth = np.argsort(-similarities, axis=1)[:, 1:11]
    # How far apart the barcodes lie: a precision's error matters only against this spread (random
    # weights embed every barcode almost alike, trained ones do not).
    tenth = np.take_along_axis(similarities, truth[:, -1:], axis=1)[:, 0]
    report["fp32"]["distance_to_10th_nearest_median"] = float(np.median(1 - tenth))
    for precision in ("bf16", "int8"):
        if precision == "int8":
            model.dna_encoder = torch.ao.quantization.quantize_dynamic(
                model.dna_encoder, {torch.nn.Linear}, dtype=torch.qint8
            )
        vectors, seconds = embed(model, sequences, precision)
        cosine = np.sum(vectors * reference, axis=1) / (
            np.linalg.norm(vectors, axis=1) * np.linalg.norm(reference, axis=1)
        )
        found = np.argsort(-(vectors @ vectors.T), axis=1)[:, 1:11]
        same = np.mean([set(f) == set(t) for f, t in zip(found, truth, strict=True)])
        overlap = np.mean([len(set(f) & set(t)) / 10 for f, t in zip(found, truth, strict=True)])
        report[precision] = {
            "barcodes_per_s": args.records / seconds,
            "error_against_spread": float(np.median(1 - cosine) / report["fp32"]["distance_to_10th_nearest_median"]),
            "cosine_to_fp32_min": float(cosine.min()),
            "cosine_to_fp32_mean": float(cosine.mean()),
            "same_10_nearest": float(same),
            "overlap_10_nearest": float(overlap),
        }
    for precision in ("fp32", "bf16", "int8"):
        report[precision]["hours_for_shipped_bold"] = SHIPPED / report[precision]["barcodes_per_s"] / 3600
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
